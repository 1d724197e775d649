"""Loader throughput and memory: ``load_increment`` against raw ``COPY`` of the same file.

One synthetic day (``orders`` distinct order lines from the local report API's
generator, written to ``user_order_log_inc.csv``; the file has more rows because the
source repeats lines, about 1.375 file rows per order line) is loaded by:

- ``load_increment``: COPY into a checked temporary table (the validation), de-duplicate,
  look for conflicting repeats, replace the day in ``staging.user_order_log`` (its primary
  key and four secondary indexes maintained), one audit row; one transaction.
- **baseline: raw COPY**: ``COPY ... FROM STDIN (format csv, header)`` of the same file,
  streamed by psycopg2, into a bare table with the file's columns typed as in staging,
  no constraints and no indexes. No tool can load the file faster, so it is the anchor.
- the validation alone: the loader's first phase (``stage_file``, then rolled back), to
  show how the load's time splits between checking the file and writing staging.
- **floor: COPY + distinct insert**: what any loader ending with the same staging must
  do at least, with no check at all: raw COPY into a temporary table, then each line
  once (``distinct on (uniq_id)``) into ``staging.user_order_log`` the loader's fastest
  way (its indexes dropped and rebuilt around the sorted insert, as ``load_increment``
  does on an empty table). ``load / floor`` is what the checks cost; ``floor / raw COPY``
  is how far the 1.3x target sits from what writing staging allows.

The target tables are emptied (untimed) before every repetition, so each one is a first
load of the day. Compared results are checked: the rows staging holds (count, distinct
keys, sum of amounts) equal the distinct lines of what raw COPY landed.

Peak resident memory is measured in a fresh interpreter that runs one ``load_increment``
(``python -m benchmarks.loader rss FILE``): that process's ``VmHWM``, imports included.
``run(..., large_orders=N)`` measures it once more on a bigger file (opt-in:
``python -m benchmarks --only loader --large-orders 7300000`` for 10 million lines).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks import DatabaseFactory, Result, median_seconds, ratio
from ingestion.loader import SPECS, _indexes_rebuilt_if_bulk, load_increment, stage_file
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import SyntheticShape, iter_file

NAME = "loader"
DAY = date(2024, 10, 7)  # after the status cut-over: the file has the status column
BARE_TABLE = "bench_bare_user_order_log"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The file's columns with staging's types: what a bare COPY target looks like.
BARE_COLUMNS = (
    "id bigint, uniq_id text, date_time timestamp, city_id integer, city_name text,"
    " customer_id integer, first_name text, last_name text, item_id integer,"
    " item_name text, quantity bigint, payment_amount numeric(14, 2), status text"
)
STAGING = "staging.user_order_log"
# The floor's write: each line once, sorted as the loader inserts (date_time, uniq_id).
FLOOR_INSERT = (
    f"insert into {STAGING} (uniq_id, date_time, city_id, city_name, customer_id,"
    " first_name, last_name, item_id, item_name, quantity, payment_amount, status,"
    " source_day, batch_id)"
    " select * from (select distinct on (uniq_id) uniq_id, date_time, city_id, city_name,"
    " customer_id, first_name, last_name, item_id, item_name, quantity, payment_amount,"
    " status, %s::date, %s from floor_incoming order by uniq_id) as lines"
    " order by date_time, uniq_id"
)
# What landed, comparable across both loads: distinct order lines, their amounts.
STAGING_FACTS = (
    "select count(*), count(distinct uniq_id), sum(payment_amount) from staging.user_order_log"
)
BARE_FACTS = (
    "select count(*), count(distinct uniq_id), sum(payment_amount) from"
    f" (select distinct on (uniq_id) uniq_id, payment_amount from public.{BARE_TABLE}) as lines"
)


def write_day(directory: Path, orders: int, day: date = DAY) -> Path:
    """Write one synthetic day of ``orders`` distinct order lines as a CSV file."""
    path = directory / "user_order_log_inc.csv"
    shape = SyntheticShape(orders_per_day=orders)
    with path.open("wb") as out:
        for block in iter_file(shape, "user_order_log", [day]):
            out.write(block)
    return path


def _file_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh) - 1


def peak_rss_of_load(settings: dict[str, str], path: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, rows loaded) of one ``load_increment`` in a fresh process."""
    env = {**os.environ, **settings, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.loader", "rss", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    return facts["peak_rss_mb"], facts["seconds"], facts["rows_loaded"]


def _peak_rss_kib() -> int:
    """This process's peak resident set (KiB).

    ``VmHWM`` from ``/proc`` where there is one: ``getrusage``'s ``ru_maxrss`` survives
    ``execve`` on Linux, so a child of a big parent would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_main(path: Path) -> None:
    """Child side of :func:`peak_rss_of_load`: load the file once, print JSON facts."""
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)
    with connection() as conn:
        with conn.cursor() as cur:
            cur.execute("truncate staging.user_order_log, staging.load_audit")
        conn.commit()
        started = time.perf_counter()
        summary = load_increment(conn, DAY, {"user_order_log": path}, batch_id="bench-rss")
        seconds = time.perf_counter() - started
    facts = {
        "peak_rss_mb": _peak_rss_kib() / 1024,
        "seconds": seconds,
        "rows_loaded": summary.tables["user_order_log"].rows_loaded,
    }
    print(json.dumps(facts))


def run(
    databases: DatabaseFactory,
    workdir: Path,
    orders: int = 727_000,
    repetitions: int = 3,
    large_orders: int = 0,
) -> list[Result]:
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)  # no per-load chatter
    path = write_day(workdir, orders)
    file_rows = _file_rows(path)
    size = f"{orders:,} order lines, {file_rows:,} file rows, {path.stat().st_size / 1e6:.0f} MB"

    with databases() as settings, connection(settings) as conn:
        migrate(conn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"create table public.{BARE_TABLE} ({BARE_COLUMNS})")

        def empty(table: str) -> None:
            with conn.cursor() as cur:
                cur.execute(f"truncate {table}")
                cur.execute("truncate staging.load_audit")

        def raw_copy() -> None:
            with conn.cursor() as cur, path.open("rb") as fh:
                cur.copy_expert(
                    f"copy public.{BARE_TABLE} from stdin with (format csv, header true)",
                    fh,
                    size=1 << 20,
                )

        batches = iter(range(1_000_000))
        loaded: list[int] = []

        def load() -> None:
            summary = load_increment(
                conn, DAY, {"user_order_log": path}, batch_id=f"bench-{next(batches)}"
            )
            loaded.append(summary.tables["user_order_log"].rows_loaded)
            conn.autocommit = True

        def validate_only() -> None:
            conn.autocommit = False
            try:
                with conn.cursor() as cur:
                    cur.execute("set local work_mem = '256MB'")
                    stage_file(cur, SPECS["user_order_log"], path, DAY, DAY)
            finally:
                conn.rollback()
                conn.autocommit = True

        def floor() -> None:
            conn.autocommit = False
            try:
                with conn.cursor() as cur, path.open("rb") as fh:
                    cur.execute("set local work_mem = '256MB'")
                    cur.execute(
                        f"create temporary table floor_incoming ({BARE_COLUMNS}) on commit drop"
                    )
                    cur.copy_expert(
                        "copy floor_incoming from stdin with (format csv, header true)",
                        fh,
                        size=1 << 20,
                    )
                    with _indexes_rebuilt_if_bulk(cur, SPECS["user_order_log"], orders):
                        cur.execute(FLOOR_INSERT, (DAY, "bench-floor"))
                conn.commit()
            finally:
                conn.autocommit = True

        floor_s, _ = median_seconds(floor, repetitions, before=lambda: empty(STAGING))
        with conn.cursor() as cur:
            cur.execute(STAGING_FACTS)
            floor_facts = cur.fetchone()
        # Interleaved per repetition, so a busy moment of the machine hits both sides.
        copy_samples: list[float] = []
        load_samples: list[float] = []
        for _ in range(max(1, repetitions)):
            seconds, _ = median_seconds(raw_copy, 1, before=lambda: empty(f"public.{BARE_TABLE}"))
            copy_samples.append(seconds)
            seconds, _ = median_seconds(load, 1, before=lambda: empty(STAGING))
            load_samples.append(seconds)
        copy_s = sorted(copy_samples)[len(copy_samples) // 2]
        loader_s = sorted(load_samples)[len(load_samples) // 2]
        validate_s, _ = median_seconds(validate_only, repetitions)

        with conn.cursor() as cur:
            cur.execute(STAGING_FACTS)
            staged_facts = cur.fetchone()
            cur.execute(BARE_FACTS)
            bare_facts = cur.fetchone()
            cur.execute(f"select count(*) from public.{BARE_TABLE}")
            bare_rows = cur.fetchone()[0]
        assert bare_rows == file_rows, f"raw COPY landed {bare_rows} rows of {file_rows}"
        assert staged_facts == bare_facts, (
            f"staging {staged_facts} differs from the raw COPY's distinct lines {bare_facts}"
        )
        assert floor_facts == staged_facts, f"the floor's staging {floor_facts} != {staged_facts}"
        assert set(loaded) == {staged_facts[0]}

        rss_mb, rss_s, rss_rows = peak_rss_of_load(settings, path)
        assert rss_rows == staged_facts[0]
        large: list[Result] = []
        if large_orders:
            (workdir / "large").mkdir(exist_ok=True)
            large_path = write_day(workdir / "large", large_orders)
            large_rows = _file_rows(large_path)
            large_mb, large_s, _ = peak_rss_of_load(settings, large_path)
            large_size = f"{large_rows:,} file rows, {large_path.stat().st_size / 1e6:.0f} MB"
            large = [
                Result(NAME, "peak RSS of one load, large file", large_mb, "MB", large_size),
                Result(NAME, "load_increment, large file", large_s, "s", f"once; {large_size}"),
            ]
            large_path.unlink()

    file_mb = path.stat().st_size / 1e6
    return [
        Result(
            NAME,
            "baseline: raw COPY into a bare table",
            copy_s,
            "s",
            f"median of {repetitions}; {size}",
        ),
        Result(
            NAME, "load_increment", loader_s, "s", f"median of {repetitions}; validation included"
        ),
        Result(NAME, "load / raw COPY", ratio(loader_s, copy_s), "x", "B1 target <= 1.3"),
        Result(
            NAME,
            "validation alone (COPY into checked temp table, de-duplication, conflicts)",
            validate_s,
            "s",
            f"median of {repetitions}; rolled back",
        ),
        Result(
            NAME,
            "validation / raw COPY",
            ratio(validate_s, copy_s),
            "x",
            "the rest of the load is writing staging and its indexes",
        ),
        Result(
            NAME,
            "floor: raw COPY + distinct insert into staging (no checks)",
            floor_s,
            "s",
            f"median of {repetitions}; staging's indexes rebuilt as the loader does",
        ),
        Result(
            NAME,
            "floor / raw COPY",
            ratio(floor_s, copy_s),
            "x",
            "the least a loader ending with staging's indexes pays",
        ),
        Result(NAME, "load / floor", ratio(loader_s, floor_s), "x", "what the checks cost"),
        Result(NAME, "load_increment throughput", file_rows / loader_s, "rows/s", "file rows / s"),
        Result(
            NAME,
            "peak RSS of one load",
            rss_mb,
            "MB",
            f"fresh interpreter, imports included; file {file_mb:.0f} MB; B2 target < 300",
        ),
        *large,
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "rss":
        _rss_main(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m benchmarks.loader rss FILE (libpq settings from PG*)")

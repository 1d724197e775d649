"""Loader speed and memory: ``load_increment`` against the floor staging's indexes set.

One synthetic day (``orders`` distinct order lines from the local report API's generator,
about 1.375 file rows per line as the source repeats lines) is written to
``user_order_log_inc.csv``. The **floor** is what any loader ending with staging's
indexes pays at least: ``COPY`` of the file into a bare table (the file's columns typed as
in staging, no constraint), then building the five indexes ``staging.user_order_log``
has on it (non-unique: the file repeats lines). ``load_increment`` loads the same file
into an emptied staging (a first load of the day: checks, de-duplication, the indexes
dropped and rebuilt). Repetitions alternate the two; ``load / floor`` is the ratio of
their medians (issue target: at most 2.0). Peak RSS is ``VmHWM`` of a fresh interpreter
running one load (``python -m benchmarks.loader rss FILE``), imports included.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import DatabaseFactory, Result, median_seconds, ratio
from ingestion.loader import load_increment
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import SyntheticShape, iter_file

NAME = "loader"
DAY = date(2024, 10, 7)  # after the status cut-over: the file has the status column
BARE = "public.bench_bare_user_order_log"
BARE_COLUMNS = (
    "id bigint, uniq_id text, date_time timestamp, city_id integer, city_name text,"
    " customer_id integer, first_name text, last_name text, item_id integer,"
    " item_name text, quantity bigint, payment_amount numeric(14, 2), status text"
)
# staging.user_order_log's indexes, as statements building them on the bare table
BARE_INDEXES = (
    "select replace(replace(pg_get_indexdef(indexrelid), 'CREATE UNIQUE', 'CREATE'),"
    " 'ON staging.user_order_log ', 'ON public.bench_bare_user_order_log ')"
    " from pg_index where indrelid = 'staging.user_order_log'::regclass"
)
FACTS = "select count(*), count(distinct uniq_id), sum(payment_amount) from {}"


def write_day(directory: Path, orders: int, day: date = DAY) -> Path:
    """Write one synthetic day of ``orders`` distinct order lines as a CSV file."""
    path = directory / "user_order_log_inc.csv"
    with path.open("wb") as out:
        for block in iter_file(SyntheticShape(orders_per_day=orders), "user_order_log", [day]):
            out.write(block)
    return path


def peak_rss_of_load(settings: dict[str, str], path: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, rows loaded) of one ``load_increment`` in a fresh process."""
    env = {**os.environ, **settings, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "benchmarks.loader", "rss", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    return facts["peak_rss_mb"], facts["seconds"], facts["rows_loaded"]


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
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    facts = {"peak_rss_mb": peak_kib / 1024, "seconds": seconds, "rows_loaded": summary.rows_loaded}
    print(json.dumps(facts))


def run(databases: DatabaseFactory, workdir: Path, sizes: Any) -> list[Result]:
    orders, repetitions, large_orders = sizes.orders, sizes.reps, sizes.large_orders
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)  # no per-load chatter
    path = write_day(workdir, orders)
    with path.open("rb") as handle:
        file_rows = sum(1 for _ in handle) - 1
    size = f"{orders:,} order lines, {file_rows:,} file rows, {path.stat().st_size / 1e6:.0f} MB"

    with databases() as settings, connection(settings) as conn:
        migrate(conn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(BARE_INDEXES)
        indexes = [statement for (statement,) in cur.fetchall()]

        def floor() -> None:
            with path.open("rb") as handle:
                copy = f"copy {BARE} from stdin with (format csv, header true)"
                cur.copy_expert(copy, handle, size=1 << 20)
            cur.execute("set maintenance_work_mem = '256MB'")  # as the loader's rebuild
            for statement in indexes:
                cur.execute(statement)

        batches = iter(range(1_000_000))

        def load() -> None:
            load_increment(conn, DAY, {"user_order_log": path}, f"bench-{next(batches)}")
            conn.autocommit = True

        def empty() -> None:
            cur.execute(f"drop table if exists {BARE}; create table {BARE} ({BARE_COLUMNS})")
            cur.execute("truncate staging.user_order_log, staging.load_audit")

        floor_samples: list[float] = []
        load_samples: list[float] = []
        for _ in range(max(1, repetitions)):  # interleaved: a busy moment hits both sides
            floor_samples += median_seconds(floor, 1, before=empty)[1]
            load_samples += median_seconds(load, 1, before=empty)[1]
        cur.execute(FACTS.format("staging.user_order_log"))
        loaded = cur.fetchone()
        floor()  # untimed: what the file holds, to check the load against
        cur.execute(FACTS.format(f"(select distinct on (uniq_id) * from {BARE}) as lines"))
        assert loaded == cur.fetchone(), f"staging {loaded} differs from the file's lines"
        cur.execute(f"select count(*) from {BARE}")
        assert cur.fetchone()[0] == file_rows, "the bare table did not get every file row"

        rss_mb, _, rss_rows = peak_rss_of_load(settings, path)
        assert rss_rows == loaded[0]
        large: list[Result] = []
        if large_orders:
            (workdir / "large").mkdir(exist_ok=True)
            large_path = write_day(workdir / "large", large_orders)
            large_mb, large_s, large_rows = peak_rss_of_load(settings, large_path)
            detail = f"{large_rows:,} lines loaded, {large_path.stat().st_size / 1e6:.0f} MB"
            large = [
                Result(NAME, "peak RSS of one load, large file", large_mb, "MB", detail, 300),
                Result(NAME, "load_increment, large file", large_s, "s", f"once; {detail}"),
            ]
            large_path.unlink()

    floor_s, load_s = statistics.median(floor_samples), statistics.median(load_samples)
    median = f"median of {max(1, repetitions)}"
    return [
        Result(NAME, "floor: COPY + staging's five indexes", floor_s, "s", f"{median}; {size}"),
        Result(NAME, "load_increment", load_s, "s", f"{median}; into an empty day"),
        Result(NAME, "load / floor", ratio(load_s, floor_s), "x", limit=2.0),
        Result(NAME, "load_increment throughput", file_rows / load_s, "rows/s", "file rows / s"),
        Result(NAME, "peak RSS of one load", rss_mb, "MB", "fresh interpreter", limit=300),
        *large,
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "rss":
        _rss_main(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m benchmarks.loader rss FILE (libpq settings from PG*)")

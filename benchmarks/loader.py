"""Loader throughput: ``load_increment`` against typical and naive loads of the same rows.

One synthetic day (``orders`` distinct order lines from the local report API's
generator, written to ``user_order_log_inc.csv``; the file has more rows because the
source repeats lines) is loaded into an empty ``staging.user_order_log`` by:

- ``load_increment``: validate, de-duplicate, COPY into a temp table, replace the day.
- **baseline (typical)**: ``pandas.read_csv`` + ``drop_duplicates`` + ``DataFrame.to_sql``
  (SQLAlchemy 2, default method: batched multi-row INSERTs) into a table of the same
  shape (``like staging.user_order_log including all``: same key, defaults, indexes).
  This is what a pandas-based pipeline usually does, so it is the headline ratio.
- **baseline (naive)**: psycopg2 ``cursor.executemany`` of one INSERT per de-duplicated
  row; one round trip per row, so it is timed on the first ``naive_rows`` rows only and
  reported as rows/s (its rate does not depend on the row count).

The target table is emptied (untimed) before every repetition, so each one is a first
load of the day. The validation/parse share is ``parse_file`` alone over a whole load.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from benchmarks import DatabaseFactory, Result, median_seconds, ratio
from ingestion.loader import SPECS, load_increment, parse_file
from ingestion.migrate import migrate
from ingestion.report_api.synthetic import SyntheticShape, iter_file
from ingestion.warehouse import connection

NAME = "loader"
DAY = date(2024, 10, 7)  # after the status cut-over: the file has the status column
BASELINE_TABLE = "bench_baseline_user_order_log"
COLUMNS = SPECS["user_order_log"].staging_columns()  # the order of parse_file's records


def write_day(directory: Path, orders: int, day: date = DAY) -> Path:
    """Write one synthetic day of ``orders`` distinct order lines as a CSV file."""
    path = directory / "user_order_log_inc.csv"
    shape = SyntheticShape(orders_per_day=orders)
    with path.open("wb") as out:
        for block in iter_file(shape, "user_order_log", [day]):
            out.write(block)
    return path


def _pandas_load(settings: dict[str, str], path: Path) -> int:
    import pandas as pd
    from sqlalchemy import create_engine

    from ingestion.warehouse import connect

    engine = create_engine("postgresql+psycopg2://", creator=lambda: connect(settings))
    try:
        frame = pd.read_csv(path)
        frame = frame.drop(columns=["id"]).drop_duplicates()
        if "status" not in frame.columns:
            frame["status"] = "shipped"
        frame["batch_id"] = "bench"
        frame["loaded_at"] = pd.Timestamp.now(tz="UTC")
        frame.to_sql(BASELINE_TABLE, engine, schema="public", if_exists="append", index=False)
        return len(frame)
    finally:
        engine.dispose()


def _distinct_rows(path: Path) -> list[tuple[str, ...]]:
    parsed = parse_file(SPECS["user_order_log"], path, DAY, DAY)
    return parsed.records


def run(
    databases: DatabaseFactory,
    workdir: Path,
    orders: int = 200_000,
    repetitions: int = 3,
    naive_rows: int = 20_000,
) -> list[Result]:
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)  # no per-load chatter
    path = write_day(workdir, orders)
    with path.open("rb") as fh:
        file_rows = sum(1 for _ in fh) - 1
    records = _distinct_rows(path)
    distinct = len(records)

    with databases() as settings, connection(settings) as conn:
        migrate(conn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                f"create table public.{BASELINE_TABLE} (like staging.user_order_log including all)"
            )

        def empty(table: str) -> None:
            with conn.cursor() as cur:
                cur.execute(f"truncate {table}")
                cur.execute("truncate staging.load_audit")

        batches = iter(range(1_000_000))

        def load() -> None:
            summary = load_increment(
                conn, DAY, {"user_order_log": path}, batch_id=f"bench-{next(batches)}"
            )
            assert summary.tables["user_order_log"].rows_loaded == distinct
            conn.autocommit = True

        loader_s, _ = median_seconds(
            load, repetitions, before=lambda: empty("staging.user_order_log")
        )
        with conn.cursor() as cur:
            cur.execute("select count(*) from staging.user_order_log")
            assert cur.fetchone()[0] == distinct

        parse_s, _ = median_seconds(
            lambda: parse_file(SPECS["user_order_log"], path, DAY, DAY), repetitions
        )

        pandas_s, _ = median_seconds(
            lambda: _pandas_load(settings, path),
            repetitions,
            before=lambda: empty(f"public.{BASELINE_TABLE}"),
        )
        with conn.cursor() as cur:
            cur.execute(f"select count(*) from public.{BASELINE_TABLE}")
            assert cur.fetchone()[0] == distinct, "pandas baseline loaded a different row count"

        sample = records[: max(1, min(naive_rows, distinct))]
        insert = (
            f"insert into public.{BASELINE_TABLE} ({', '.join(COLUMNS)}, batch_id, loaded_at)"
            f" values ({', '.join(['%s'] * len(COLUMNS))}, 'bench', now())"
        )

        def naive() -> None:
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.executemany(insert, sample)
            conn.commit()
            conn.autocommit = True

        naive_s, _ = median_seconds(
            naive, repetitions, before=lambda: empty(f"public.{BASELINE_TABLE}")
        )

    loader_rate = file_rows / loader_s
    pandas_rate = file_rows / pandas_s
    naive_rate = len(sample) / naive_s
    size = f"{orders:,} order lines, {file_rows:,} file rows"
    return [
        Result(NAME, "load_increment", loader_s, "s", f"median of {repetitions}; {size}"),
        Result(NAME, "load_increment throughput", loader_rate, "rows/s", "file rows / s"),
        Result(
            NAME,
            "baseline: pandas read_csv + drop_duplicates + to_sql",
            pandas_s,
            "s",
            f"median of {repetitions}; same file, same-shaped table",
        ),
        Result(NAME, "baseline pandas throughput", pandas_rate, "rows/s", "file rows / s"),
        Result(
            NAME,
            "baseline: psycopg2 executemany (naive)",
            len(sample) / naive_s,
            "rows/s",
            f"distinct rows / s, timed on {len(sample):,} rows",
        ),
        Result(NAME, "speed-up vs pandas to_sql", ratio(loader_rate, pandas_rate), "x", "headline"),
        Result(
            NAME,
            "speed-up vs executemany",
            ratio(distinct / loader_s, naive_rate),
            "x",
            "distinct rows / s, both sides",
        ),
        Result(
            NAME,
            "validation + parse share of load",
            100 * parse_s / loader_s,
            "%",
            f"parse_file alone: {parse_s:.3f} s",
        ),
    ]

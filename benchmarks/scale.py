"""Ten million order lines (issue row B7): load + full build, then one incremental day.

Two years of the synthetic source (``days`` days at ``orders_per_day`` distinct lines a
day, 10,000,000 lines by default) are written as one full-report file, streamed from
the generator to disk, and loaded with ``ingestion.loader.load_report``; then one
``dbt build`` builds every mart from scratch. Both are timed once (they are long).

Then the incremental day the daily run does (``ingestion.dbt.build_sales_day`` on the
last Wednesday) is timed on that database and, as the baseline, on a database holding
only the last ``baseline_days`` (30) days of the same source: the ratio shows whether
the daily build stays flat at this scale (row B3's bound, 1.5x).
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks import DatabaseFactory, Result, ratio
from benchmarks.marts import timed_build
from ingestion import dbt
from ingestion.loader import load_report
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import SyntheticShape, iter_file

NAME = "scale"
LAST_DAY = date(2024, 12, 1)  # a Sunday
DAY = LAST_DAY - timedelta(days=4)  # the Wednesday of the last week


def _report_file(workdir: Path, shape: SyntheticShape, days: list[date]) -> Path:
    path = workdir / f"user_order_log_{len(days)}d.csv"
    with path.open("wb") as out:
        for block in iter_file(shape, "user_order_log", days):
            out.write(block)
    return path


def _load(settings: dict[str, str], path: Path, days: list[date]) -> tuple[float, int]:
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)
    with connection(settings) as conn:
        migrate(conn)
        started = time.perf_counter()
        summary = load_report(conn, days[0], days[-1], {"user_order_log": path}, "bench")
        elapsed = time.perf_counter() - started
    return elapsed, summary.tables["user_order_log"].rows_loaded


def _day_model_seconds(env: dict[str, str], repetitions: int) -> tuple[float, float]:
    """Median (wall, f_sales execution_time) of the daily build of DAY."""
    samples = [
        timed_build(lambda env: dbt.build_sales_day(DAY, env=env), env, "f_sales")
        for _ in range(max(1, repetitions))
    ]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def _database(
    databases: DatabaseFactory,
    workdir: Path,
    shape: SyntheticShape,
    days: list[date],
    repetitions: int,
) -> dict[str, float]:
    path = _report_file(workdir, shape, days)
    with databases() as settings:
        load_s, rows = _load(settings, path, days)
        path.unlink()
        env = {
            **settings,
            "DBT_TARGET_PATH": str(workdir / f"target_{len(days)}"),
            "DBT_LOG_PATH": str(workdir / f"logs_{len(days)}"),
        }
        started = time.perf_counter()
        dbt.build_all(env=env)
        build_s = time.perf_counter() - started
        day_wall, day_sql = _day_model_seconds(env, repetitions)
    return {"rows": rows, "load": load_s, "build": build_s, "day": day_wall, "day_sql": day_sql}


def run(
    databases: DatabaseFactory,
    workdir: Path,
    orders_per_day: int = 13_700,
    days: int = 730,
    baseline_days: int = 30,
    repetitions: int = 2,
) -> list[Result]:
    shape = SyntheticShape(orders_per_day=orders_per_day)
    history = [LAST_DAY - timedelta(days=n) for n in reversed(range(days))]
    big = _database(databases, workdir, shape, history, repetitions)
    small = _database(databases, workdir, shape, history[-baseline_days:], repetitions)
    lines = f"{big['rows']:,} order lines over {days} days"
    return [
        Result(NAME, "load_report of the whole history", big["load"], "s", lines),
        Result(NAME, "load throughput", ratio(big["rows"], big["load"]), "rows/s", "distinct"),
        Result(NAME, "full dbt build", big["build"], "s", "every mart from scratch"),
        Result(NAME, "one incremental day, full history", big["day"], "s", f"{DAY} wall"),
        Result(
            NAME,
            "one incremental day, baseline history",
            small["day"],
            "s",
            f"{baseline_days} days, {small['rows']:,} lines",
        ),
        Result(
            NAME,
            "incremental day: ratio full/baseline, f_sales SQL",
            ratio(big["day_sql"], small["day_sql"]),
            "x",
            f"execution_time {small['day_sql']:.3f} s vs {big['day_sql']:.3f} s",
        ),
        Result(
            NAME,
            "incremental day: ratio full/baseline, wall clock",
            ratio(big["day"], small["day"]),
            "x",
            f"{ratio(big['rows'], small['rows']):.0f}x the lines",
        ),
    ]

"""History independence of the incremental marts.

The daily ``f_sales`` refill (``ingestion.dbt.build_sales_day``) and the Monday
retention build (``build_retention_week``) should cost the same whatever history the
warehouse holds: they touch one day / one week. Two throwaway databases are filled with
the loader from the same synthetic source (``orders_per_day`` lines a day):

- **short**: only the measured week (7 days);
- **long**: that week plus ``extra_weeks`` (8) earlier weeks.

Each is brought up to date once with ``dbt build`` (untimed); then the measured day
(the Wednesday of the last week) and the measured week are rebuilt ``repetitions``
times each. The ratios long/short are reported for the whole dbt invocation (wall clock,
dominated by dbt's start-up and parsing, identical in both) and for the database work
alone, from ``run_results.json``: the model's own ``execution_time`` and the sum over
every node of the invocation (models and their tests). A ratio well above 1 means some
part scans the whole history.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks import DatabaseFactory, Result, ratio
from ingestion import dbt
from ingestion.loader import TABLES, load_increment
from ingestion.migrate import migrate
from ingestion.report_api.synthetic import SyntheticShape, iter_file
from ingestion.warehouse import connection

NAME = "marts"
WEEK_START = date(2024, 11, 25)  # a Monday; history runs back from here
DAY = WEEK_START + timedelta(days=2)


def _load_days(settings: dict[str, str], shape: SyntheticShape, days: list[date], workdir: Path):
    logging.getLogger("ingestion.loader").setLevel(logging.ERROR)
    with connection(settings) as conn:
        migrate(conn)
        for day in days:
            files = {}
            for name in TABLES:
                path = workdir / f"{name}_{day.isoformat()}.csv"
                with path.open("wb") as out:
                    for block in iter_file(shape, name, [day]):
                        out.write(block)
                files[name] = path
            load_increment(conn, day, files, batch_id=f"bench-{day.isoformat()}")
            for path in files.values():
                path.unlink()


def _timed_build(action, env: dict[str, str], model: str) -> tuple[float, float, float]:
    """(wall seconds, the model's execution_time, sum of every node's execution_time)."""
    started = time.perf_counter()
    action(env=env)
    wall = time.perf_counter() - started
    results_path = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results = json.loads(results_path.read_text(encoding="utf-8"))["results"]
    own = sum(r["execution_time"] for r in results if r["unique_id"] == f"model.retail.{model}")
    total = sum(r["execution_time"] for r in results)
    return wall, own, total


def _measure(
    databases: DatabaseFactory,
    workdir: Path,
    shape: SyntheticShape,
    weeks: int,
    repetitions: int,
) -> dict[str, tuple[float, float, float, int]]:
    first = WEEK_START - timedelta(weeks=weeks - 1)
    days = [first + timedelta(days=n) for n in range(7 * weeks)]
    target = workdir / f"dbt_target_{weeks}w"
    with databases() as settings:
        _load_days(settings, shape, days, workdir)
        env = {
            **settings,
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(workdir / f"dbt_logs_{weeks}w"),
        }
        dbt.build_all(env=env)
        with connection(settings) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from mart.f_sales")
            history_rows = cur.fetchone()[0]
        out = {}
        for key, action, model in (
            ("f_sales day", lambda env: dbt.build_sales_day(DAY, env=env), "f_sales"),
            (
                "retention week",
                lambda env: dbt.build_retention_week(WEEK_START, env=env),
                "f_customer_retention",
            ),
        ):
            samples = [_timed_build(action, env, model) for _ in range(max(1, repetitions))]
            out[key] = (
                statistics.median(s[0] for s in samples),
                statistics.median(s[1] for s in samples),
                statistics.median(s[2] for s in samples),
                history_rows,
            )
    return out


def run(
    databases: DatabaseFactory,
    workdir: Path,
    orders_per_day: int = 5_000,
    extra_weeks: int = 8,
    repetitions: int = 3,
) -> list[Result]:
    shape = SyntheticShape(orders_per_day=orders_per_day)
    short = _measure(databases, workdir, shape, 1, repetitions)
    long = _measure(databases, workdir, shape, 1 + extra_weeks, repetitions)
    results: list[Result] = []
    for key in ("f_sales day", "retention week"):
        s_wall, s_own, s_total, s_rows = short[key]
        l_wall, l_own, l_total, l_rows = long[key]
        sizes = f"f_sales {s_rows:,} vs {l_rows:,} rows"
        results += [
            Result(NAME, f"{key}: dbt build, short history", s_wall, "s", f"1 week; {sizes}"),
            Result(
                NAME, f"{key}: dbt build, long history", l_wall, "s", f"{1 + extra_weeks} weeks"
            ),
            Result(
                NAME,
                f"{key}: ratio long/short, wall clock",
                ratio(l_wall, s_wall),
                "x",
                f"{ratio(l_rows, s_rows):.1f}x the f_sales rows",
            ),
            Result(
                NAME,
                f"{key}: ratio long/short, model SQL",
                ratio(l_own, s_own),
                "x",
                f"model execution_time {s_own:.3f} s vs {l_own:.3f} s",
            ),
            Result(
                NAME,
                f"{key}: ratio long/short, all nodes SQL",
                ratio(l_total, s_total),
                "x",
                f"models + tests execution_time {s_total:.3f} s vs {l_total:.3f} s",
            ),
        ]
    return results

"""Ten million order lines (B7): load and full build, then one daily build at that scale.

Two years of the synthetic source (730 days at ``--scale-orders`` distinct lines a day,
10,000,000 lines by default) are streamed into one full-report file and loaded with
``ingestion.loader.load_report``; one ``dbt build`` then builds every mart from scratch
(each timed once, for context). Then the daily build of the last Wednesday
(``build_periods``) is timed on that database (medians of ``--reps``).

Baseline: the same daily build on a database holding the last ``--short-days`` (30) days
of the same source, loaded the same way. Limit: whole/short at most 1.5x (B3's bound),
for the ``f_sales`` SQL and for the wall clock.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import DatabaseFactory, Result, ratio
from benchmarks.marts import BUILDS, FLAT, LAST_DAY, measure_history
from ingestion.loader import load_report
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import SyntheticShape, iter_file

NAME = "scale"


def fill_by_loader(workdir: Path, orders_per_day: int):  # noqa: ANN201
    """A history filler: the source's full report of the days, loaded by the loader."""

    def fill(settings: dict[str, str], days: int) -> dict[str, Any]:
        history = [LAST_DAY - timedelta(days=n) for n in reversed(range(days))]
        path = workdir / f"user_order_log_{days}d.csv"
        with path.open("wb") as out:
            for block in iter_file(
                SyntheticShape(orders_per_day=orders_per_day), "user_order_log", history
            ):
                out.write(block)
        logging.getLogger("ingestion.loader").setLevel(logging.ERROR)
        with connection(settings) as conn:
            migrate(conn)
            started = time.perf_counter()
            summary = load_report(conn, history[0], history[-1], {"user_order_log": path}, "b")
            load_s = time.perf_counter() - started
        path.unlink()
        return {"load_s": load_s, "lines": summary.rows_loaded}

    return fill


def run(databases: DatabaseFactory, workdir: Path, sizes: Any) -> list[Result]:
    fill = fill_by_loader(workdir, sizes.scale_orders)
    day = BUILDS[:1]  # the daily build only
    big = measure_history(databases, workdir, sizes.scale_days, fill, sizes.reps, day)
    small = measure_history(databases, workdir, sizes.short_days, fill, sizes.reps, day)
    (b_wall, b_sql, _), (s_wall, s_sql, _) = big["f_sales day"], small["f_sales day"]
    lines = f"{big['lines']:,} order lines over {sizes.scale_days} days"
    return [
        Result(NAME, "load_report of the whole history", big["load_s"], "s",
               f"{lines}; {ratio(big['lines'], big['load_s']):,.0f} lines/s"),
        Result(NAME, "full dbt build", big["build_s"], "s", "every mart from scratch"),
        Result(NAME, "daily build, whole history", b_wall, "s", f"{LAST_DAY - timedelta(4)}"),
        Result(NAME, f"daily build, {sizes.short_days} days", s_wall, "s",
               f"baseline; {small['lines']:,} lines"),
        Result(NAME, "daily build: whole/short history, f_sales SQL", ratio(b_sql, s_sql), "x",
               f"short {s_sql:.3f} s, whole {b_sql:.3f} s", limit=FLAT),
        Result(NAME, "daily build: whole/short history, wall clock", ratio(b_wall, s_wall), "x",
               f"{ratio(big['lines'], small['lines']):.1f}x the lines", limit=FLAT),
    ]  # fmt: skip

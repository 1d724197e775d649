"""Daily and weekly builds on a short and a long history (B3, B4).

The daily refill (``ingestion.dbt.build_periods``: staging views, dimensions and
``f_sales`` for one day) and the weekly retention build (``build_periods``) touch
one day and one week, so they should cost the same whatever history the warehouse holds.
Two throwaway databases get the same synthetic order lines, generated in SQL straight
into staging (deterministic per day and line, about 5% refunds; the loader has its own
benchmark): a short history (30 days) and a long one (730 days), both ending on the same
Sunday. ``dbt build`` brings each up to date once, untimed; then the Wednesday of the
last week and that week are rebuilt ``--reps`` times each (medians).

Baseline: the same build on the short history. Reported long/short: the whole dbt
invocation (wall clock, mostly dbt's start-up, the same in both), the model's own SQL
(``run_results.json`` ``execution_time``, limit 1.5x) and every node's (models and the
tests ``dbt build`` runs after them). A ratio well above 1 means something reads the
whole history.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import DatabaseFactory, Result, ratio
from ingestion import dbt
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import CITIES, ITEMS

NAME = "marts"
LAST_DAY = date(2024, 12, 1)  # a Sunday; every history ends here
WEEK_START = LAST_DAY - timedelta(days=6)  # the measured week
DAY = WEEK_START + timedelta(days=2)  # its Wednesday
FLAT = 1.5  # B3's bound on long/short

# Order lines as the source sends them, derived from (day, line number) only.
HISTORY_SQL = """
insert into staging.user_order_log (
    uniq_id, date_time, city_id, city_name, customer_id, first_name, last_name,
    item_id, item_name, quantity, payment_amount, status, batch_id, loaded_at, source_day
)
select
    md5(day::date || ':' || line), day + (line %% 86400) * interval '1 second',
    h.city, (%(cities)s::text[])[h.city + 1], h.customer, 'Имя ' || h.customer,
    'Фамилия ' || h.customer, h.item, (%(items)s::text[])[h.item + 1], 1 + h.quantity,
    (1 + h.quantity) * (%(prices)s::int[])[h.item + 1],
    case when h.refund = 0 then 'refunded' else 'shipped' end,
    'bench-' || day::date, now(), day::date
from generate_series(%(first)s::timestamp, %(last)s::timestamp, interval '1 day') as day,
    generate_series(1, %(per_day)s) as line,
    lateral (select abs(hashtext(day::date || ':' || line)::bigint) as hash) as base,
    lateral (
        select base.hash %% 10000 as customer, (base.hash / 7) %% 5 as city,
            (base.hash / 11) %% %(item_count)s as item, (base.hash / 13) %% 5 as quantity,
            (base.hash / 17) %% 20 as refund
    ) as h
"""
Fill = Callable[[dict[str, str], int], dict[str, Any]]  # fills a database with N days
Build = tuple[str, Callable[..., None], str]  # name, ingestion.dbt build, its model
BUILDS: list[Build] = [
    ("f_sales day", lambda env: dbt.build_periods([DAY], env=env), "f_sales"),
    ("retention week", lambda env: dbt.build_periods([], [WEEK_START], env=env),
     "f_customer_retention"),
]  # fmt: skip


def fill_in_sql(orders_per_day: int) -> Fill:
    """A history filler writing ``orders_per_day`` lines a day into staging with SQL."""

    def fill(settings: dict[str, str], days: int) -> dict[str, Any]:
        with connection(settings) as conn, conn.cursor() as cur:
            migrate(conn)
            cur.execute(HISTORY_SQL, {
                "first": LAST_DAY - timedelta(days=days - 1), "last": LAST_DAY,
                "per_day": orders_per_day, "cities": list(CITIES),
                "items": [name for name, _ in ITEMS], "prices": [price for _, price in ITEMS],
                "item_count": len(ITEMS),
            })  # fmt: skip
            cur.execute("analyze staging.user_order_log")
            conn.commit()
        return {}

    return fill


def timed_build(build: Callable[..., None], env: dict[str, str], model: str) -> list[float]:
    """[wall seconds, the model's execution_time, every node's execution_time]."""
    started = time.perf_counter()
    build(env)
    wall = time.perf_counter() - started
    path = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    nodes = json.loads(path.read_text(encoding="utf-8"))["results"]
    own = sum(r["execution_time"] for r in nodes if r["unique_id"] == f"model.retail.{model}")
    return [wall, own, sum(r["execution_time"] for r in nodes)]


def measure_history(
    databases: DatabaseFactory, workdir: Path, days: int, fill: Fill, reps: int, builds=BUILDS
) -> dict[str, Any]:
    """Fill a new database with ``days`` days, build it all once, then time each build:
    medians of [wall, model SQL, all nodes SQL] by name, with ``fill``'s own figures,
    the full build's seconds (``build_s``) and the f_sales rows (``rows``)."""
    with databases() as settings:
        out = fill(settings, days)
        env = {**settings, "DBT_TARGET_PATH": str(workdir / f"dbt_{days}d" / "target"),
               "DBT_LOG_PATH": str(workdir / f"dbt_{days}d" / "logs")}  # fmt: skip
        started = time.perf_counter()
        dbt.build_all(env=env)
        out["build_s"] = time.perf_counter() - started
        with connection(settings) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from mart.f_sales")
            out["rows"] = cur.fetchone()[0]
        for name, build, model in builds:
            samples = [timed_build(build, env, model) for _ in range(max(1, reps))]
            out[name] = [statistics.median(column) for column in zip(*samples, strict=True)]
    return out


def run(databases: DatabaseFactory, workdir: Path, sizes: Any) -> list[Result]:
    fill = fill_in_sql(sizes.mart_orders)
    short = measure_history(databases, workdir, sizes.short_days, fill, sizes.reps)
    long = measure_history(databases, workdir, sizes.long_days, fill, sizes.reps)
    rows = f"f_sales {long['rows']:,} rows (short: {short['rows']:,})"
    results = []
    for name, _, model in BUILDS:
        (s_wall, s_own, s_all), (l_wall, l_own, l_all) = short[name], long[name]
        results += [
            Result(NAME, f"{name}: wall clock, short history", s_wall, "s",
                   f"{sizes.short_days} days; baseline"),
            Result(NAME, f"{name}: wall clock, long history", l_wall, "s",
                   f"{sizes.long_days} days; {rows}"),
            Result(NAME, f"{name}: long/short, wall clock", ratio(l_wall, s_wall), "x"),
            Result(NAME, f"{name}: long/short, {model} SQL", ratio(l_own, s_own), "x",
                   f"short {s_own:.3f} s, long {l_own:.3f} s", limit=FLAT),
            Result(NAME, f"{name}: long/short, all nodes SQL (models and tests)",
                   ratio(l_all, s_all), "x", f"short {s_all:.3f} s, long {l_all:.3f} s"),
        ]  # fmt: skip
    return results

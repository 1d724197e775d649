"""History independence of the incremental marts (issue B3, B4).

The daily ``f_sales`` refill (``ingestion.dbt.build_sales_day``: the staging views, the
dimensions and ``f_sales`` for one day) and the Monday retention build
(``build_retention_week``) should cost the same whatever history the warehouse holds:
they touch one day / one week. Two throwaway databases get the same synthetic order
lines (``orders_per_day`` a day, generated in SQL straight into staging so that two years
of history take seconds; the loader has its own benchmark):

- **short**: ``short_days`` (30) days, about 4 ISO weeks;
- **long**: ``long_days`` (730) days, about 104 ISO weeks.

Both histories end on the same Sunday. Each is brought up to date once with ``dbt
build`` (untimed); then the measured day (the Wednesday of the last week) and the
measured week (the last complete one) are rebuilt ``repetitions`` times each. The ratios
long/short are reported for the whole dbt invocation (wall clock, dominated by dbt's
start-up and parsing, identical in both) and for the database work alone, from
``run_results.json``: the model's own ``execution_time`` and the sum over every node of
the invocation (models and their tests). A ratio well above 1 means some part scans the
whole history.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks import DatabaseFactory, Result, ratio
from ingestion import dbt
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from local_report_api.synthetic import CITIES, ITEMS

NAME = "marts"
LAST_DAY = date(2024, 12, 1)  # a Sunday; both histories end here
WEEK_START = LAST_DAY - timedelta(days=6)  # the measured (last complete) week
DAY = WEEK_START + timedelta(days=2)  # its Wednesday

# Order lines as the source sends them (refunds ~5%, amounts positive), derived from
# (day, line number) only, so both histories hold identical days.
_HISTORY_SQL = """
insert into staging.user_order_log (
    uniq_id, date_time, city_id, city_name, customer_id, first_name, last_name,
    item_id, item_name, quantity, payment_amount, status, batch_id, loaded_at, source_day
)
select
    md5(day::date || ':' || line),
    day + (line %% 86400) * interval '1 second',
    h.city,
    (%(cities)s::text[])[h.city + 1],
    h.customer,
    'Имя ' || h.customer,
    'Фамилия ' || h.customer,
    h.item,
    (%(items)s::text[])[h.item + 1],
    1 + h.quantity,
    (1 + h.quantity) * (%(prices)s::int[])[h.item + 1],
    case when h.refund = 0 then 'refunded' else 'shipped' end,
    'bench-' || day::date,
    now(),
    day::date
from generate_series(%(first)s::timestamp, %(last)s::timestamp, interval '1 day') as day,
    generate_series(1, %(per_day)s) as line,
    lateral (
        select
            abs(hashtext(day::date || ':' || line)::bigint) as hash
    ) as base,
    lateral (
        select
            base.hash %% 10000 as customer,
            (base.hash / 7) %% 5 as city,
            (base.hash / 11) %% %(item_count)s as item,
            (base.hash / 13) %% 5 as quantity,
            (base.hash / 17) %% 20 as refund
    ) as h
"""


def _fill_history(settings: dict[str, str], days: int, orders_per_day: int) -> None:
    first = LAST_DAY - timedelta(days=days - 1)
    with connection(settings) as conn:
        migrate(conn)
        with conn.cursor() as cur:
            cur.execute(
                _HISTORY_SQL,
                {
                    "first": first,
                    "last": LAST_DAY,
                    "per_day": orders_per_day,
                    "cities": list(CITIES),
                    "items": [name for name, _ in ITEMS],
                    "prices": [price for _, price in ITEMS],
                    "item_count": len(ITEMS),
                },
            )
            cur.execute("analyze staging.user_order_log")
        conn.commit()


def timed_build(action, env: dict[str, str], model: str) -> tuple[float, float, float]:
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
    days: int,
    orders_per_day: int,
    repetitions: int,
) -> dict[str, tuple[float, float, float, int]]:
    target = workdir / f"dbt_target_{days}d"
    with databases() as settings:
        _fill_history(settings, days, orders_per_day)
        env = {
            **settings,
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(workdir / f"dbt_logs_{days}d"),
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
            samples = [timed_build(action, env, model) for _ in range(max(1, repetitions))]
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
    short_days: int = 30,
    long_days: int = 730,
    repetitions: int = 3,
) -> list[Result]:
    short = _measure(databases, workdir, short_days, orders_per_day, repetitions)
    long = _measure(databases, workdir, long_days, orders_per_day, repetitions)
    results: list[Result] = []
    for key in ("f_sales day", "retention week"):
        s_wall, s_own, s_total, s_rows = short[key]
        l_wall, l_own, l_total, l_rows = long[key]
        sizes = f"f_sales {s_rows:,} vs {l_rows:,} rows"
        results += [
            Result(
                NAME, f"{key}: dbt build, short history", s_wall, "s", f"{short_days} days; {sizes}"
            ),
            Result(NAME, f"{key}: dbt build, long history", l_wall, "s", f"{long_days} days"),
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

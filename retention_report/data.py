"""Read the last N built weeks of ``mart.f_customer_retention`` into pandas frames.

"Built" weeks are those ``mart.f_customer_retention_weeks`` lists (dbt post-hook
``record_built_weeks``): a built week with no orders has no rows in the mart but is
still reported, with zeros, so a quiet week is not mistaken for a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
from psycopg2.extensions import connection as Connection

COUNT_COLUMNS = [
    "new_customers_count",
    "returning_customers_count",
    "refunded_customer_count",
    "customers_refunded",
]
REVENUE_COLUMNS = ["new_customers_revenue", "returning_customers_revenue"]
MEASURES = COUNT_COLUMNS + REVENUE_COLUMNS
ITEM_COLUMNS = ["period_id", "period_start", "period_end", "item_id", "item_name", *MEASURES]

WEEKS_SQL = """
select period_start
from mart.f_customer_retention_weeks
order by period_start desc
limit %s
"""
ROWS_SQL = """
select
    r.period_id,
    r.period_start,
    r.period_end,
    r.item_id,
    coalesce(i.item_name, r.item_id::text) as item_name,
    r.new_customers_count,
    r.returning_customers_count,
    r.refunded_customer_count,
    r.customers_refunded,
    r.new_customers_revenue,
    r.returning_customers_revenue
from mart.f_customer_retention as r
left join mart.d_item as i on r.item_id = i.item_id
where r.period_name = 'weekly' and r.period_start = any(%s)
order by r.period_start, r.item_id
"""


class NoWeeksBuilt(LookupError):
    """The warehouse holds no built week of ``mart.f_customer_retention`` yet."""


@dataclass(frozen=True)
class RetentionWeeks:
    """The report's data: ``weeks`` (Mondays, oldest first), ``items`` (one row per week
    and item, as in the mart) and ``totals`` (one row per week, summed over items)."""

    weeks: list[date]
    items: pd.DataFrame
    totals: pd.DataFrame

    @property
    def first_week_id(self) -> str:
        return iso_week_id(self.weeks[0])

    @property
    def last_week_id(self) -> str:
        return iso_week_id(self.weeks[-1])


def iso_week_id(monday: date) -> str:
    """``2024-W40``: the mart's ``period_id`` format (``IYYY-"W"IW``)."""
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def read_retention_weeks(conn: Connection, weeks: int = 8) -> RetentionWeeks:
    """The ``weeks`` most recent built weeks; :class:`NoWeeksBuilt` when there is none."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, not {weeks}")
    with conn.cursor() as cur:
        cur.execute(
            "select to_regclass('mart.f_customer_retention') is not null"
            " and to_regclass('mart.f_customer_retention_weeks') is not null"
        )
        (built,) = cur.fetchone()
        mondays: list[date] = []
        if built:
            cur.execute(WEEKS_SQL, (weeks,))
            mondays = sorted(row[0] for row in cur.fetchall())
        if not mondays:
            raise NoWeeksBuilt(
                "mart.f_customer_retention holds no week yet: build one first (the "
                "sales_mart DAG's Monday run, or `python -m ingestion run --start ... --end "
                "...` over a range that contains a Sunday), then render the report again"
            )
        cur.execute(ROWS_SQL, (mondays,))
        rows = cur.fetchall()
    conn.rollback()  # end the read-only transaction: the caller's connection stays idle

    items = pd.DataFrame.from_records(rows, columns=ITEM_COLUMNS)
    for column in COUNT_COLUMNS:
        items[column] = items[column].astype("int64")
    return RetentionWeeks(weeks=mondays, items=items, totals=_weekly_totals(mondays, items))


def _weekly_totals(mondays: list[date], items: pd.DataFrame) -> pd.DataFrame:
    """One row per week (every built week, zeros when it has no row), summed over items.

    Revenues stay ``Decimal`` (exact, as in the mart); counts are sums over items, so a
    customer who bought two items that week counts twice (the mart has no distinct
    total across items).
    """
    frame = pd.DataFrame(
        {
            "period_id": [iso_week_id(monday) for monday in mondays],
            "period_start": mondays,
            "period_end": [monday + timedelta(days=6) for monday in mondays],
        }
    )
    for column in COUNT_COLUMNS:
        sums = items.groupby("period_start")[column].sum()
        frame[column] = [int(sums.get(monday, 0)) for monday in mondays]
    for column in REVENUE_COLUMNS:
        sums = {
            monday: sum(group, Decimal("0.00"))
            for monday, group in items.groupby("period_start")[column]
        }
        frame[column] = [sums.get(monday, Decimal("0.00")) for monday in mondays]
    frame["revenue"] = frame["new_customers_revenue"] + frame["returning_customers_revenue"]
    frame["items"] = [int((items["period_start"] == monday).sum()) for monday in mondays]
    return frame


def week_over_week(totals: pd.DataFrame) -> pd.DataFrame:
    """Change against the week before, in percent (NaN for the first week and from 0)."""
    measures = {
        "revenue": "revenue",
        "new_customers_count": "new customers",
        "returning_customers_count": "returning customers",
        "customers_refunded": "refunded lines",
    }
    frame = pd.DataFrame({"period_id": totals["period_id"]})
    for column, label in measures.items():
        values = totals[column].astype("float64")
        previous = values.shift(1)
        change = (values - previous) / previous * 100
        frame[label] = change.where(previous != 0)
    return frame

"""Read the last N built weeks of ``mart.f_customer_retention`` into pandas frames.

"Built" weeks are those ``mart.f_customer_retention_weeks`` lists: a built week with no
orders has no rows in the mart but is still reported, with zeros, so a quiet week is not
mistaken for a missing one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import pandas as pd
from psycopg2.errors import UndefinedTable
from psycopg2.extensions import connection as Connection

COUNTS = [
    "new_customers_count",
    "returning_customers_count",
    "refunded_customer_count",
    "customers_refunded",
]
REVENUES = ["new_customers_revenue", "returning_customers_revenue"]
WEEK = ["period_id", "period_start", "period_end"]
# The one map from a column to the words a reader sees: table headers and chart legends.
LABELS = {
    "period_id": "week",
    "period_start": "Monday",
    "period_end": "Sunday",
    "items": "items with orders",
    "item_id": "item id",
    "item_name": "item",
    "new_customers_count": "new customers",
    "returning_customers_count": "returning customers",
    "refunded_customer_count": "customers with a refund",
    "customers_refunded": "refunded lines",
    "new_customers_revenue": "revenue of new customers",
    "returning_customers_revenue": "revenue of returning customers",
    "revenue": "revenue",
}
ITEM_COLUMNS = [*WEEK, "item_id", "item_name", *COUNTS, *REVENUES]
TOTAL_COLUMNS = [*WEEK, "items", *COUNTS, *REVENUES, "revenue"]
CHANGES = [
    "revenue",
    "new_customers_count",
    "returning_customers_count",
    "customers_refunded",
]

WEEKS_SQL = """
select to_char(period_start, 'IYYY-"W"IW') as period_id, period_start, period_start + 6
from mart.f_customer_retention_weeks
order by period_start desc
limit %s
"""
ROWS_SQL = """
select
    r.period_id, r.period_start, r.period_end, r.item_id,
    coalesce(i.item_name, r.item_id::text) as item_name,
    r.new_customers_count, r.returning_customers_count,
    r.refunded_customer_count, r.customers_refunded,
    r.new_customers_revenue, r.returning_customers_revenue
from mart.f_customer_retention as r
left join mart.d_item as i on r.item_id = i.item_id
where r.period_name = 'weekly' and r.period_start = any(%s)
order by r.period_start, r.item_id
"""


class NoWeeksBuilt(LookupError):
    """The warehouse holds no built week of ``mart.f_customer_retention`` yet."""


class RetentionWeeks(NamedTuple):
    """``totals``: one row per built week, oldest first, summed over items; ``items``: the
    mart's rows (one per week and item)."""

    totals: pd.DataFrame
    items: pd.DataFrame


def read_retention_weeks(conn: Connection, weeks: int = 8) -> RetentionWeeks:
    """The ``weeks`` most recent built weeks; :class:`NoWeeksBuilt` when there is none."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, not {weeks}")
    with conn.cursor() as cur:
        try:
            cur.execute(WEEKS_SQL, (weeks,))
            built = pd.DataFrame.from_records(cur.fetchall()[::-1], columns=WEEK)
            cur.execute(ROWS_SQL, (list(built["period_start"]),))
            rows = cur.fetchall()
        except UndefinedTable:
            built = pd.DataFrame()
    conn.rollback()  # end the read-only transaction: the caller's connection stays idle
    if built.empty:
        raise NoWeeksBuilt(
            "mart.f_customer_retention holds no week yet: build one first (the "
            "sales_mart DAG's Monday run, or `python -m ingestion run --start ... --end "
            "...` over a range that contains a Sunday), then render the report again"
        )
    return summarize(built, pd.DataFrame.from_records(rows, columns=ITEM_COLUMNS))


def summarize(weeks: pd.DataFrame, items: pd.DataFrame) -> RetentionWeeks:
    """Totals per week (``weeks``: ``period_id``, ``period_start``, ``period_end``).

    Revenues stay ``Decimal`` (exact, as in the mart); counts are sums over items, so a
    customer who bought two items that week counts twice (the mart has no distinct total).
    """
    items = items.astype(dict.fromkeys(COUNTS, "int64"))
    by_week = items.groupby("period_start")
    totals = weeks.join(by_week[COUNTS + REVENUES].sum(), on="period_start")
    totals["items"] = weeks["period_start"].map(by_week.size()).fillna(0)
    totals = totals.fillna({**dict.fromkeys(REVENUES, Decimal("0.00")), **dict.fromkeys(COUNTS, 0)})
    totals = totals.astype(dict.fromkeys([*COUNTS, "items"], "int64"))
    totals["revenue"] = totals["new_customers_revenue"] + totals["returning_customers_revenue"]
    return RetentionWeeks(totals[TOTAL_COLUMNS], items[ITEM_COLUMNS])


def week_over_week(totals: pd.DataFrame) -> pd.DataFrame:
    """Change against the week before, in percent (NaN for the first week and from 0)."""
    values = totals[CHANGES].astype("float64")
    previous = values.shift(1)
    change = ((values - previous) / previous * 100).where(previous != 0)
    return pd.concat([totals[["period_id"]], change], axis=1)

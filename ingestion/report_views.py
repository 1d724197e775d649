"""Plain-text views of the warehouse for the CLI (row counts, the latest retention week)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from psycopg2.extensions import connection as Connection

COUNTED_TABLES = (
    "staging.user_order_log",
    "staging.user_activity_log",
    "staging.customer_research",
    "staging.price_log",
    "mart.d_calendar",
    "mart.d_city",
    "mart.d_customer",
    "mart.d_item",
    "mart.f_sales",
    "mart.f_customer_retention",
)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table, numbers right-aligned."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if is_num else value.ljust(width)
            for value, width, is_num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def table_counts(conn: Connection) -> str:
    """Row count of every staging and mart table (missing tables say so)."""
    rows = []
    with conn.cursor() as cur:
        for table in COUNTED_TABLES:
            cur.execute("select to_regclass(%s)", (table,))
            if cur.fetchone()[0] is None:
                rows.append((table, "missing"))
                continue
            cur.execute(f"select count(*) from {table}")  # names come from COUNTED_TABLES
            rows.append((table, cur.fetchone()[0]))
    conn.rollback()
    return format_table(("table", "rows"), rows)


def latest_retention_week(conn: Connection) -> str:
    """The most recent week of ``mart.f_customer_retention``, item by item."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select r.period_id, r.item_id, i.item_name,
                   r.new_customers_count, r.returning_customers_count,
                   r.refunded_customer_count, r.new_customers_revenue,
                   r.returning_customers_revenue, r.customers_refunded
            from mart.f_customer_retention as r
            left join mart.d_item as i on i.item_id = r.item_id
            where r.period_start = (select max(period_start) from mart.f_customer_retention)
            order by r.item_id
            """
        )
        rows = cur.fetchall()
    conn.rollback()
    if not rows:
        return "mart.f_customer_retention is empty"
    headers = (
        "week", "item_id", "item_name", "new", "returning", "refunded_cust",
        "new_revenue", "returning_revenue", "refunded_lines",
    )  # fmt: skip
    return f"Retention, week {rows[0][0]}:\n" + format_table(headers, rows)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal)

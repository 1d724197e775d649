"""``status`` as rich tables: what was loaded per day, what the marts hold, freshness."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from psycopg2.extensions import connection as Connection
from rich import box
from rich.console import RenderableType
from rich.table import Table

LOADED_TABLES = ("user_order_log", "user_activity_log", "customer_research", "price_log")


def rich_table(title: str | None, headers: tuple[str, ...], rows: list[tuple]) -> Table:
    """A table whose numeric columns (every value a number) are right-aligned."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, header in enumerate(headers):
        values = [row[i] for row in rows if row[i] is not None]
        numeric = bool(values) and all(isinstance(v, int | float | Decimal) for v in values)
        table.add_column(header, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    return table


def query(conn: Connection, sql: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.rollback()  # read only; leave no transaction open
    return rows


def _exists(conn: Connection, table: str) -> bool:
    return query(conn, "select to_regclass(%s) is not null", (table,))[0][0]


LOADS_SQL = f"""
select start_day, end_day, string_agg(distinct
        replace(replace(outcome, 'not_found', 'NOT FOUND'), 'missing', 'missing (404)'), ', '),
    {", ".join(f"max(rows_loaded) filter (where table_name = '{t}')" for t in LOADED_TABLES)},
    batch_id, to_char(loaded_at, 'YYYY-MM-DD HH24:MI:SS')
from staging.load_audit group by start_day, end_day, batch_id, loaded_at
order by loaded_at desc, end_day desc limit %s
"""
# Runs of consecutive days (f_sales) and of built weeks (retention): first, last, count.
SALES_DAYS_SQL = """
select min(day)::text || '..' || max(day), count(*) || ' day(s), ' || sum(lines) || ' lines'
from (select day, lines, day - (row_number() over (order by day))::int as run
      from (select to_date(date_id::text, 'YYYYMMDD') as day, count(*) as lines
            from mart.f_sales group by date_id) as days) as days
group by run order by min(day)
"""
WEEKS_SQL = """
select to_char(min(monday), 'IYYY-"W"IW..') || to_char(max(monday), 'IYYY-"W"IW'),
    count(*) || ' week(s), last built ' || to_char(max(built_at), 'YYYY-MM-DD HH24:MI')
from (select period_start as monday, built_at,
        period_start - 7 * (row_number() over (order by period_start))::int as run
      from mart.f_customer_retention_weeks) as weeks
group by run order by min(monday)
"""


def status(conn: Connection, today: date, limit: int) -> list[RenderableType]:
    """The latest loads (day, outcome, rows per table, when), what the marts hold, how
    fresh the source is, and what is known of failures."""
    if not _exists(conn, "staging.load_audit"):
        return ["Never migrated (no staging.load_audit): `python -m ingestion run` loads data."]
    loads = [
        (str(first) if first == last else f"{first}..{last}", *rest)
        for first, last, *rest in query(conn, LOADS_SQL, (limit,))
    ]
    if not loads:
        return ["Nothing loaded yet (staging.load_audit is empty)."]
    headers = ("day(s)", "outcome", *LOADED_TABLES, "batch", "loaded at")
    marts = [
        (mart, *held)
        for mart, table, sql in (("mart.f_sales", "mart.f_sales", SALES_DAYS_SQL),
            ("mart.f_customer_retention", "mart.f_customer_retention_weeks", WEEKS_SQL))
        if _exists(conn, table)
        for held in query(conn, sql)
    ]  # fmt: skip
    latest, latest_loaded, missing = query(
        conn,
        "select max(end_day), max(end_day) filter (where outcome = 'loaded'),"
        " max(end_day || ' ' || table_name) filter (where outcome = 'missing')"
        " from staging.load_audit",
    )[0]
    return [
        rich_table(f"Latest {len(loads)} load(s), rows loaded per table", headers, loads),
        rich_table(
            "What the marts hold", ("mart", "periods", ""), marts or [("none built", "", "")]
        ),
        f"Source freshness: latest day loaded {latest_loaded}, latest day processed {latest}"
        f"{'' if latest == latest_loaded else ' (NOT FOUND)'}; today is {today},"
        f" {(today - latest).days} day(s) later.",
        "Failures: not recorded in the warehouse (a failed load rolls back with its"
        " load_audit rows): see the command's error or the Airflow task log. Last file the"
        f" API did not have (404): {missing or 'none'}.",
    ]

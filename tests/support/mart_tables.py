"""Reading mart tables back for comparisons."""

from __future__ import annotations

from typing import Any

from ingestion.warehouse import connection

TABLES = {
    "f_sales": "select date_id, item_id, customer_id, city_id, quantity, payment_amount, status,"
    " uniq_id from mart.f_sales order by uniq_id",
    "f_customer_retention": "select * from mart.f_customer_retention"
    " order by period_name, period_id, item_id",
    "d_city": "select city_id, city_name from mart.d_city order by city_id",
    "d_customer": "select customer_id, first_name, last_name, city_id from mart.d_customer"
    " order by customer_id",
    "d_item": "select item_id, item_name from mart.d_item order by item_id",
}


def query(settings: dict[str, str], sql: str, params: Any = None) -> list[tuple]:
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def execute(settings: dict[str, str], sql: str, params: Any = None) -> None:
    with connection(settings) as conn:
        with conn.cursor() as cur:
            cur.execute(sql, params)
        conn.commit()


def snapshot(settings: dict[str, str]) -> dict[str, list[tuple]]:
    """Every mart table's content, in a stable order."""
    return {name: query(settings, sql) for name, sql in TABLES.items()}


def actual_marts(settings: dict[str, str]) -> dict[str, list[tuple]]:
    """The marts in the row shapes of ``support.mart_expectations.expected_marts``."""
    # dbt creates f_customer_retention on the first week built
    [(has_retention,)] = query(settings, "select to_regclass('mart.f_customer_retention')")
    return {
        "f_sales": sorted(
            query(
                settings,
                "select date_id, item_id, customer_id, city_id, quantity, payment_amount,"
                " status, uniq_id from mart.f_sales",
            )
        ),
        "d_city": query(settings, "select city_id, city_name from mart.d_city order by 1"),
        "d_customer": query(
            settings,
            "select customer_id, first_name, last_name, city_id from mart.d_customer order by 1",
        ),
        "d_item": query(settings, "select item_id, item_name from mart.d_item order by 1"),
        "f_customer_retention": sorted(
            query(
                settings,
                "select period_name, period_id, item_id, period_start, period_end,"
                " new_customers_count, returning_customers_count, refunded_customer_count,"
                " new_customers_revenue, returning_customers_revenue, customers_refunded"
                " from mart.f_customer_retention",
            )
        )
        if has_retention
        else [],
    }

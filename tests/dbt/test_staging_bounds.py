"""The staging tests refuse what the loader refuses, before any mart is touched.

A row written to staging by other means (a manual fix, an older loader) with a value the
loader would refuse must stop the day's build on a staging test: the marts then keep
exactly their previous state. The two bounds checked here are the ones the staging tests
used to miss: a quantity of 0 (the loader's minimum is 1) and an amount above
99999999.99, which staging's numeric(14,2) holds but mart.f_sales.payment_amount,
numeric(10,2) for existing consumers, does not.
"""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pytest

from ingestion import dbt
from ingestion.loader import load_increment
from ingestion.warehouse import connection
from support.mart_tables import execute, query, snapshot

DAY = date(2024, 10, 2)
ORDER_HEADER = [
    "id", "uniq_id", "date_time", "city_id", "city_name", "customer_id", "first_name",
    "last_name", "item_id", "item_name", "quantity", "payment_amount", "status",
]  # fmt: skip
INSERT_LINE = """
    insert into staging.user_order_log (uniq_id, date_time, city_id, city_name, customer_id,
        first_name, last_name, item_id, item_name, quantity, payment_amount, status,
        batch_id, loaded_at)
    values (%s, '2024-10-02T12:00:00', 0, 'Москва', 1606, 'Евгений', 'Васильев', 4,
        'Сахар песок', %s, %s, %s, 'manual', now())
"""


def marts(settings: dict[str, str]) -> dict[str, list[tuple]]:
    """Every mart table, d_calendar included."""
    return {
        **snapshot(settings),
        "d_calendar": query(settings, "select * from mart.d_calendar order by date_id"),
    }


@pytest.fixture(scope="module")
def built(staged_database: dict[str, str]) -> dict[str, list[tuple]]:
    dbt.build_all()
    return marts(staged_database)


@pytest.mark.parametrize(
    ("uniq_id", "quantity", "amount", "status", "failing_test"),
    [
        (
            "bad-zero-qty",
            0,
            "100.00",
            "shipped",
            "value_between_stg_report_api__user_order_log_quantity",
        ),
        (
            "bad-huge-amount",
            1,
            "150000000.00",
            "shipped",
            "value_between_stg_report_api__user_order_log_payment_amount",
        ),
        (
            "bad-huge-refund",
            1,
            "100000000.00",
            "refunded",
            "value_between_stg_report_api__user_order_log_payment_amount",
        ),
    ],
)
def test_a_staging_row_the_loader_would_refuse_fails_the_day_and_keeps_the_marts(
    built, staged_database, uniq_id, quantity, amount, status, failing_test
) -> None:
    execute(staged_database, INSERT_LINE, (uniq_id, quantity, amount, status))
    try:
        with pytest.raises(dbt.DbtError) as failure:
            dbt.build_periods([DAY])
        message = str(failure.value)
        assert failing_test in message
        assert uniq_id in message  # the offending row is shown
        failed = failure.value.failed_nodes
        assert all(node.startswith("test.retail.") for node in failed), failed
        assert "numeric field overflow" not in message
        assert marts(staged_database) == built
    finally:
        execute(staged_database, "delete from staging.user_order_log where uniq_id like 'bad-%'")


def test_the_largest_amounts_the_loader_accepts_build(built, staged_database) -> None:
    execute(staged_database, INSERT_LINE, ("edge-max-amount", 1, "99999999.99", "shipped"))
    execute(staged_database, INSERT_LINE, ("edge-max-refund", 1, "99999999.99", "refunded"))
    try:
        dbt.build_periods([DAY])
        assert query(
            staged_database,
            "select uniq_id, quantity, payment_amount from mart.f_sales"
            " where uniq_id like 'edge-%' order by uniq_id",
        ) == [
            ("edge-max-amount", 1, Decimal("99999999.99")),
            ("edge-max-refund", 1, Decimal("-99999999.99")),
        ]
    finally:
        execute(staged_database, "delete from staging.user_order_log where uniq_id like 'edge-%'")
        dbt.build_periods([DAY])
    assert marts(staged_database) == built


def test_a_week_of_the_largest_amounts_the_loader_accepts_builds(
    built, staged_database, tmp_path
) -> None:
    """10,001 lines of 99,999,999.99 in one week, one new customer each: the week's new
    customer revenue, 1,000,099,999,899.99, overflows numeric(14,2) but not the mart's
    numeric(18,2)."""
    day, monday = date(2024, 10, 8), date(2024, 10, 7)
    lines = 10_001
    path = tmp_path / "user_order_log_inc.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(ORDER_HEADER)
        for n in range(1, lines + 1):
            writer.writerow(
                [n, f"max-{n}", "2024-10-08T12:00:00", 1, "Москва", 900_000_000 + n, "Анна"]
                + ["Иванова", 4, "Сахар песок", 1, "99999999.99", "shipped"]
            )
    with connection(staged_database) as conn:
        load_increment(conn, day, {"user_order_log": path}, "increment-max")
    try:
        dbt.build_periods([day], [monday])
        assert query(
            staged_database,
            "select new_customers_count, new_customers_revenue, returning_customers_revenue"
            " from mart.f_customer_retention where period_id = '2024-W41'",
        ) == [(lines, Decimal("99999999.99") * lines, Decimal(0))]
    finally:
        path.write_text(",".join(ORDER_HEADER) + "\n", encoding="utf-8")  # the day emptied
        with connection(staged_database) as conn:
            load_increment(conn, day, {"user_order_log": path}, "increment-empty")
        dbt.build_periods([day], [monday])
    assert marts(staged_database) == built

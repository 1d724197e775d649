"""The marts built by dbt from the real extracts, checked against values computed here.

One database per module (staging loaded once); the tests run in file order and each
leaves the marts as the full build made them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import dbt
from support.mart_expectations import order_lines, retention, signed_sums_per_day
from support.mart_tables import execute, query, snapshot


@pytest.fixture(scope="module")
def built(staged_database: dict[str, str]) -> dict[str, list[tuple]]:
    """All marts built with no variables; returns their snapshot."""
    dbt.build_all()
    return snapshot(staged_database)


def test_the_ephemeral_order_lines_are_inlined_into_each_plan(built, staged_database) -> None:
    """Each model reads int_order_lines_filtered_to_period once, so PostgreSQL inlines the
    CTE and merges it: the plans scan staging directly, as before the ephemeral model."""
    day = "2024-10-01"
    dbt.run_dbt(["compile", "--selector", dbt.SALES_SELECTOR], vars={"day": day})
    compiled = dbt.target_dir() / "compiled" / "retail" / "models" / "marts"
    cte = "__dbt__cte__int_order_lines_filtered_to_period"
    for model in ("d_city", "d_customer", "d_item", "f_sales"):
        sql = (compiled / f"{model}.sql").read_text()
        assert sql.count(f"{cte} as (") == 1 and sql.count(f"from {cte}") == 1, model
        plan = "\n".join(row[0] for row in query(staged_database, f"explain {sql}"))
        assert "CTE Scan" not in plan and "Subquery Scan" not in plan, (model, plan)
        assert "on user_order_log" in plan, (model, plan)


def test_f_sales_matches_staging_per_day(built, staged_database, fixtures_dir: Path) -> None:
    expected = signed_sums_per_day(order_lines(fixtures_dir))
    rows = query(
        staged_database,
        "select date_id, count(*), sum(payment_amount) from mart.f_sales group by date_id",
    )
    assert {date_id: (count, total) for date_id, count, total in rows} == expected
    refunded = query(
        staged_database,
        "select count(*), bool_and(payment_amount < 0 and quantity > 0)"
        " from mart.f_sales where status = 'refunded'",
    )
    assert refunded == [(16, True)]


def test_f_customer_retention_matches_spec(built, staged_database, fixtures_dir: Path) -> None:
    expected = retention(order_lines(fixtures_dir))
    rows = query(
        staged_database,
        """
        select period_name, period_id, item_id, period_start, period_end,
               new_customers_count, returning_customers_count, refunded_customer_count,
               new_customers_revenue, returning_customers_revenue, customers_refunded
        from mart.f_customer_retention
        """,
    )
    assert {row[0] for row in rows} == {"weekly"}
    actual = {(row[1], row[2]): tuple(row[3:]) for row in rows}
    assert actual == expected
    # the week with refunds (2024-10-02 increment) is covered, not only the easy ones
    assert sum(value[7] for key, value in actual.items() if key[0] == "2024-W40") == 16
    column_types = dict(
        query(
            staged_database,
            "select column_name, format_type(atttypid, atttypmod)"
            " from information_schema.columns c"
            " join pg_attribute a on a.attrelid = 'mart.f_customer_retention'::regclass"
            "  and a.attname = c.column_name"
            " where c.table_schema = 'mart' and c.table_name = 'f_customer_retention'",
        )
    )
    assert column_types["new_customers_revenue"] == "numeric(18,2)"
    assert column_types["returning_customers_revenue"] == "numeric(18,2)"


def test_dimensions_cover_the_facts(built, staged_database) -> None:
    orphans = query(
        staged_database,
        """
        select count(*) from mart.f_sales f
        left join mart.d_item i on i.item_id = f.item_id
        left join mart.d_customer c on c.customer_id = f.customer_id
        left join mart.d_city ci on ci.city_id = f.city_id
        left join mart.d_calendar ca on ca.date_id = f.date_id
        where i.item_id is null or c.customer_id is null or ci.city_id is null
           or ca.date_id is null
        """,
    )
    assert orphans == [(0,)]
    assert query(
        staged_database,
        "select week_of_year_iso, first_day_of_week, last_day_of_week"
        " from mart.d_calendar where date_id = 20241230",
    ) == [("2025-W01", date(2024, 12, 30), date(2025, 1, 5))]


@pytest.mark.slow  # several day/week builds in a row (make e2e)
def test_rebuilding_days_and_weeks_in_another_order_is_identical(built, staged_database) -> None:
    # a week first, then the days under it and an older one, each rebuilt alone
    dbt.build_periods([], [date(2024, 9, 30)])
    dbt.build_periods([date(2024, 10, 2)])
    dbt.build_periods([date(2024, 9, 8)])
    assert snapshot(staged_database) == built


@pytest.mark.slow  # several day/week builds in a row (make e2e)
def test_rebuilding_a_period_without_rows_empties_it(built, staged_database) -> None:
    # stale rows for a day and a week that staging has no orders for
    execute(
        staged_database,
        """
        insert into mart.f_sales (date_id, item_id, customer_id, city_id, quantity,
                                  payment_amount, status, uniq_id)
        values (20241009, 1, 2015, 0, 1, 10.00, 'shipped', 'stale-line');
        insert into mart.f_customer_retention
        values ('weekly', '2024-W41', '2024-10-07', '2024-10-13', 1, 1, 0, 0, 10.00, 0, 0);
        """,
    )
    dbt.build_periods([date(2024, 10, 9)])
    assert query(staged_database, "select count(*) from mart.f_sales where date_id = 20241009") == [
        (0,)
    ]
    dbt.build_periods([], [date(2024, 10, 7)])
    assert query(
        staged_database,
        "select count(*) from mart.f_customer_retention where period_id = '2024-W41'",
    ) == [(0,)]
    # the week is listed as built all the same: the planner rebuilds it if a day changes
    assert query(
        staged_database,
        "select period_id, period_end, item_count from mart.f_customer_retention_weeks"
        " where period_start = '2024-10-07'",
    ) == [("2024-W41", date(2024, 10, 13), 0)]
    execute(
        staged_database,
        "delete from mart.f_customer_retention_weeks where period_start = '2024-10-07'",
    )
    assert snapshot(staged_database) == built


@pytest.mark.slow  # several day/week builds in a row (make e2e)
def test_rebuilding_an_older_day_keeps_the_newest_dimension_names(built, staged_database) -> None:
    """A name changed on the latest day survives a later rebuild of an earlier day."""
    rename_city = "update staging.user_order_log set city_name = %s"
    rename_city += " where date_time = '2024-10-02' and city_id = 0"
    rename_item = "update staging.user_order_log set item_name = %s"
    rename_item += " where date_time = '2024-10-02' and item_id = 4"
    execute(staged_database, rename_city, ("Москва (новое имя)",))
    execute(staged_database, rename_item, ("Сахар (новое имя)",))
    try:
        dbt.build_periods([date(2024, 10, 2)])
        dbt.build_periods([date(2024, 9, 10)])  # older lines still carry the old names
        assert query(staged_database, "select city_name from mart.d_city where city_id = 0") == [
            ("Москва (новое имя)",)
        ]
        assert query(staged_database, "select item_name from mart.d_item where item_id = 4") == [
            ("Сахар (новое имя)",)
        ]
    finally:
        execute(staged_database, rename_city, ("Москва",))
        execute(staged_database, rename_item, ("Сахар песок",))
    dbt.build_periods([date(2024, 10, 2)])
    assert snapshot(staged_database) == built


@pytest.mark.slow  # several day/week builds in a row (make e2e)
def test_an_order_line_moved_to_another_day_is_not_duplicated(built, staged_database) -> None:
    moved = query(
        staged_database,
        "select uniq_id from staging.user_order_log where date_time = '2024-10-02'"
        " order by uniq_id limit 1",
    )[0][0]
    execute(
        staged_database,
        "update staging.user_order_log set date_time = '2024-10-09' where uniq_id = %s",
        (moved,),
    )
    try:
        dbt.build_periods([date(2024, 10, 9)])
        assert query(
            staged_database, "select date_id from mart.f_sales where uniq_id = %s", (moved,)
        ) == [(20241009,)]
    finally:
        execute(
            staged_database,
            "update staging.user_order_log set date_time = '2024-10-02' where uniq_id = %s",
            (moved,),
        )
    dbt.build_periods([date(2024, 10, 2)])
    after = snapshot(staged_database)
    # d_customer keeps the attributes of the latest order line it has seen (2024-10-09
    # here, which staging no longer has): a dimension only moves forward.
    assert {k: v for k, v in after.items() if k != "d_customer"} == {
        k: v for k, v in built.items() if k != "d_customer"
    }


def test_bad_staging_rows_fail_the_build_and_keep_the_marts(built, staged_database) -> None:
    bad_rows = """
        insert into staging.user_order_log (uniq_id, date_time, city_id, city_name, customer_id,
            first_name, last_name, item_id, item_name, quantity, payment_amount, status,
            batch_id, loaded_at)
        values
            ('bad-negative-qty', '2024-10-02', 0, 'Москва', 1, 'А', 'Б', 1, 'Молоко 3%',
             -3, 100, 'shipped', 'manual', now()),
            ('bad-status', '2024-10-02', 0, 'Москва', 1, 'А', 'Б', 1, 'Молоко 3%',
             1, 100, 'lost', 'manual', now()),
            ('bad-date', '2019-06-01', 0, 'Москва', 1, 'А', 'Б', 1, 'Молоко 3%',
             1, 100, 'shipped', 'manual', now())
    """
    execute(staged_database, bad_rows)
    try:
        with pytest.raises(dbt.DbtError) as day_failure:
            dbt.build_periods([date(2024, 10, 2)])
        message = str(day_failure.value)
        assert "value_between_stg_report_api__user_order_log_quantity" in message
        assert "accepted_values_rows_stg_report_api__user_order_log_status" in message
        assert "bad-negative-qty" in message and "bad-status" in message
        assert "bad-date" not in message  # the day build looks at its day only
        assert not any(
            node.startswith("model.retail.f_") for node in day_failure.value.failed_nodes
        )

        with pytest.raises(dbt.DbtError) as full_failure:
            dbt.build_all()
        message = str(full_failure.value)
        assert "in_calendar_range_stg_report_api__user_order_log_order_date" in message
        assert "bad-date" in message

        assert snapshot(staged_database) == built
    finally:
        execute(staged_database, "delete from staging.user_order_log where uniq_id like 'bad-%'")


def test_day_sums_are_exact_decimals(built) -> None:
    """Guard against float drift in the comparison helpers themselves."""
    assert all(isinstance(row[5], Decimal) for row in built["f_sales"][:10])

"""A deployment holding the course's legacy mart tables is upgraded by the first dbt run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ingestion import dbt
from support.mart_tables import execute, query
from support.staging import load_fixtures

# Three first builds over a legacy deployment's tables: end to end (`make e2e`).
pytestmark = pytest.mark.slow

LEGACY_DDL = Path(__file__).with_name("legacy_marts.sql")
# What a report written against the legacy columns returns, per day.
LEGACY_QUERY = """
    select f.date_id, c.fact_date, i.item_name, sum(f.quantity), sum(f.payment_amount)
    from mart.f_sales f
    join mart.d_calendar c on c.date_id = f.date_id
    join mart.d_item i on i.item_id = f.item_id
    join mart.d_customer cu on cu.customer_id = f.customer_id
    join mart.d_city ci on ci.city_id = f.city_id
    where f.date_id between 20240901 and 20240902
    group by 1, 2, 3
    order by 1, 3
"""


@pytest.fixture(scope="module")
def legacy_database(make_database, fixtures_dir: Path) -> dict[str, str]:
    settings = make_database()
    execute(settings, LEGACY_DDL.read_text(encoding="utf-8"))
    load_fixtures(settings, fixtures_dir)
    return settings


def test_first_build_upgrades_legacy_marts_and_keeps_history(
    legacy_database: dict[str, str], use_database
) -> None:
    use_database(legacy_database)
    before = query(legacy_database, LEGACY_QUERY)
    ids_before = query(legacy_database, "select id from mart.f_sales order by id")

    dbt.build_all()

    # every historical row is kept, with the same per-day results of a legacy query
    assert query(legacy_database, LEGACY_QUERY) == before
    legacy_rows = query(
        legacy_database,
        "select id, status, uniq_id from mart.f_sales where uniq_id like 'legacy-%' order by id",
    )
    assert [(row[0],) for row in legacy_rows] == ids_before
    assert all(status == "shipped" and uniq == f"legacy-{id_}" for id_, status, uniq in legacy_rows)
    # the new days are there next to them, refunds negative
    assert query(
        legacy_database,
        "select count(*), count(distinct id) from mart.f_sales where uniq_id not like 'legacy-%'",
    ) == [(4722, 4722)]
    assert query(
        legacy_database,
        "select count(*) from mart.f_sales where status = 'refunded' and payment_amount < 0",
    ) == [(16,)]
    # legacy dimension rows survive the merges; the calendar keeps the legacy columns
    assert query(
        legacy_database,
        "select customer_id, city_id from mart.d_customer where customer_id = 900001",
    ) == [(900001, 7)]
    assert query(legacy_database, "select item_name from mart.d_item where item_id = 99") == [
        ("Снято с продажи",)
    ]
    assert query(
        legacy_database,
        "select fact_date, day_num, month_num, year_num from mart.d_calendar"
        " where date_id = 20240902",
    ) == [(date(2024, 9, 2), 2, 9, 2024)]
    # the legacy foreign keys are replaced by dbt relationships tests
    assert query(
        legacy_database,
        "select count(*) from pg_constraint where contype = 'f'"
        " and conrelid = 'mart.f_sales'::regclass",
    ) == [(0,)]


def test_upgrade_is_idempotent_and_day_refill_keeps_legacy_rows(
    legacy_database: dict[str, str], use_database
) -> None:
    use_database(legacy_database)
    before = query(legacy_database, "select * from mart.f_sales order by id")
    dbt.run_dbt(["run-operation", "upgrade_legacy_marts"])
    assert query(legacy_database, "select * from mart.f_sales order by id") == before

    dbt.build_sales_day(date(2024, 10, 2))
    after = query(legacy_database, "select * from mart.f_sales order by uniq_id")
    columns = [
        row[0]
        for row in query(
            legacy_database,
            "select column_name from information_schema.columns"
            " where table_schema = 'mart' and table_name = 'f_sales' order by ordinal_position",
        )
    ]
    uniq = columns.index("uniq_id")
    without_id = [row[1:] for row in sorted(before, key=lambda row: row[uniq])]
    # the day is refilled (new serial ids for its rows), every other row is untouched
    assert [row[1:] for row in after] == without_id


LEGACY_CALENDAR = (
    "select date_id, fact_date, day_num, month_num, month_name, year_num"
    " from mart.d_calendar where date_id between %s and %s order by date_id"
)


def test_legacy_calendar_columns_keep_what_the_legacy_deployment_put_there(
    make_database, use_database
) -> None:
    """month_name stays the legacy abbreviation ('Sep'), not the full name, after an upgrade.

    Compared row by row with the values the legacy deployment wrote (legacy_marts.sql),
    read back from the database before the first dbt run.
    """
    settings = make_database()
    execute(settings, LEGACY_DDL.read_text(encoding="utf-8"))
    use_database(settings)
    before = query(settings, LEGACY_CALENDAR, (20240801, 20240930))
    assert len(before) == 61 and before[0][4] == "Aug"

    dbt.run_dbt(["build", "--select", "d_calendar"])

    assert query(settings, LEGACY_CALENDAR, (20240801, 20240930)) == before
    # the legacy type is kept too, and every month of the calendar fits it
    assert query(
        settings,
        "select data_type, character_maximum_length from information_schema.columns"
        " where table_schema = 'mart' and table_name = 'd_calendar' and column_name = 'month_name'",
    ) == [("character varying", 8)]
    assert query(
        settings,
        "select distinct month_num, month_name, month_full_name from mart.d_calendar"
        " where year_num = 2024 order by month_num",
    ) == [
        (1, "Jan", "January"),
        (2, "Feb", "February"),
        (3, "Mar", "March"),
        (4, "Apr", "April"),
        (5, "May", "May"),
        (6, "Jun", "June"),
        (7, "Jul", "July"),
        (8, "Aug", "August"),
        (9, "Sep", "September"),
        (10, "Oct", "October"),
        (11, "Nov", "November"),
        (12, "Dec", "December"),
    ]

"""Existing deployments: `python -m ingestion migrate` (migration 0009) upgrades their marts
once, then dbt builds on them, from the CLI or a terminal.

Two kinds: the course's hand-made mart tables (tests/dbt/legacy_marts.sql, with an
analyst's view on mart.d_customer), and marts that an earlier version of this project
built, before they had unique keys and numeric(18,2) revenues.
"""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import pytest

from ingestion import dbt
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from support.mart_tables import execute, query
from support.staging import load_fixtures

# Several builds over a legacy deployment's tables: end to end (`make e2e`).
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
# An analyst's view on a legacy dimension, whose varchar columns the upgrade widens.
ANALYST_VIEW = """
    create view public.customer_names as
    select customer_id, first_name || ' ' || last_name as full_name from mart.d_customer;
    grant select on public.customer_names to public;
"""


def _terminal_build(settings: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`dbt build` typed in a terminal: the executable itself, no Python wrapper."""
    return subprocess.run(
        [dbt.dbt_executable(), "build", *args, "--profiles-dir", ".", "--no-use-colors"],
        cwd=dbt.DBT_PROJECT_DIR,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RETAIL_")}, **settings},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def legacy_database(make_database, fixtures_dir: Path) -> dict[str, str]:
    """The course's marts and an analyst's view, then migrate (and load) as the CLI does."""
    settings = make_database()
    execute(settings, LEGACY_DDL.read_text(encoding="utf-8") + ANALYST_VIEW)
    load_fixtures(settings, fixtures_dir)  # migrates first
    return settings


def test_first_build_upgrades_legacy_marts_and_keeps_history(
    legacy_database: dict[str, str], use_database
) -> None:
    use_database(legacy_database)
    # the upgrade kept the analyst's view, and it reads the widened columns
    assert query(
        legacy_database,
        "select full_name from public.customer_names where customer_id = 900001",
    ) == [("Архив Клиент",)]
    assert query(
        legacy_database,
        "select data_type from information_schema.columns where table_schema = 'mart'"
        " and table_name = 'd_customer' and column_name = 'first_name'",
    ) == [("text",)]
    before = query(legacy_database, LEGACY_QUERY)
    ids_before = query(legacy_database, "select id from mart.f_sales order by id")

    result = _terminal_build(legacy_database)
    assert result.returncode == 0, result.stdout[-3000:]

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
    # and the view answers with the names the build wrote
    assert query(legacy_database, "select count(*) from public.customer_names") == query(
        legacy_database, "select count(*) from mart.d_customer"
    )


def test_a_day_refill_keeps_legacy_rows(legacy_database: dict[str, str], use_database) -> None:
    use_database(legacy_database)
    before = query(legacy_database, "select * from mart.f_sales order by id")
    dbt.build_periods([date(2024, 10, 2)])
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
    with connection(settings) as conn:
        migrate(conn)
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


KEYS = """
    select indexrelid::regclass::text, pg_get_indexdef(indexrelid) from pg_index
    where indisunique and indrelid in
        ('mart.f_customer_retention'::regclass, 'mart.d_customer_history'::regclass)
    order by 1
"""
REVENUE_TYPES = """
    select format_type(atttypid, atttypmod) from pg_attribute
    where attrelid = 'mart.f_customer_retention'::regclass and attname like '%revenue'
"""


def test_marts_built_before_the_unique_keys_get_them(
    make_database, fixtures_dir: Path, use_database
) -> None:
    """Marts an earlier version of the project built (no unique key on the retention mart
    and the snapshot, numeric(14,2) revenues, the built weeks' two columns, rows a race
    duplicated), with an analyst's view on the retention mart, are upgraded by 0009."""
    settings = make_database()
    load_fixtures(settings, fixtures_dir)
    use_database(settings)
    dbt.build_all()
    weekly_revenue = "select * from public.weekly_revenue order by 1"
    execute(
        settings,
        "create view public.weekly_revenue as select period_id, sum(new_customers_revenue)"
        " from mart.f_customer_retention group by period_id",
    )
    revenue = query(settings, weekly_revenue)
    [(last_name,)] = query(
        settings, "select last_name from mart.d_customer where customer_id = 2015"
    )
    execute(
        settings,
        """
        do $$ declare name text; begin
            for name in select indexrelid::regclass::text from pg_index where indisunique
                and indrelid in ('mart.f_customer_retention'::regclass,
                                 'mart.d_customer_history'::regclass)
            loop execute 'drop index ' || name; end loop;
        end $$;
        drop view public.weekly_revenue;
        alter table mart.f_customer_retention
            alter column new_customers_revenue type numeric(14, 2),
            alter column returning_customers_revenue type numeric(14, 2);
        create view public.weekly_revenue as select period_id, sum(new_customers_revenue)
            from mart.f_customer_retention group by period_id;
        alter table mart.f_customer_retention_weeks
            drop column period_id, drop column period_end, drop column item_count;
        insert into mart.f_customer_retention
        select * from mart.f_customer_retention where period_id = '2024-W40' limit 3;
        -- a customer's version opened twice, as two snapshots at once did
        insert into mart.d_customer_history (customer_id, first_name, last_name, city_id,
            last_ordered_at, last_order_uniq_id, customer_version_id, valid_from,
            version_recorded_at)
        select customer_id, first_name, 'Двойник', city_id, last_ordered_at,
            last_order_uniq_id, 'race', valid_from + interval '1 second', valid_from
        from mart.d_customer_history where customer_id = 2015;
        delete from staging.schema_migrations where version = '0009';
        """,
    )
    assert query(settings, weekly_revenue) != revenue  # the duplicates count twice

    with connection(settings) as conn:
        assert migrate(conn) == ["0009_mart_keys_and_legacy_marts"]

    assert query(settings, REVENUE_TYPES) == [("numeric(18,2)",), ("numeric(18,2)",)]
    assert [name for name, _ in query(settings, KEYS)] == [
        "mart.d_customer_history_one_current_version",
        "mart.f_customer_retention_period_item_key",
    ]
    # the race's duplicates are gone; the view was kept across the type change
    assert query(settings, weekly_revenue) == revenue
    assert query(
        settings,
        "select last_name, valid_to is null from mart.d_customer_history"
        " where customer_id = 2015 order by valid_from",
    ) == [(last_name, False), ("Двойник", True)]
    assert query(
        settings,
        "select count(*) filter (where item_count is null or period_id is null),"
        " sum(item_count) from mart.f_customer_retention_weeks",
    ) == query(settings, "select 0::bigint, count(*) from mart.f_customer_retention")
    result = _terminal_build(settings)
    assert result.returncode == 0, result.stdout[-3000:]

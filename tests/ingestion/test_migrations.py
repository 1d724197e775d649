"""Staging migrations on a real PostgreSQL: fresh install, reruns, and the legacy upgrade.

The legacy test builds the course's tables by hand (as an existing deployment has them,
with data and no ``schema_migrations``) and checks that the same migrations a fresh
database runs upgrade it in place without losing a row.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion.migrate import (
    EARLIER_VERSIONS,
    MIGRATIONS_DIR,
    MigrationError,
    discover,
    migrate,
)
from ingestion.warehouse import connect

EXPECTED_MIGRATIONS = [
    "0001_course_legacy_tables",
    "0002_status_and_load_metadata",
    "0003_natural_keys",
    "0004_price_log",
    "0005_load_audit",
    "0006_date_indexes",
    "0007_source_day",
    "0008_roles",
    "0009_mart_keys_and_legacy_marts",
]

# docs/contracts.md, as information_schema spells the types.
FINAL_COLUMNS: dict[str, dict[str, str]] = {
    "user_order_log": {
        "uniq_id": "text",
        "date_time": "timestamp without time zone",
        "city_id": "integer",
        "city_name": "text",
        "customer_id": "integer",
        "first_name": "text",
        "last_name": "text",
        "item_id": "integer",
        "item_name": "text",
        "quantity": "bigint",
        "payment_amount": "numeric(14,2)",
        "status": "text",
        "batch_id": "text",
        "loaded_at": "timestamp with time zone",
        "source_day": "date",
    },
    "user_activity_log": {
        "uniq_id": "text",
        "date_time": "timestamp without time zone",
        "action_id": "integer",
        "customer_id": "integer",
        "quantity": "bigint",
        "batch_id": "text",
        "loaded_at": "timestamp with time zone",
        "source_day": "date",
    },
    "customer_research": {
        "date_id": "timestamp without time zone",
        "category_id": "integer",
        "geo_id": "integer",
        "sales_qty": "bigint",
        "sales_amt": "numeric(14,2)",
        "batch_id": "text",
        "loaded_at": "timestamp with time zone",
    },
    "price_log": {
        "price_date": "date",
        "item_name": "text",
        "price": "numeric(14,2)",
        "batch_id": "text",
        "loaded_at": "timestamp with time zone",
    },
}

FINAL_KEYS = {
    "user_order_log": ["uniq_id"],
    "user_activity_log": ["uniq_id"],
    "customer_research": ["date_id", "category_id", "geo_id"],
    "price_log": ["price_date", "item_name"],
}


def columns_of(conn, table: str) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            """
            select column_name,
                   case when data_type = 'numeric'
                        then 'numeric(' || numeric_precision || ',' || numeric_scale || ')'
                        else data_type end
            from information_schema.columns
            where table_schema = 'staging' and table_name = %s
            order by ordinal_position
            """,
            (table,),
        )
        result = dict(cur.fetchall())
    conn.rollback()
    return result


def primary_key_of(conn, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            """
            select a.attname
            from pg_index i
            join lateral unnest(i.indkey) with ordinality as k(attnum, position) on true
            join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
            where i.indrelid = %s::regclass and i.indisprimary
            order by k.position
            """,
            (f"staging.{table}",),
        )
        result = [row[0] for row in cur.fetchall()]
    conn.rollback()
    return result


def scalar(conn, query: str, params: tuple = ()) -> object:
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    conn.rollback()
    return row[0] if row else None


def test_fresh_database_reaches_the_contract_shape(pg_conn) -> None:
    assert migrate(pg_conn) == EXPECTED_MIGRATIONS
    for table, expected in FINAL_COLUMNS.items():
        assert columns_of(pg_conn, table) == expected, table
        assert primary_key_of(pg_conn, table) == FINAL_KEYS[table], table
    assert (
        scalar(
            pg_conn,
            "select column_default || ' ' || is_nullable from information_schema.columns"
            " where table_schema = 'staging' and table_name = 'user_order_log'"
            " and column_name = 'status'",
        )
        == "'shipped'::text NO"
    )
    # No CHECK constraint on status or quantity: the loader and dbt tests guard them.
    assert (
        scalar(
            pg_conn,
            "select count(*) from pg_constraint where contype = 'c'"
            " and conrelid = 'staging.user_order_log'::regclass",
        )
        == 0
    )
    for index in ("user_order_log_date_time_idx", "user_activity_log_date_time_idx"):
        assert scalar(pg_conn, "select to_regclass(%s)::text", (f"staging.{index}",))
    assert scalar(pg_conn, "select to_regclass('staging.load_audit')::text")


def test_migrate_twice_is_a_no_op(pg_conn) -> None:
    migrate(pg_conn)
    before = {table: columns_of(pg_conn, table) for table in FINAL_COLUMNS}
    assert migrate(pg_conn) == []
    assert {table: columns_of(pg_conn, table) for table in FINAL_COLUMNS} == before
    assert scalar(pg_conn, "select count(*) from staging.schema_migrations") == len(
        EXPECTED_MIGRATIONS
    )


def test_concurrent_runs_apply_each_migration_once(warehouse) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        conn = connect(warehouse)
        try:
            results.append(migrate(conn))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sorted(results, key=len) == [[], EXPECTED_MIGRATIONS]


def test_failed_migration_is_rolled_back_and_named(pg_conn, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "0099_broken.sql").write_text(
        "create table staging.half_done (x int);\nselect * from staging.no_such_table;\n"
    )
    with pytest.raises(MigrationError, match="0099_broken"):
        migrate(pg_conn, directory)
    assert scalar(pg_conn, "select to_regclass('staging.half_done')") is None
    assert scalar(pg_conn, "select max(version) from staging.schema_migrations") == "0009"
    # The lock was released: a later run proceeds.
    assert migrate(pg_conn) == []


def test_discover_matches_the_files() -> None:
    assert [m.name for m in discover()] == EXPECTED_MIGRATIONS


LEGACY_DDL = """
create schema staging;
create table staging.user_order_log (
    id serial primary key,
    uniq_id varchar(100) not null,
    date_time timestamp not null,
    city_id int not null,
    city_name varchar(100),
    customer_id int not null,
    first_name varchar(100),
    last_name varchar(100),
    item_id int not null,
    item_name varchar(100),
    quantity bigint,
    payment_amount numeric(10, 2)
);
create table staging.user_activity_log (
    id serial primary key,
    uniq_id varchar(100) not null,
    date_time timestamp,
    action_id bigint,
    customer_id bigint,
    quantity bigint
);
create table staging.customer_research (
    id serial primary key,
    date_id timestamp,
    category_id int,
    geo_id int,
    sales_qty int,
    sales_amt numeric(10, 2)
);
"""

LEGACY_ORDERS = [
    # uniq_id, date_time, city_id, city_name, customer_id, first, last, item, name, qty, amount
    (
        "a1",
        "2024-09-08 00:00:00",
        0,
        "Москва",
        10,
        "Анна",
        "Лебедева",
        1,
        "Томаты",
        2,
        "99999999.99",
    ),
    ("a2", "2024-09-08 00:00:00", 1, "Ростов", 11, "Ольга", "Егорова", 2, "Сахар", 1, "150.50"),
    # the source repeats order lines; the course loader appended every copy
    ("a2", "2024-09-08 00:00:00", 1, "Ростов", 11, "Ольга", "Егорова", 2, "Сахар", 1, "150.50"),
    ("b1", "2024-09-09 00:00:00", 2, "Ярославль", 12, "Иван", "Петров", 3, "Молоко 1%", 5, "500"),
    ("b1", "2024-09-09 00:00:00", 2, "Ярославль", 12, "Иван", "Петров", 3, "Молоко 1%", 5, "500"),
    ("b1", "2024-09-09 00:00:00", 2, "Ярославль", 12, "Иван", "Петров", 3, "Молоко 1%", 5, "500"),
    ("b2", "2024-09-09 00:00:00", 0, "Москва", 13, "Пётр", "Иванов", 4, "Хлеб", 3, "0.01"),
]


def test_legacy_deployment_is_upgraded_in_place(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(LEGACY_DDL)
        cur.executemany(
            "insert into staging.user_order_log (uniq_id, date_time, city_id, city_name,"
            " customer_id, first_name, last_name, item_id, item_name, quantity, payment_amount)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            LEGACY_ORDERS,
        )
        cur.executemany(
            "insert into staging.user_activity_log (uniq_id, date_time, action_id,"
            " customer_id, quantity) values (%s, %s, %s, %s, %s)",
            [
                ("u1", "2024-09-08", 1, 10, 3),
                ("u1", "2024-09-08", 1, 10, 3),
                ("u2", "2024-09-09", 2, 11, 0),
            ],
        )
        cur.executemany(
            "insert into staging.customer_research (date_id, category_id, geo_id, sales_qty,"
            " sales_amt) values (%s, %s, %s, %s, %s)",
            [
                ("2024-09-08", 1001, 1, 5, "1920.00"),
                ("2024-09-08", 1001, 2, 2, "768.00"),
                ("2024-09-08", 1001, 2, 2, "768.00"),
            ],
        )
    pg_conn.commit()

    distinct = {row[0]: row for row in LEGACY_ORDERS}
    expected_sums: dict[str, Decimal] = {}
    for row in distinct.values():
        expected_sums[row[1][:10]] = expected_sums.get(row[1][:10], Decimal(0)) + Decimal(row[10])

    pg_conn.notices.clear()
    assert migrate(pg_conn) == EXPECTED_MIGRATIONS

    for table, expected in FINAL_COLUMNS.items():
        assert columns_of(pg_conn, table) == expected, table
        assert primary_key_of(pg_conn, table) == FINAL_KEYS[table], table

    with pg_conn.cursor() as cur:
        cur.execute(
            "select date_time::date::text, sum(payment_amount), count(*)"
            " from staging.user_order_log group by 1 order by 1"
        )
        per_day = {day: (total, count) for day, total, count in cur.fetchall()}
        cur.execute("select distinct status from staging.user_order_log")
        statuses = [row[0] for row in cur.fetchall()]
        cur.execute("select uniq_id from staging.user_order_log order by 1")
        keys = [row[0] for row in cur.fetchall()]
        cur.execute("select count(*), count(batch_id) from staging.user_activity_log")
        activity = cur.fetchone()
        cur.execute("select count(*), sum(sales_amt) from staging.customer_research")
        research = cur.fetchone()
    pg_conn.rollback()

    assert {day: total for day, (total, _) in per_day.items()} == expected_sums
    assert per_day["2024-09-08"][1] == 2 and per_day["2024-09-09"][1] == 2
    assert statuses == ["shipped"]
    assert keys == sorted(distinct)
    assert activity == (2, 0)  # repeats removed; legacy rows have no batch
    assert research == (2, Decimal("2688.00"))
    # A full-precision numeric(10,2) amount survives the widening untouched.
    assert scalar(
        pg_conn, "select payment_amount from staging.user_order_log where uniq_id = 'a1'"
    ) == Decimal("99999999.99")


def test_legacy_upgrade_refuses_rows_without_a_key(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(LEGACY_DDL)
        cur.execute(
            "insert into staging.customer_research (date_id, category_id, geo_id, sales_qty,"
            " sales_amt) values (null, 1001, 1, 5, 10)"
        )
    pg_conn.commit()
    with pytest.raises(MigrationError, match="0003_natural_keys.*NULL date_id"):
        migrate(pg_conn)
    # Rolled back to the previous version: the data is still there to be fixed.
    assert scalar(pg_conn, "select max(version) from staging.schema_migrations") == "0002"
    assert scalar(pg_conn, "select count(*) from staging.customer_research") == 1


def _legacy_staging(conn, orders: list[tuple]) -> None:
    with conn.cursor() as cur:
        cur.execute(LEGACY_DDL)
        cur.executemany(
            "insert into staging.user_order_log (uniq_id, date_time, city_id, city_name,"
            " customer_id, first_name, last_name, item_id, item_name, quantity, payment_amount)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            orders,
        )
    conn.commit()


def test_a_legacy_correction_wins_and_the_older_versions_are_kept(pg_conn, caplog) -> None:
    """The course's loader appended corrections: the row loaded last (highest id) wins,
    every other version is kept with the reason, and the log says how many."""
    first = ("c1", "2024-09-08 10:00:00", 0, "Москва", 10, "Анна", "Лебедева", 1, "Томаты")
    _legacy_staging(
        pg_conn,
        [
            (*first, 1, "100.00"),  # id 1
            (*first, 1, "100.00"),  # id 2, an exact repeat
            (*first, 2, "180.00"),  # id 3, a correction
            (*first, 3, "250.00"),  # id 4, the last correction: wins
            (*first, 3, "250.00"),  # id 5, its repeat
        ],
    )
    with caplog.at_level(logging.INFO, logger="ingestion.migrate"):
        assert migrate(pg_conn) == EXPECTED_MIGRATIONS
    assert scalar(
        pg_conn, "select (quantity, payment_amount)::text from staging.user_order_log"
    ) == ("(3,250.00)")
    with pg_conn.cursor() as cur:
        cur.execute(
            "select id, quantity, payment_amount, superseded_by_id, reason"
            " from staging.user_order_log_superseded order by id"
        )
        superseded = cur.fetchall()
    pg_conn.rollback()
    reason = "a later row of the same key (higher id) replaced it"
    assert superseded == [
        (1, 1, Decimal("100.00"), 5, reason),
        (2, 1, Decimal("100.00"), 5, reason),
        (3, 2, Decimal("180.00"), 5, reason),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "0003_natural_keys: staging.user_order_log: 3 rows replaced by a later row of the same"
        " key (highest id kept) differ from it: kept in staging.user_order_log_superseded"
    ]
    # no version differed in the other tables: no table of superseded rows for them
    assert scalar(pg_conn, "select to_regclass('staging.user_activity_log_superseded')") is None


@pytest.fixture
def roles(pg_conn) -> Iterator[tuple[str, str]]:
    """Two login roles of this test (roles are cluster-wide), dropped at the end."""
    suffix = uuid.uuid4().hex[:8]
    owner, reader = f"test_view_owner_{suffix}", f"test_view_reader_{suffix}"
    with pg_conn.cursor() as cur:
        cur.execute(f"create role {owner}; create role {reader}")
    pg_conn.commit()
    yield owner, reader
    with pg_conn.cursor() as cur:
        cur.execute(f"drop owned by {owner}, {reader} cascade; drop role {owner}, {reader}")
    pg_conn.commit()


def test_users_views_on_legacy_staging_survive_the_upgrade(pg_conn, roles) -> None:
    owner, reader = roles
    _legacy_staging(pg_conn, LEGACY_ORDERS)
    with pg_conn.cursor() as cur:
        cur.execute(
            f"""
            create schema reports;
            grant usage, create on schema reports to {owner};
            grant select on staging.user_order_log to {owner};
            create view reports.daily_revenue as
                select date_time::date as day, uniq_id, payment_amount, city_name
                from staging.user_order_log;
            comment on view reports.daily_revenue is 'Revenue per order line and day';
            alter view reports.daily_revenue owner to {owner};
            grant select on reports.daily_revenue to {reader};
            create view reports.revenue_per_day with (security_barrier = true) as
                select day, sum(payment_amount) as revenue from reports.daily_revenue group by day;
            """
        )
    pg_conn.commit()
    per_day = "select day::text, revenue from reports.revenue_per_day order by day"

    assert migrate(pg_conn) == EXPECTED_MIGRATIONS

    # the views answer, on staging without its repeated rows
    distinct = {row[0]: row for row in LEGACY_ORDERS}.values()
    expected = {
        day: sum(Decimal(row[10]) for row in distinct if row[1].startswith(day))
        for day in ("2024-09-08", "2024-09-09")
    }
    with pg_conn.cursor() as cur:
        cur.execute(per_day)
        assert dict(cur.fetchall()) == expected
    pg_conn.rollback()
    assert columns_of(pg_conn, "user_order_log") == FINAL_COLUMNS["user_order_log"]
    assert scalar(
        pg_conn,
        "select array[pg_get_userbyid(relowner), obj_description(oid, 'pg_class'),"
        " has_table_privilege(%s, oid, 'select')::text]"
        " from pg_class where oid = 'reports.daily_revenue'::regclass",
        (reader,),
    ) == [owner, "Revenue per order line and day", "true"]
    assert (
        scalar(
            pg_conn,
            "select reloptions::text from pg_class where oid = 'reports.revenue_per_day'::regclass",
        )
        == "{security_barrier=true}"
    )


def test_a_view_that_reads_a_dropped_column_fails_the_upgrade_naming_it(pg_conn) -> None:
    _legacy_staging(pg_conn, LEGACY_ORDERS)
    with pg_conn.cursor() as cur:
        cur.execute(
            "create view public.order_rows as select id, uniq_id from staging.user_order_log"
        )
    pg_conn.commit()
    with pytest.raises(
        MigrationError, match=r"0003_natural_keys.*view public\.order_rows could not"
    ):
        migrate(pg_conn)
    assert scalar(pg_conn, "select max(version) from staging.schema_migrations") == "0002"
    assert scalar(pg_conn, "select count(*) from public.order_rows") == len(LEGACY_ORDERS)


def test_a_deployment_that_applied_the_earlier_0003_is_up_to_date(pg_conn, caplog) -> None:
    migrate(pg_conn)
    for checksum, warned in ((next(iter(EARLIER_VERSIONS["0003"])), False), ("edited", True)):
        with pg_conn.cursor() as cur:
            cur.execute(
                "update staging.schema_migrations set checksum = %s where version = '0003'",
                (checksum,),
            )
        pg_conn.commit()
        caplog.clear()
        assert migrate(pg_conn) == []
        assert ("0003_natural_keys changed after it was applied" in caplog.text) is warned

"""Concurrent loads and builds on the real PostgreSQL and the real dbt (ingestion.locks).

Two loads of one day started at once end as one load; a load or build that finds the
lock held waits, and after the timeout fails naming what it waited for.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import pytest
from psycopg2 import sql

from ingestion import dbt, locks
from ingestion.loader import TABLES, load_increment, load_report
from ingestion.migrate import migrate
from ingestion.warehouse import connect, connection

REPORT_START, REPORT_END = date(2024, 9, 8), date(2024, 9, 30)
# What a load takes on each table it writes, held by another session.
HOLD_ORDERS = "lock table staging.user_order_log in share row exclusive mode"
DAY = date(2024, 10, 1)
STAGING_COLUMNS = {
    "user_order_log": "uniq_id, date_time, city_id, customer_id, item_id, quantity,"
    " payment_amount, status, batch_id, source_day",
    "user_activity_log": "uniq_id, date_time, action_id, customer_id, quantity, batch_id,"
    " source_day",
    "customer_research": "date_id, category_id, geo_id, sales_qty, sales_amt, batch_id",
    "price_log": "price_date, item_name, price, batch_id",
}


def _files(folder: Path, suffix: str = "") -> dict[str, Path | None]:
    return {name: folder / f"{name}{suffix}.csv" for name in TABLES}


def _staging(settings: dict[str, str]) -> dict[str, list[tuple]]:
    with connection(settings) as conn, conn.cursor() as cur:
        content = {}
        for table, columns in STAGING_COLUMNS.items():
            cur.execute(
                sql.SQL("select {} from {} order by 1, 2, 3").format(
                    sql.SQL(columns), sql.Identifier("staging", table)
                )
            )
            content[table] = cur.fetchall()
        return content


def _prepared(make_database, fixtures_dir: Path) -> dict[str, str]:
    settings = make_database()
    with connection(settings) as conn:
        migrate(conn)
        load_report(conn, REPORT_START, REPORT_END, _files(fixtures_dir / "report"), "report")
    return settings


def _load_day(settings: dict[str, str], fixtures_dir: Path) -> None:
    folder = fixtures_dir / "increments" / DAY.isoformat()
    with connection(settings) as conn:
        load_increment(conn, DAY, _files(folder, "_inc"), f"increment-{DAY}")


def test_two_loads_of_the_same_day_at_once_equal_one_load(make_database, fixtures_dir) -> None:
    once = _prepared(make_database, fixtures_dir)
    _load_day(once, fixtures_dir)

    twice = _prepared(make_database, fixtures_dir)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            start.wait(timeout=30)
            _load_day(twice, fixtures_dir)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert _staging(twice) == _staging(once)
    with connection(twice) as conn, conn.cursor() as cur:
        cur.execute(
            "select count(*) from staging.load_audit where batch_id = %s", (f"increment-{DAY}",)
        )
        assert cur.fetchone()[0] == 2 * len(TABLES)  # both loads ran, one after the other


def test_a_load_waits_for_the_load_holding_its_table(make_database, fixtures_dir) -> None:
    settings = _prepared(make_database, fixtures_dir)
    holder = connect(settings)
    try:
        with holder.cursor() as cur:
            cur.execute(HOLD_ORDERS)
        release = threading.Timer(1.5, holder.rollback)
        release.start()
        started = time.monotonic()
        _load_day(settings, fixtures_dir)
        waited = time.monotonic() - started
        release.join()
    finally:
        holder.close()
    assert waited >= 1.4
    assert _staging(settings)["user_order_log"]


def test_a_load_lock_timeout_names_the_table_and_changes_nothing(
    make_database, fixtures_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _prepared(make_database, fixtures_dir)
    before = _staging(settings)
    monkeypatch.setenv(locks.TIMEOUT_VARIABLE, "0.5")
    holder = connect(settings)
    try:
        with holder.cursor() as cur:
            cur.execute(HOLD_ORDERS)
        with pytest.raises(locks.LockTimeout) as raised:
            _load_day(settings, fixtures_dir)
    finally:
        holder.close()
    assert str(raised.value) == ("another load of staging.user_order_log is running; waited 0.5 s")
    assert _staging(settings) == before


def test_a_build_lock_timeout_names_the_database(warehouse, monkeypatch) -> None:
    monkeypatch.setenv(locks.TIMEOUT_VARIABLE, "0.5")
    with (
        locks.session_lock(warehouse, locks.MARTS_BUILD_LOCK_KEY, "test holder"),
        pytest.raises(locks.LockTimeout) as raised,
    ):
        dbt.build_periods([DAY])
    assert str(raised.value) == (
        f"another dbt build of the marts in database {warehouse['PGDATABASE']} is running;"
        " waited 0.5 s"
    )
    with connection(warehouse) as conn:
        assert lock_holders(conn, locks.MARTS_BUILD_LOCK_KEY) == []


def test_the_lock_timeout_setting_is_checked(monkeypatch) -> None:
    monkeypatch.setenv(locks.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(ValueError, match="PIPELINE_LOCK_TIMEOUT_S='soon'"):
        locks.lock_timeout_s()
    monkeypatch.setenv(locks.TIMEOUT_VARIABLE, "0")
    with pytest.raises(ValueError, match="must be positive"):
        locks.lock_timeout_s()
    monkeypatch.delenv(locks.TIMEOUT_VARIABLE)
    assert locks.lock_timeout_s() == locks.DEFAULT_TIMEOUT_S


def lock_holders(conn, key: int) -> list[int]:
    """Process ids of the sessions holding the advisory lock ``key`` in ``conn``'s database."""
    with conn.cursor() as cur:
        cur.execute(
            "select pid from pg_locks where locktype = 'advisory' and granted"
            " and database = (select oid from pg_database where datname = current_database())"
            " and objsubid = 1 and ((classid::bigint << 32) | objid::bigint) = %s",
            (key,),
        )
        return [row[0] for row in cur.fetchall()]

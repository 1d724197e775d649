"""The roles of migration 0008 on the real PostgreSQL: what each may and may not do.

Login roles are created per test module with unique names (roles are cluster-wide and
other test runs share the server) and dropped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import psycopg2
import pytest
from psycopg2 import errors, sql

from ingestion import dbt
from ingestion.loader import load_increment, load_report
from ingestion.migrate import migrate
from ingestion.pipeline import rebuild_plan
from ingestion.warehouse import connect, connection
from support.mart_tables import query
from support.staging import REPORT_END, REPORT_START, load_fixtures, staging_files

DAY = date(2024, 10, 1)
GROUPS = ("retail_loader", "retail_transformer", "retail_analyst")


@pytest.fixture(scope="module")
def logins(make_database, pg_server) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A migrated database, and a login user per group role (member of that one only)."""
    settings = make_database()
    with connection(settings) as conn:
        migrate(conn)
    suffix = uuid.uuid4().hex[:8]
    users = {group: f"test_{group}_{suffix}" for group in GROUPS}
    admin = connect(settings)
    admin.autocommit = True
    with admin.cursor() as cur:
        for group, user in users.items():
            cur.execute(
                sql.SQL("create role {} login in role {}").format(
                    sql.Identifier(user), sql.Identifier(group)
                )
            )
    try:
        yield settings, users
    finally:
        with admin.cursor() as cur:
            for user in users.values():
                cur.execute(sql.SQL("drop owned by {}").format(sql.Identifier(user)))
                cur.execute(sql.SQL("drop role {}").format(sql.Identifier(user)))
        admin.close()


@pytest.fixture(scope="module")
def built(logins, fixtures_dir):
    """The report and a day loaded as the loader's user, the day built as dbt's user."""
    settings, users = logins
    as_loader = {**settings, "PGUSER": users["retail_loader"]}
    with connection(as_loader) as conn:
        assert migrate(conn) == []  # checking the migrations needs no CREATE privilege
        report = load_report(
            conn, REPORT_START, REPORT_END, staging_files(fixtures_dir / "report"), "report"
        )
        folder = fixtures_dir / "increments" / DAY.isoformat()
        day = load_increment(conn, DAY, staging_files(folder, "_inc"), f"increment-{DAY}")
        plan = rebuild_plan(conn, DAY, DAY, day.rebuild_days, source_start=REPORT_START)
    assert report.tables["user_order_log"].rows_loaded > 0
    assert plan.days == [DAY]
    dbt.build_periods(
        [REPORT_END, DAY],
        [date(2024, 9, 23)],
        env={
            **as_loader,
            "DBT_PGUSER": users["retail_transformer"],
            "DBT_PGROLE": "retail_transformer",
        },
    )
    return settings, users


def _as(settings: dict[str, str], user: str, statement: str) -> list[tuple]:
    conn = connect({**settings, "PGUSER": user})
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_the_pipeline_runs_as_loader_and_transformer(built) -> None:
    settings, users = built
    (lines,) = query(settings, "select count(*) from mart.f_sales where date_id = 20241001")[0]
    assert lines > 0
    owners = query(
        settings,
        "select distinct pg_get_userbyid(relowner) from pg_class"
        " where relnamespace = 'mart'::regnamespace and relkind in ('r', 'v')",
    )
    assert owners == [("retail_transformer",)]
    # the analyst reads what dbt created after the migration (default privileges)
    assert _as(settings, users["retail_analyst"], "select count(*) from mart.f_sales") == [
        (query(settings, "select count(*) from mart.f_sales")[0][0],)
    ]
    assert _as(settings, users["retail_analyst"], "select count(*) from mart.f_customer_retention")


@pytest.mark.parametrize(
    ("group", "statement"),
    [
        ("retail_loader", "insert into mart.f_sales (uniq_id) values ('x')"),
        ("retail_loader", "delete from mart.f_sales"),
        ("retail_loader", "create table mart.loader_table (x int)"),
        ("retail_loader", "select count(*) from mart.f_sales"),
        ("retail_transformer", "insert into staging.user_order_log (uniq_id) values ('x')"),
        ("retail_transformer", "delete from staging.user_order_log"),
        ("retail_transformer", "truncate staging.load_audit"),
        ("retail_analyst", "insert into mart.f_sales (uniq_id) values ('x')"),
        ("retail_analyst", "update mart.d_item set item_name = 'x'"),
        ("retail_analyst", "create table mart.analyst_table (x int)"),
        ("retail_analyst", "select count(*) from staging.user_order_log"),
        ("retail_analyst", "select count(*) from staging.stg_report_api__user_order_log"),
    ],
)
def test_forbidden_statements_are_refused(built, group: str, statement: str) -> None:
    settings, users = built
    with pytest.raises(errors.InsufficientPrivilege):
        _as(settings, users[group], statement)


def test_roles_are_group_roles_and_migrating_again_keeps_them(built) -> None:
    settings, _ = built
    rows = query(
        settings,
        "select rolname, rolcanlogin from pg_roles where rolname = any(%s) order by rolname",
        (list(GROUPS),),
    )
    assert rows == [(name, False) for name in sorted(GROUPS)]
    with connection(settings) as conn:
        assert migrate(conn) == []


def test_a_second_database_migrates_with_the_roles_already_there(make_database) -> None:
    settings = make_database()
    with connection(settings) as conn:
        assert "0008_roles" in migrate(conn)
    assert query(settings, "select has_schema_privilege('retail_loader', 'staging', 'usage')") == [
        (True,)
    ]
    with pytest.raises(psycopg2.Error):
        query(settings, "set role retail_analyst; select count(*) from staging.load_audit")


def test_analysts_read_every_mart_whoever_runs_dbt(logins, make_database, fixtures_dir) -> None:
    """dbt as the warehouse's owner (as a plain `run` with PG* set does: no
    retail_transformer, no DBT_PGROLE): dbt's grants make every mart readable all the same."""
    _, users = logins
    settings = make_database()
    load_fixtures(settings, fixtures_dir)
    dbt.build_all(env={**settings, "DBT_PGROLE": "", "DBT_PGUSER": ""})
    marts = query(
        settings,
        "select oid::regclass::text, pg_get_userbyid(relowner) from pg_class"
        " where relnamespace = 'mart'::regnamespace and relkind in ('r', 'v') order by 1",
    )
    assert [name for name, _ in marts] == [
        f"mart.{name}"
        for name in (
            "d_calendar",
            "d_city",
            "d_customer",
            "d_customer_history",
            "d_item",
            "f_customer_retention",
            "f_customer_retention_weeks",
            "f_sales",
        )
    ]
    assert settings["PGUSER"] in {owner for _, owner in marts}  # not retail_transformer's
    for name, _ in marts:
        (count,) = _as(settings, users["retail_analyst"], f"select count(*) from {name}")[0]
        assert count > 0, name
    assert _as(
        settings,
        users["retail_loader"],
        "select count(*) from mart.f_customer_retention_weeks",
    ) == [(5,)]
    with pytest.raises(errors.InsufficientPrivilege):
        _as(settings, users["retail_loader"], "select count(*) from mart.f_sales")

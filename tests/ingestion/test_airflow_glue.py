"""The Airflow glue: connections to settings, the run's day, failure summaries."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingestion import airflow_glue
from ingestion.airflow_glue import (
    MissingConfiguration,
    airflow_connection_env,
    api_settings_from_connection,
    failure_summary,
    http_base_url,
    libpq_settings_from_connection,
    notify_failure,
    resolve_run_dates,
)
from ingestion.config import ApiSettings

# A throwaway home in case this module is the first to import airflow (its config is
# read once per process); tests/dags/conftest.py does the same for the DAG tests.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))


def _conn(**fields):
    defaults = {
        "conn_id": "c",
        "host": None,
        "port": None,
        "schema": None,
        "login": None,
        "password": None,
        "extra_dejson": {},
    }
    return SimpleNamespace(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        ("http://api:8000", None, None, "http://api:8000"),
        ("http://api:8000/", None, 9000, "http://api:8000"),
        ("api.example", "https", None, "https://api.example"),
        ("127.0.0.1", None, 8000, "http://127.0.0.1:8000"),
    ],
)
def test_http_base_url(host, schema, port, url) -> None:
    assert http_base_url(host, schema, port) == url


def test_report_api_connection_to_settings_keeps_the_key_out_of_repr() -> None:
    conn = _conn(
        host="http://api:8000", password="s3cret", extra_dejson={"nickname": "nick", "cohort": "7"}
    )
    settings = api_settings_from_connection(conn)
    assert settings == ApiSettings("http://api:8000", "s3cret", "nick", "7")
    assert "s3cret" not in repr(settings)


def test_incomplete_report_api_connection_names_what_is_missing() -> None:
    with pytest.raises(MissingConfiguration, match="password.*extra.cohort"):
        api_settings_from_connection(_conn(host="http://api", extra_dejson={"nickname": "n"}))


def test_warehouse_connection_to_libpq() -> None:
    conn = _conn(host="db", port=5433, login="u", password="p", schema="retail")
    assert libpq_settings_from_connection(conn) == {
        "PGHOST": "db",
        "PGPORT": "5433",
        "PGUSER": "u",
        "PGPASSWORD": "p",
        "PGDATABASE": "retail",
    }


def test_connection_env_round_trips_through_airflow() -> None:
    from airflow.models.connection import Connection

    env = airflow_connection_env(
        {"PGHOST": "/tmp/sock", "PGPORT": "5432", "PGUSER": "postgres", "PGDATABASE": "w"},
        ApiSettings("http://127.0.0.1:8000", "k", "n", "c"),
    )
    warehouse = Connection(conn_id="warehouse", **json.loads(env["AIRFLOW_CONN_WAREHOUSE"]))
    assert libpq_settings_from_connection(warehouse)["PGHOST"] == "/tmp/sock"
    api = Connection(conn_id="report_api", **json.loads(env["AIRFLOW_CONN_REPORT_API"]))
    assert api_settings_from_connection(api) == ApiSettings("http://127.0.0.1:8000", "k", "n", "c")


def test_resolve_run_dates_prefers_the_param_then_the_logical_date() -> None:
    monday = datetime(2024, 10, 7, 3, tzinfo=UTC)
    later = datetime(2024, 10, 9, 12, tzinfo=UTC)
    assert resolve_run_dates(logical_date=monday, run_after=later).day == date(2024, 10, 6)
    assert resolve_run_dates(logical_date=None, run_after=later).day == date(2024, 10, 8)
    manual = resolve_run_dates(logical_date=None, run_after=later, day_param="2024-10-02")
    assert manual.day == date(2024, 10, 2) and not manual.build_week
    forced = resolve_run_dates(
        logical_date=None, run_after=later, day_param="2024-10-02", rebuild_week_param=True
    )
    assert forced.build_week and forced.as_xcom()["week_start"] == "2024-09-30"
    sunday = resolve_run_dates(logical_date=monday, run_after=monday).as_xcom()
    assert sunday["build_week"] and sunday["week_id"] == "2024-W40"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        resolve_run_dates(logical_date=monday, run_after=monday, day_param="06/10/2024")


@pytest.mark.parametrize(
    ("logical_date", "day_param", "day"),
    [
        (datetime(2020, 1, 1, 3, tzinfo=UTC), None, "2019-12-31"),
        (datetime(2024, 10, 7, 3, tzinfo=UTC), "2031-01-01", "2031-01-01"),
    ],
)
def test_a_day_outside_the_dbt_calendar_is_refused(logical_date, day_param, day) -> None:
    with pytest.raises(airflow_glue.DayOutsideCalendar, match=f"{day}.*2020-01-01..2030-12-31"):
        resolve_run_dates(logical_date=logical_date, run_after=logical_date, day_param=day_param)
    # The calendar's own ends are days like any other.
    for edge in ("2020-01-01", "2030-12-31"):
        assert resolve_run_dates(logical_date=None, run_after=logical_date, day_param=edge)


def test_warehouse_extras_become_libpq_settings_and_the_password_is_optional() -> None:
    conn = _conn(
        host="/var/run/postgresql",
        login="etl",
        schema="retail",
        extra_dejson={"sslmode": "disable", "connect_timeout": 5, "options": "-c x=1", "foo": 1},
    )
    settings = libpq_settings_from_connection(conn)
    assert settings == {
        "PGHOST": "/var/run/postgresql",
        "PGUSER": "etl",
        "PGDATABASE": "retail",
        "PGSSLMODE": "disable",
        "PGCONNECT_TIMEOUT": "5",
        "PGOPTIONS": "-c x=1",
    }
    assert airflow_glue.libpq_keywords(settings) == {
        "sslmode": "disable",
        "connect_timeout": "5",
        "options": "-c x=1",
    }


@pytest.mark.parametrize("form", ["json", "uri"])
def test_warehouse_connection_forms_round_trip_without_a_placeholder_password(form) -> None:
    from airflow.models.connection import Connection

    libpq = {
        "PGHOST": "/tmp/sock dir",
        "PGPORT": "5433",
        "PGUSER": "postgres",
        "PGDATABASE": "w",
        "PGSSLMODE": "prefer",
    }
    env = airflow_connection_env(libpq, ApiSettings("http://a", "k", "n", "c"), warehouse_form=form)
    value = env["AIRFLOW_CONN_WAREHOUSE"]
    conn = (
        Connection(conn_id="warehouse", **json.loads(value))
        if form == "json"
        else Connection(conn_id="warehouse", uri=value)
    )
    assert conn.password in (None, "")
    assert libpq_settings_from_connection(conn) == libpq
    assert not hasattr(airflow_glue, "PLACEHOLDER_PASSWORD")


def test_extras_reach_libpq_on_a_real_server(warehouse, monkeypatch) -> None:
    """The Python tasks' connection carries the extra's options (real PostgreSQL)."""
    uri = airflow_glue.warehouse_connection_uri(
        {**warehouse, "PGOPTIONS": "-c statement_timeout=4321", "PGCONNECT_TIMEOUT": "3"}
    )
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
    with airflow_glue.warehouse_connection() as conn, conn.cursor() as cur:
        cur.execute("show statement_timeout")
        assert cur.fetchone()[0] == "4321ms"
        assert conn.get_dsn_parameters()["connect_timeout"] == "3"


def _raised(error: BaseException) -> BaseException:
    """What a task body raising ``error`` raises through the fail-fast guard."""
    try:
        with airflow_glue.fail_fast_on_permanent_errors():
            raise error
    except BaseException as raised:  # noqa: BLE001 - the point is to see it
        return raised
    raise AssertionError("nothing raised")


def _operational_error() -> BaseException:
    import psycopg2

    try:  # a real refused connection: nothing listens on port 1
        psycopg2.connect(host="127.0.0.1", port=1, user="x", dbname="x", connect_timeout=3)
    except psycopg2.OperationalError as error:
        return error
    raise AssertionError("port 1 answered")


def _lock_timeout(pg_conn) -> BaseException:
    import psycopg2

    from ingestion.warehouse import connect

    pg_conn.autocommit = False
    with pg_conn.cursor() as cur:
        cur.execute("create table locked (id int)")
        pg_conn.commit()
        cur.execute("lock table locked")
        other = connect(pg_conn.get_dsn_parameters() | {})
    try:
        with other.cursor() as cur:
            cur.execute("set lock_timeout = '100ms'")
            cur.execute("select * from locked")
    except psycopg2.OperationalError as error:
        return error
    finally:
        other.close()
        pg_conn.rollback()
    raise AssertionError("the lock did not time out")


def test_permanent_errors_fail_the_task_and_transient_ones_keep_their_retries(pg_conn) -> None:
    import requests
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from ingestion.client import AuthError, ReportApiError
    from ingestion.loader import BadInputError

    permanent = [
        BadInputError("2024-10-02", Path("user_order_log_inc.csv"), 3, "quantity 'x'"),
        MissingConfiguration("no Airflow connection 'report_api'"),
        ValueError("expected a day as YYYY-MM-DD, got '06/10/2024'"),
        airflow_glue.DayOutsideCalendar("day 2019-12-31 is outside the dbt calendar"),
        AuthError("report API rejected the API key"),
        AirflowNotFoundException("The conn_id `warehouse` isn't defined"),
    ]
    for error in permanent:
        raised = _raised(error)
        assert isinstance(raised, AirflowFailException), error
        assert raised.__cause__ is error and str(error) in str(raised)

    transient = [
        _operational_error(),
        _lock_timeout(pg_conn),
        requests.ConnectionError("connection reset"),
        requests.exceptions.JSONDecodeError("garbled", "<html>", 0),  # also a ValueError
        TimeoutError("timed out"),
        ReportApiError("GET /get_report answered HTTP 503"),
        RuntimeError("something unexpected"),
    ]
    for error in transient:
        assert _raised(error) is error, error


def test_failure_summary_and_notification_off_by_default(monkeypatch, caplog) -> None:
    ti = SimpleNamespace(
        task_id="load_staging",
        try_number=4,
        log_url="http://ui/log",
        xcom_pull=lambda **kw: "2024-10-06",
    )
    context = {
        "ti": ti,
        "dag_run": SimpleNamespace(run_id="scheduled__x"),
        "exception": ValueError("bad row in user_order_log_inc.csv"),
    }
    summary = failure_summary(context)
    for part in ("load_staging", "scheduled__x", "2024-10-06", "ValueError", "user_order_log"):
        assert part in summary
    monkeypatch.delenv(airflow_glue.ENV_ALERT_WEBHOOK_CONN, raising=False)
    monkeypatch.delenv(airflow_glue.ENV_ALERT_EMAIL, raising=False)
    monkeypatch.setattr(airflow_glue, "_post_webhook", lambda *a: pytest.fail("webhook called"))
    with caplog.at_level("ERROR"):
        notify_failure(context)
    assert summary in caplog.text


def test_a_failing_webhook_never_raises(monkeypatch, caplog) -> None:
    monkeypatch.setenv(airflow_glue.ENV_ALERT_WEBHOOK_CONN, "alerts")

    def broken(*args):
        raise ConnectionError("down")

    monkeypatch.setattr(airflow_glue, "_post_webhook", broken)
    notify_failure({"exception": RuntimeError("x")})
    assert "could not be notified" in caplog.text

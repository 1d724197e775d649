"""dags/sales_mart_support: connections through the providers' hooks, fail-fast, alerts.

Connections are given as Airflow gives them in production, ``AIRFLOW_CONN_*`` variables
read by the real hooks; the warehouse checks connect to the real PostgreSQL. The
notifiers are sent for real in ``test_sales_mart_runs.py`` (a failing ``airflow dags
test`` run posting to a local HTTP receiver and mailing a local SMTP receiver).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingestion.config import ApiSettings
from ingestion.dates import DayOutsideCalendar
from ingestion.warehouse import libpq_keywords
from retail_dev.local_airflow import connection_env as airflow_connection_env
from retail_dev.local_airflow import warehouse_conn
from sales_mart_support import alerts, connections, failures
from sales_mart_support.connections import (
    MissingConfiguration,
    libpq_settings_from_connection,
    report_api_settings,
    warehouse_connection,
    warehouse_settings,
)


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


@pytest.fixture
def no_connections(monkeypatch) -> None:
    """Neither Airflow connections nor PG* / REPORT_API_* from the caller's environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("AIRFLOW_CONN_", "PG", "REPORT_API_")):
            monkeypatch.delenv(name)


def _report_api(monkeypatch, **fields) -> None:
    connection = {"conn_type": "http", "password": "k", "extra": {"nickname": "n", "cohort": "c"}}
    monkeypatch.setenv("AIRFLOW_CONN_REPORT_API", json.dumps({**connection, **fields}))


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"host": "http://api:8000"}, "http://api:8000"),
        ({"host": "http://api:8000/"}, "http://api:8000"),  # ApiSettings drops the slash
        ({"host": "api.example", "schema": "https"}, "https://api.example"),
        ({"host": "127.0.0.1", "port": 8000}, "http://127.0.0.1:8000"),
    ],
)
def test_report_api_base_url_is_the_http_hooks(no_connections, monkeypatch, fields, url) -> None:
    _report_api(monkeypatch, **fields)
    assert report_api_settings().base_url == url


def test_report_api_connection_to_settings_keeps_the_key_out_of_repr(
    no_connections, monkeypatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REPORT_API",
        json.dumps(
            {
                "conn_type": "http",
                "host": "http://api:8000",
                "password": "s3cret",
                "extra": {"nickname": "nick", "cohort": "7"},
            }
        ),
    )
    settings = report_api_settings()
    assert settings == ApiSettings("http://api:8000", "s3cret", "nick", "7")
    assert "s3cret" not in repr(settings)


def test_incomplete_report_api_connection_names_what_is_missing(
    no_connections, monkeypatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REPORT_API",
        json.dumps({"conn_type": "http", "host": "http://api", "extra": {"nickname": "n"}}),
    )
    with pytest.raises(MissingConfiguration, match="password.*extra.cohort"):
        report_api_settings()


def test_without_connections_the_environment_is_used_else_both_are_named(
    no_connections, monkeypatch
) -> None:
    with pytest.raises(MissingConfiguration, match="'report_api'.*REPORT_API_URL"):
        report_api_settings()
    with pytest.raises(MissingConfiguration, match="'warehouse'.*PGHOST"):
        warehouse_settings()
    monkeypatch.setenv("REPORT_API_URL", "http://env-api:9000")
    monkeypatch.setenv("REPORT_API_KEY", "k")
    monkeypatch.setenv("REPORT_API_NICKNAME", "n")
    monkeypatch.setenv("REPORT_API_COHORT", "c")
    assert report_api_settings() == ApiSettings("http://env-api:9000", "k", "n", "c")
    monkeypatch.setenv("PGHOST", "/var/run/postgresql")
    monkeypatch.setenv("PGDATABASE", "retail")
    assert warehouse_settings() == {"PGHOST": "/var/run/postgresql", "PGDATABASE": "retail"}


def test_warehouse_connection_to_libpq() -> None:
    conn = _conn(host="db", port=5433, login="u", password="p", schema="retail")
    assert libpq_settings_from_connection(conn) == {
        "PGHOST": "db",
        "PGPORT": "5433",
        "PGUSER": "u",
        "PGPASSWORD": "p",
        "PGDATABASE": "retail",
    }


def test_connection_env_round_trips_through_airflow(no_connections, monkeypatch) -> None:
    env = airflow_connection_env(
        {"PGHOST": "/tmp/sock", "PGPORT": "5432", "PGUSER": "postgres", "PGDATABASE": "w"},
        ApiSettings("http://127.0.0.1:8000", "k", "n", "c"),
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert warehouse_settings()["PGHOST"] == "/tmp/sock"  # through PostgresHook
    assert report_api_settings() == ApiSettings("http://127.0.0.1:8000", "k", "n", "c")


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
    assert libpq_keywords(settings) == {
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
    assert not hasattr(connections, "PLACEHOLDER_PASSWORD")


def test_extras_reach_libpq_on_a_real_server(warehouse, monkeypatch) -> None:
    """The Python tasks' connection carries the extra's options (real PostgreSQL)."""
    uri = warehouse_conn(
        {**warehouse, "PGOPTIONS": "-c statement_timeout=4321", "PGCONNECT_TIMEOUT": "3"},
        form="uri",
    )
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
    with warehouse_connection() as conn, conn.cursor() as cur:
        cur.execute("show statement_timeout")
        assert cur.fetchone()[0] == "4321ms"
        assert conn.get_dsn_parameters()["connect_timeout"] == "3"


def _raised(error: BaseException) -> BaseException:
    """What a task body raising ``error`` raises through the fail-fast guard."""

    @failures.fail_fast
    def task_body() -> None:
        raise error

    try:
        task_body()
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
        DayOutsideCalendar("day 2019-12-31 is outside the dbt calendar"),
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


def test_failure_summary_and_notification_off_by_default(caplog) -> None:
    ti = SimpleNamespace(
        task_id="load_day",
        try_number=4,
        log_url="http://ui/log",
        xcom_pull=lambda **kw: "2024-10-06",
    )
    context = {
        "ti": ti,
        "dag_run": SimpleNamespace(run_id="scheduled__x"),
        "exception": ValueError("bad row in user_order_log_inc.csv"),
    }
    summary = alerts.failure_summary(ti, context["dag_run"], context["exception"])
    for part in ("load_day", "scheduled__x", "2024-10-06", "ValueError", "user_order_log"):
        assert part in summary
    # Nothing configured: the log line only, no notifier.
    assert alerts.failure_callbacks({}) == [alerts.log_failure]
    with caplog.at_level("ERROR"):
        alerts.log_failure(context)
    assert summary in caplog.text


def test_configured_alerts_are_the_providers_notifiers() -> None:
    from airflow.providers.http.notifications.http import HttpNotifier
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    log_line, webhook, email = alerts.failure_callbacks(
        {
            alerts.ENV_ALERT_WEBHOOK_CONN: " alerts ",
            alerts.ENV_ALERT_EMAIL: "ops@example.com, , data@example.com",
        }
    )
    assert log_line is alerts.log_failure
    webhook, email = webhook.notifier, email.notifier
    assert isinstance(webhook, HttpNotifier) and webhook.http_conn_id == "alerts"
    assert webhook.method == "POST" and webhook.json == {"text": alerts.SUMMARY_TEMPLATE}
    assert isinstance(email, SmtpNotifier)
    assert email.to == ["ops@example.com", "data@example.com"]


def test_each_failure_renders_its_own_summary(monkeypatch) -> None:
    """Two failures in one process (dags test): the second is not sent the first's text.

    Only the rendering is under test, so the notifier's send records the payload instead
    of posting it; the real POST is test_sales_mart_runs.py's webhook receiver.
    """
    from airflow.providers.http.notifications.http import HttpNotifier
    from airflow.sdk import DAG

    sent: list[str] = []
    monkeypatch.setattr(HttpNotifier, "notify", lambda self, context: sent.append(self.json))
    (callback,) = alerts.failure_callbacks({alerts.ENV_ALERT_WEBHOOK_CONN: "alerts"})[1:]
    dag = DAG("d", schedule=None, user_defined_macros=alerts.ALERT_MACROS)
    for task_id in ("first", "second"):
        ti = SimpleNamespace(task_id=task_id, try_number=1, xcom_pull=lambda **kw: "2024-10-06")
        callback({"dag": dag, "ti": ti, "dag_run": None, "exception": RuntimeError(task_id)})
    assert [payload["text"].split(";")[0] for payload in sent] == [
        "sales_mart failure: task 'first'",
        "sales_mart failure: task 'second'",
    ]
    assert callback.notifier.json == {"text": alerts.SUMMARY_TEMPLATE}

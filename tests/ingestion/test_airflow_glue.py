"""The Airflow glue: connections to settings, the run's day, failure summaries."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, date, datetime
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

"""What the Airflow tasks of ``dags/sales_mart.py`` need beyond the pipeline itself.

The DAG file is wiring only; each task imports this module at run time (never at parse
time) to turn Airflow connections into the settings the rest of the package takes, to
resolve the day a run loads, and to report failures. Nothing here is needed outside
Airflow: the CLI reads the same settings from the environment (``ingestion.config``,
``ingestion.warehouse``).

Connections (SPEC sections 2-3):

- ``warehouse`` (type postgres): host (or a unix-socket directory), port, login, an
  optional password, schema = database; libpq parameters (``sslmode``, ``options``...) in
  the extra.
- ``report_api`` (type http): host = base URL (``http://api.example:8000`` or a bare
  host with the scheme in ``schema``), password = API key, extra
  ``{"nickname": ..., "cohort": ...}``.

When a connection is not defined, the standard environment variables (``PG*``,
``REPORT_API_*``) are used instead, so the same DAG runs under ``airflow dags test`` on
a laptop; a run with neither fails with a message naming both.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from ingestion.dates import (
    CALENDAR_END,
    CALENDAR_START,
    is_week_end,
    iso_week_bounds,
    iso_week_id,
    parse_day,
    report_day,
)

if TYPE_CHECKING:
    from ingestion.config import ApiSettings

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "warehouse"
REPORT_API_CONN_ID = "report_api"
# The schema Cosmos's generated profile targets; the project's generate_schema_name
# override keeps the marts in ``mart`` whatever the target schema is.
MART_SCHEMA = "mart"
# Where fetched increment files are kept between the fetch and the load task. Under the
# CeleryExecutor this must be a volume shared by the workers (docker-compose.yaml mounts
# one); the load task fetches again when the files are not there.
ENV_WORKDIR = "INGESTION_WORKDIR"
# Failure notifications, both off unless set: an HTTP connection whose host is a webhook
# URL (Slack-style JSON ``{"text": ...}`` is posted), and/or e-mail addresses (sent
# through the ``smtp_default`` connection of the SMTP provider).
ENV_ALERT_WEBHOOK_CONN = "SALES_MART_ALERT_WEBHOOK_CONN_ID"
ENV_ALERT_EMAIL = "SALES_MART_ALERT_EMAIL"


class MissingConfiguration(RuntimeError):
    """Neither the Airflow connection nor the environment configures a service."""


class DayOutsideCalendar(ValueError):
    """A run's day D is outside the dbt calendar: nothing could be built for it."""


# -- connections -------------------------------------------------------------------------


def _get_connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def http_base_url(host: str, schema: str | None = None, port: int | None = None) -> str:
    """The base URL of an HTTP connection, the way the HTTP provider's hook builds it."""
    host = host.strip().rstrip("/")
    base = host if "://" in host else f"{schema or 'http'}://{host}"
    if port and urlsplit(base).port is None:
        base = f"{base}:{port}"
    return base


def api_settings_from_connection(conn: Any) -> ApiSettings:
    """``ApiSettings`` from a ``report_api`` HTTP connection."""
    from ingestion.config import ApiSettings

    extra = conn.extra_dejson or {}
    missing = [
        name
        for name, value in (
            ("host", conn.host),
            ("password (the API key)", conn.password),
            ("extra.nickname", extra.get("nickname")),
            ("extra.cohort", extra.get("cohort")),
        )
        if not value
    ]
    if missing:
        raise MissingConfiguration(
            f"connection {conn.conn_id!r} lacks {', '.join(missing)}; see docs/runbook or README"
        )
    # A bare-host connection keeps the scheme in ``schema``; a URI connection
    # (``http://...``) has conn_type http and no scheme in schema.
    schema = conn.schema if conn.schema in ("http", "https") else None
    return ApiSettings(
        base_url=http_base_url(conn.host, schema, conn.port),
        api_key=conn.password,
        nickname=str(extra["nickname"]),
        cohort=str(extra["cohort"]),
    )


def report_api_settings(conn_id: str = REPORT_API_CONN_ID) -> ApiSettings:
    """The report API settings: the Airflow connection, else ``REPORT_API_*``."""
    from ingestion.config import ENV_URL, ApiSettings

    conn = _get_connection(conn_id)
    if conn is not None:
        return api_settings_from_connection(conn)
    settings = ApiSettings.from_env()
    if settings is None:
        raise MissingConfiguration(
            f"no Airflow connection {conn_id!r} and {ENV_URL} is not set: define the connection "
            "(host = base URL, password = key, extra nickname/cohort)"
        )
    log.info("connection %r not defined; using %s from the environment", conn_id, ENV_URL)
    return settings


# Connection extras that are libpq connection parameters, and the environment variable
# libpq reads each from. Extras reach libpq in this form: the Python tasks pass them as
# keywords (``warehouse_connection``), dbt (Cosmos) sees them in its environment. Only
# parameters with an environment variable are accepted, so both paths honour the same set.
LIBPQ_EXTRA_VARIABLES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "client_encoding": "PGCLIENTENCODING",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
}
# The connection's own fields, as libpq variables.
LIBPQ_FIELD_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


def libpq_settings_from_connection(conn: Any) -> dict[str, str]:
    """libpq settings (``PGHOST``... and ``PGSSLMODE``... from the extra) of a Postgres connection.

    No password is fine (trust or peer authentication, ``~/.pgpass``): libpq then looks
    the password up itself. A unix-socket directory is a valid host.
    """
    values = {
        "PGHOST": conn.host,
        "PGPORT": str(conn.port) if conn.port else None,
        "PGUSER": conn.login,
        "PGPASSWORD": conn.password,
        "PGDATABASE": conn.schema,
    }
    if not values["PGHOST"]:
        raise MissingConfiguration(f"connection {conn.conn_id!r} has no host")
    extra = conn.extra_dejson or {}
    unknown = sorted(key for key in extra if key not in LIBPQ_EXTRA_VARIABLES)
    if unknown:
        # Names only: an extra may hold a secret.
        log.warning(
            "connection %r: extra keys %s are not libpq parameters this project passes on "
            "(known: %s); they are ignored",
            conn.conn_id,
            ", ".join(unknown),
            ", ".join(sorted(LIBPQ_EXTRA_VARIABLES)),
        )
    for keyword, variable in LIBPQ_EXTRA_VARIABLES.items():
        value = extra.get(keyword)
        if value is not None and str(value) != "":
            values[variable] = str(value)
    return {name: value for name, value in values.items() if value}


def libpq_keywords(settings: Mapping[str, str]) -> dict[str, str]:
    """The extra libpq parameters among libpq settings, as connection keywords."""
    by_variable = {variable: keyword for keyword, variable in LIBPQ_EXTRA_VARIABLES.items()}
    return {by_variable[name]: value for name, value in settings.items() if name in by_variable}


def warehouse_settings(conn_id: str = WAREHOUSE_CONN_ID) -> dict[str, str]:
    """The warehouse as libpq settings: the Airflow connection, else ``PG*``."""
    from ingestion.warehouse import libpq_settings

    conn = _get_connection(conn_id)
    if conn is not None:
        return libpq_settings_from_connection(conn)
    settings = libpq_settings()
    if not settings.get("PGHOST"):
        raise MissingConfiguration(
            f"no Airflow connection {conn_id!r} and PGHOST is not set: define the connection"
        )
    log.info("connection %r not defined; using PG* from the environment", conn_id)
    return settings


@contextmanager
def warehouse_connection(conn_id: str = WAREHOUSE_CONN_ID) -> Iterator[Any]:
    """A psycopg2 connection to the warehouse, extras included; closed on exit."""
    from ingestion.warehouse import connect

    settings = warehouse_settings(conn_id)
    # an application_name in the extra replaces connect's default ("retail-ingestion")
    conn = connect(settings, **libpq_keywords(settings))
    try:
        yield conn
    finally:
        conn.close()


def warehouse_connection_json(libpq: Mapping[str, str]) -> str:
    """The ``warehouse`` connection (JSON form) for libpq settings.

    A password is written only when there is one; libpq parameters (``PGSSLMODE``...)
    go to the extra.
    """
    fields: dict[str, Any] = {
        "conn_type": "postgres",
        "host": libpq["PGHOST"],
        "port": int(libpq.get("PGPORT") or 5432),
        "login": libpq.get("PGUSER") or "postgres",
        "schema": libpq.get("PGDATABASE") or "postgres",
    }
    if libpq.get("PGPASSWORD"):
        fields["password"] = libpq["PGPASSWORD"]
    extra = libpq_keywords(libpq)
    if extra:
        fields["extra"] = extra
    return json.dumps(fields)


def warehouse_connection_uri(libpq: Mapping[str, str]) -> str:
    """The ``warehouse`` connection as an Airflow URI (``postgresql://user[:pw]@host:port/db``).

    A unix-socket directory host is percent-encoded, as Airflow's URI form requires;
    libpq parameters become query arguments (Airflow's extra).
    """
    user = quote(libpq.get("PGUSER") or "postgres", safe="")
    if libpq.get("PGPASSWORD"):
        user += ":" + quote(libpq["PGPASSWORD"], safe="")
    host = quote(libpq["PGHOST"], safe="")
    port = int(libpq.get("PGPORT") or 5432)
    database = quote(libpq.get("PGDATABASE") or "postgres", safe="")
    query = urlencode(libpq_keywords(libpq))
    return f"postgresql://{user}@{host}:{port}/{database}" + (f"?{query}" if query else "")


def report_api_connection_json(api: ApiSettings) -> str:
    """The ``report_api`` connection (JSON form): host = base URL, password = key."""
    return json.dumps(
        {
            "conn_type": "http",
            "host": api.base_url,
            "password": api.api_key,
            "extra": {"nickname": api.nickname, "cohort": api.cohort},
        }
    )


def airflow_connection_env(
    libpq: Mapping[str, str], api: ApiSettings, *, warehouse_form: str = "json"
) -> dict[str, str]:
    """``AIRFLOW_CONN_WAREHOUSE`` / ``AIRFLOW_CONN_REPORT_API`` for a local Airflow.

    The JSON form keeps a unix-socket directory as the warehouse host and the report
    API's base URL as the HTTP host, as the connections are documented, without URL
    encoding; ``warehouse_form="uri"`` writes the warehouse as a URI, the other form
    users give. The values hold secrets: pass them in the environment, never print them.
    """
    if warehouse_form not in ("json", "uri"):
        raise ValueError(f"warehouse_form must be 'json' or 'uri', not {warehouse_form!r}")
    warehouse = (
        warehouse_connection_uri(libpq)
        if warehouse_form == "uri"
        else warehouse_connection_json(libpq)
    )
    return {
        "AIRFLOW_CONN_WAREHOUSE": warehouse,
        "AIRFLOW_CONN_REPORT_API": report_api_connection_json(api),
    }


# -- the run's day and week ----------------------------------------------------------------


@dataclass(frozen=True)
class RunDates:
    """The day a run loads and, when it closes a week, the week it builds."""

    day: date
    build_week: bool
    reason: str

    @property
    def week_start(self) -> date:
        return iso_week_bounds(self.day)[0]

    @property
    def week_end(self) -> date:
        return iso_week_bounds(self.day)[1]

    def as_xcom(self) -> dict[str, Any]:
        """JSON-able values, pushed as separate XCom keys for the dbt task templates."""
        return {
            "day": self.day.isoformat(),
            "week_start": self.week_start.isoformat(),
            "week_end": self.week_end.isoformat(),
            "week_id": iso_week_id(self.day),
            "build_week": self.build_week,
            "reason": self.reason,
        }


def resolve_run_dates(
    *,
    logical_date: datetime | None,
    run_after: datetime | None,
    day_param: str | None = None,
    rebuild_week_param: bool = False,
) -> RunDates:
    """Day D of a run, from its own dates, never from "now".

    - ``day_param`` (a manual run's ``day``) wins: that day is reloaded and rebuilt.
    - Otherwise D is the UTC day before the run's trigger time: the logical date when
      the run has one (scheduled runs, backfills, ``airflow dags test <date>``), else
      ``run_after`` (a manual run without a logical date).

    The week ending on D is built when D is a Sunday, or for D's week on request.
    A day outside the dbt calendar raises :class:`DayOutsideCalendar`.
    """
    if day_param:
        day = parse_day(day_param)
        source = f"the run's 'day' param {day.isoformat()}"
    else:
        trigger = logical_date or run_after
        if trigger is None:
            raise ValueError("the run has neither a logical date nor run_after")
        day = report_day(trigger)
        source = f"the day before the trigger time {trigger.isoformat()}"
    if not CALENDAR_START <= day <= CALENDAR_END:
        raise DayOutsideCalendar(
            f"day {day.isoformat()} ({source}) is outside the dbt calendar "
            f"{CALENDAR_START.isoformat()}..{CALENDAR_END.isoformat()} (vars calendar_start / "
            "calendar_end in dbt_project/dbt_project.yml): there is nothing this run could "
            "load or build; pass a day within the calendar"
        )
    if is_week_end(day):
        build_week, why = True, f"{day} is a Sunday: week {iso_week_id(day)} is complete"
    elif rebuild_week_param:
        build_week, why = True, f"'rebuild_week' requested for week {iso_week_id(day)}"
    else:
        build_week, why = False, f"{day} is not a Sunday: no weekly retention on this run"
    return RunDates(day=day, build_week=build_week, reason=f"D = {day} ({source}); {why}")


def increment_workdir(dag_id: str, day: str, base: str | None = None) -> Path:
    """Where a run keeps the files of day ``day``: a rerun reuses (overwrites) it."""
    root = Path(base or os.environ.get(ENV_WORKDIR) or Path.cwd() / ".local" / "increments")
    return root / dag_id / day


def files_present(fetched: Mapping[str, Any]) -> bool:
    """True when every file a fetch recorded is still on this worker's disk."""
    paths = [path for path in (fetched.get("files") or {}).values() if path]
    return all(Path(path).is_file() for path in paths)


def summary_to_xcom(summary: Any) -> dict[str, Any]:
    """A load summary as JSON-able values (dataclass fields, or its text)."""
    import dataclasses

    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        return json.loads(json.dumps(dataclasses.asdict(summary), default=str))
    if isinstance(summary, Mapping):
        return json.loads(json.dumps(dict(summary), default=str))
    return {"summary": str(summary)}


# -- failing fast ----------------------------------------------------------------------------


def _permanent_error_types() -> tuple[type[BaseException], ...]:
    """Errors a retry cannot fix: bad input, bad configuration, a missing connection."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from ingestion.client import AuthError
    from ingestion.loader import BadInputError

    return (
        BadInputError,  # a file that cannot be loaded as it is
        MissingConfiguration,
        AuthError,  # the report API refused the key (401/403)
        AirflowNotFoundException,  # a connection that is not defined
        ValueError,  # dates and settings that do not parse (BadInputError is one too)
    )


def _transient_error_types() -> tuple[type[BaseException], ...]:
    """Faults that may pass: network, timeouts, server errors, lock timeouts."""
    import psycopg2
    import requests

    from ingestion.client import DownloadError, ReportTimeout

    return (
        OSError,  # sockets, connection refused/reset, TimeoutError
        requests.RequestException,  # also a ValueError for a few (JSON decoding)
        # Server gone, connection refused, lock and statement timeouts, deadlocks and
        # serialization failures: all subclasses of OperationalError.
        psycopg2.OperationalError,
        DownloadError,
        ReportTimeout,
    )


def is_permanent_error(error: BaseException) -> bool:
    """True for an error no retry can fix; transient faults always keep their retries."""
    if isinstance(error, _transient_error_types()):
        return False
    # Anything else unknown (e.g. the client's ReportApiError for HTTP 5xx) keeps retrying.
    return isinstance(error, _permanent_error_types())


@contextmanager
def fail_fast_on_permanent_errors() -> Iterator[None]:
    """Turn errors no retry can fix into ``AirflowFailException`` (no retries).

    Every Python task of the DAG runs inside this. Transient faults (network errors,
    HTTP 5xx, lock timeouts, ``psycopg2.OperationalError``) pass unchanged and are
    retried with backoff; bad input, bad configuration and date errors fail the task on
    its first try, with the original error chained for the log.
    """
    try:
        yield
    except Exception as error:
        if not is_permanent_error(error):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            f"{type(error).__name__}: {error} (not retried: a retry cannot fix this)"
        ) from error


# -- failure reporting ---------------------------------------------------------------------


def failure_summary(context: Mapping[str, Any]) -> str:
    """One paragraph naming the DAG, the run, the day, the task and the reason."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    task_id = getattr(ti, "task_id", "?")
    day = None
    if ti is not None:
        try:
            day = ti.xcom_pull(task_ids="resolve_run_dates", key="day")
        except Exception:  # the summary must never fail because XCom is unavailable
            day = None
    exception = context.get("exception")
    reason = f"{type(exception).__name__}: {exception}" if exception else "unknown reason"
    parts = [
        f"sales_mart failure: task {task_id!r}",
        f"run {getattr(dag_run, 'run_id', '?')!r}",
        f"day {day or '?'}",
        f"try {getattr(ti, 'try_number', '?')}",
        f"reason {reason}",
    ]
    log_url = getattr(ti, "log_url", None)
    if log_url:
        parts.append(f"log {log_url}")
    return "; ".join(parts)


def notify_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: log the summary; post/e-mail it when configured.

    A notification that fails is logged, never raised: the task has failed already and
    the callback must not hide why.
    """
    summary = failure_summary(context)
    log.error(summary)
    webhook_conn_id = os.environ.get(ENV_ALERT_WEBHOOK_CONN, "").strip()
    if webhook_conn_id:
        try:
            _post_webhook(webhook_conn_id, summary)
        except Exception:
            log.exception("failure webhook %r could not be notified", webhook_conn_id)
    recipients = [a.strip() for a in os.environ.get(ENV_ALERT_EMAIL, "").split(",") if a.strip()]
    if recipients:
        try:
            _send_email(recipients, summary)
        except Exception:
            log.exception("failure e-mail to %s could not be sent", recipients)


def _post_webhook(conn_id: str, summary: str) -> None:
    import requests

    conn = _get_connection(conn_id)
    if conn is None or not conn.host:
        raise MissingConfiguration(f"webhook connection {conn_id!r} is not defined")
    schema = conn.schema if conn.schema in ("http", "https") else None
    url = http_base_url(conn.host, schema, conn.port)
    headers = {"Content-Type": "application/json"}
    if conn.password:  # a bearer token, when the endpoint wants one
        headers["Authorization"] = f"Bearer {conn.password}"
    response = requests.post(url, data=json.dumps({"text": summary}), headers=headers, timeout=10)
    response.raise_for_status()


def _send_email(recipients: list[str], summary: str) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook() as smtp:
        smtp.send_email_smtp(
            to=recipients, subject="sales_mart failure", html_content=f"<p>{summary}</p>"
        )

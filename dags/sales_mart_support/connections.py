"""The ``warehouse`` (Postgres: host or unix-socket folder, optional password, libpq
parameters in the extra) and ``report_api`` (HTTP: host = base URL, password = key, extra
nickname/cohort) connections, read inside tasks through ``PostgresHook`` / ``HttpHook``;
``PG*`` / ``REPORT_API_*`` when a connection is not defined, an error naming both when
neither is. Cosmos's dbt profile is built from the same warehouse connection."""

from __future__ import annotations

import getpass
import logging
from contextlib import AbstractContextManager as ContextManager
from typing import TYPE_CHECKING, Any

from cosmos.profiles import PostgresUserPasswordProfileMapping

from ingestion.warehouse import LIBPQ_EXTRA_VARIABLES

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection

    from ingestion.config import ApiSettings

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "warehouse"
REPORT_API_CONN_ID = "report_api"


class MissingConfiguration(RuntimeError):
    """Neither the Airflow connection nor the environment configures a service."""


# -- the warehouse ---------------------------------------------------------------------


def libpq_settings_from_connection(conn: Any) -> dict[str, str]:
    """libpq settings (``PGHOST``... and ``PGSSLMODE``... from the extra) of a Postgres connection.

    No password is fine (trust or peer authentication, ``~/.pgpass``): libpq then looks
    the password up itself. A unix-socket directory is a valid host. Extra keys that are
    not libpq parameters (``LIBPQ_EXTRA_VARIABLES``) are logged by name and ignored.
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


def warehouse_settings(conn_id: str = WAREHOUSE_CONN_ID) -> dict[str, str]:
    """The warehouse as libpq settings: the Airflow connection, else ``PG*``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from ingestion.warehouse import libpq_settings

    try:
        conn = PostgresHook(postgres_conn_id=conn_id).connection
    except AirflowNotFoundException:
        settings = libpq_settings()
        if not settings.get("PGHOST"):
            raise MissingConfiguration(
                f"no Airflow connection {conn_id!r} and PGHOST is not set: define the connection"
            ) from None
        log.info("connection %r not defined; using PG* from the environment", conn_id)
        return settings
    return libpq_settings_from_connection(conn)


def warehouse_connection(conn_id: str = WAREHOUSE_CONN_ID) -> ContextManager[PgConnection]:
    """A psycopg2 connection to the warehouse, extras included; closed on exit.

    Not ``PostgresHook.get_conn()``: with psycopg 3 installed (an Airflow dependency) the
    hook hands out psycopg 3 connections, and the loader streams ``COPY`` through
    psycopg2. The hook's connection lookup is used, the libpq settings are the ones
    Cosmos's dbt gets, so both paths connect the same way (an ``application_name`` in the
    extra replaces the default, ``retail-ingestion``).
    """
    from ingestion.warehouse import connection

    return connection(warehouse_settings(conn_id))


class WarehouseProfileMapping(PostgresUserPasswordProfileMapping):
    """Cosmos's Postgres mapping with the password optional and libpq extras passed on.

    ``PostgresUserPasswordProfileMapping`` refuses a connection without a password, so
    trust, peer (a unix-socket directory as host) and ``~/.pgpass`` set-ups failed every
    dbt task. Here the profile's password is ``env_var(..., '')``: an empty password is
    "none" to libpq, which then uses the password file or needs none. The secret stays an
    environment variable of the dbt process, never a profile value. Extras that are libpq
    parameters (``sslmode``, ``connect_timeout``, ``options``...) reach dbt's connection:
    ``connect_timeout`` in the profile (dbt always passes its own), the rest as ``PG*``
    variables, which libpq reads for every parameter dbt does not set.
    """

    required_fields = ["host", "user", "dbname"]

    @property
    def conn(self) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

        try:
            return super().conn
        except AirflowNotFoundException as error:  # no retry defines a connection
            raise AirflowFailException(
                f"connection {self.conn_id!r} is not defined: dbt cannot reach the warehouse"
            ) from error

    @property
    def profile(self) -> dict[str, Any]:
        profile = super().profile
        if not profile.get("user"):  # libpq's default, as for peer authentication
            profile["user"] = getpass.getuser()
        profile["password"] = "{{ env_var('" + self.get_env_var_name("password") + "', '') }}"
        timeout = self.conn.extra_dejson.get("connect_timeout")
        if timeout not in (None, ""):
            profile["connect_timeout"] = int(timeout)
        return profile

    @property
    def env_vars(self) -> dict[str, str]:
        settings = libpq_settings_from_connection(self.conn)
        env = {name: settings[name] for name in LIBPQ_EXTRA_VARIABLES.values() if name in settings}
        password = self.get_dbt_value("password")
        if password:
            env[self.get_env_var_name("password")] = str(password)
        if self.disable_event_tracking:
            env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")
        return env


# -- the report API ----------------------------------------------------------------------


def api_settings_from_connection(conn: Any, base_url: str) -> ApiSettings:
    """``ApiSettings`` from a ``report_api`` HTTP connection and its base URL."""
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
            f"connection {conn.conn_id!r} lacks {', '.join(missing)}; see the README (Airflow)"
        )
    return ApiSettings(
        base_url=base_url,
        api_key=conn.password,
        nickname=str(extra["nickname"]),
        cohort=str(extra["cohort"]),
    )


def report_api_settings(conn_id: str = REPORT_API_CONN_ID) -> ApiSettings:
    """The report API settings: the Airflow connection, else ``REPORT_API_*``.

    ``HttpHook`` builds the base URL as for any HTTP connection: the host when it holds
    a scheme (``http://api:8000``), else ``schema`` (default ``http``) + host, then the
    port field when set.
    """
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from ingestion.config import ENV_URL, ApiSettings

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    try:
        conn = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        settings = ApiSettings.from_env()
        if settings is None:
            raise MissingConfiguration(
                f"no Airflow connection {conn_id!r} and {ENV_URL} is not set: define the "
                "connection (host = base URL, password = key, extra nickname/cohort)"
            ) from None
        log.info("connection %r not defined; using %s from the environment", conn_id, ENV_URL)
        return settings
    if not conn.host:
        return api_settings_from_connection(conn, "")  # raises, naming what is missing
    return api_settings_from_connection(conn, hook.url_from_endpoint(None))

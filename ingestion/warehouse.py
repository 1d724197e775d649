"""How to connect to the warehouse: the standard libpq variables (``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD``, ``PGDATABASE`` and the extra ``PG*`` parameters), which
dbt's ``profiles.yml`` reads too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import connection as Connection

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


def connect(settings: Mapping[str, str] | None = None, **overrides: str) -> Connection:
    """Open a psycopg2 connection from libpq settings (default: the environment), the
    extra parameters among them (``PGSSLMODE``...) included."""
    settings = dict(libpq_settings() if settings is None else settings)
    params = {
        "host": settings.get("PGHOST"),
        "port": settings.get("PGPORT"),
        "user": settings.get("PGUSER"),
        "password": settings.get("PGPASSWORD"),
        "dbname": settings.get("PGDATABASE"),
        **libpq_keywords(settings),
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

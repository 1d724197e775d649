"""The one lock around every dbt invocation that writes the marts, and the lock wait.

A terminal ``python -m ingestion run`` (``ingestion.dbt``) and each Cosmos dbt task (the
DAG's ``pre_execute``) hold a PostgreSQL session advisory lock, :data:`MARTS_BUILD_LOCK_KEY`,
on a connection of their own, so the two sides never build the marts at once. Loads lock
the staging tables they write instead (``ingestion.loader``). A side that waits longer
than ``PIPELINE_LOCK_TIMEOUT_S`` (default 600 s) fails with :class:`LockTimeout` naming
what it waited for: ``another dbt build of the marts ... is running; waited 600 s``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg2
from psycopg2 import errors
from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)

TIMEOUT_VARIABLE = "PIPELINE_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
# Beside migrate.MIGRATION_LOCK_KEY (7_301_554_210_001), in the one-bigint key space.
MARTS_BUILD_LOCK_KEY = 7_301_554_210_002


class LockTimeout(psycopg2.OperationalError):
    """Another load or build held the lock for longer than the timeout: an
    ``OperationalError`` like PostgreSQL's own lock timeouts, so the DAG retries it."""


def lock_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """The configured wait, in seconds (``PIPELINE_LOCK_TIMEOUT_S``)."""
    text = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={text!r} must be positive")
    return value


def acquire(settings: Mapping[str, str], key: int, what: str) -> Connection:
    """Take a session-level advisory lock on a connection of its own and return it.

    Waits up to :func:`lock_timeout_s`, then raises :class:`LockTimeout`. Closing the
    connection releases the lock, as PostgreSQL does when the process holding it dies.
    """
    from ingestion.warehouse import connect

    timeout = lock_timeout_s()
    conn = connect(settings, application_name="retail-lock")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("set lock_timeout = %s", (f"{max(1, round(timeout * 1000))}ms",))
            cur.execute("select pg_advisory_lock(%s)", (key,))
    except errors.LockNotAvailable as error:
        conn.close()
        raise LockTimeout(f"another {what} is running; waited {timeout:g} s") from error
    except BaseException:
        conn.close()
        raise
    log.debug("holding the lock of %s", what)
    return conn


@contextmanager
def session_lock(settings: Mapping[str, str], key: int, what: str) -> Iterator[None]:
    """Hold a session-level advisory lock (:func:`acquire`) for the block."""
    conn = acquire(settings, key, what)
    try:
        yield
    finally:
        conn.close()

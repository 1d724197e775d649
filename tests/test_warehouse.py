"""The warehouse plumbing on both paths: the configured server and the embedded wheel."""

from __future__ import annotations

from pathlib import Path

from ingestion.warehouse import connect
from retail_dev.embedded import start_embedded, stop_embedded, use_embedded_default


def _one(settings, query: str):
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_fresh_database_is_empty(warehouse):
    tables = _one(
        warehouse,
        "select count(*) from information_schema.tables where table_schema not in "
        "('pg_catalog', 'information_schema')",
    )
    assert tables == 0


def test_configured_server_is_used_as_is(pg_server, tmp_path: Path):
    environ = dict(pg_server)
    assert not use_embedded_default(environ, tmp_path / "pgdata")  # not the embedded one
    assert environ == pg_server
    assert not (tmp_path / "pgdata").exists()


def test_embedded_server_starts_and_is_reused(tmp_path: Path):
    pgdata = tmp_path / "pgdata"
    first = start_embedded(pgdata, keep_running=False)
    assert _one(first, "select current_setting('server_version_num')::int") >= 150000
    conn = connect(first)
    with conn, conn.cursor() as cur:
        cur.execute("create table kept (x int); insert into kept values (7)")
    conn.close()
    # A second start finds the running server and the data it holds.
    second = start_embedded(pgdata, keep_running=False)
    assert second == first
    assert _one(second, "select x from kept") == 7
    assert (pgdata / "PG_VERSION").exists()


def test_embedded_default_starts_without_pghost(tmp_path: Path):
    environ: dict[str, str] = {}
    assert use_embedded_default(environ, tmp_path / "pgdata")
    try:
        assert environ["PGHOST"] == str(tmp_path / "pgdata")
        assert _one(environ, "select current_database()") == "retail"
        # PGHOST exported for it (`eval $(python -m retail_dev env)`) is still the default
        assert use_embedded_default({**environ}, tmp_path / "pgdata")
        assert not use_embedded_default({**environ, "PGHOST": "127.0.0.1"}, tmp_path / "pgdata")
        # A user of the server that was killed stays registered with the wheel; stop
        # must not depend on every user having said goodbye.
        (tmp_path / "pgdata" / ".handle_pids.json").write_text("[2147483000]")
    finally:
        assert stop_embedded(tmp_path / "pgdata")
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()
    assert not stop_embedded(tmp_path / "pgdata")


def test_the_local_airflow_is_sized_to_the_machine(tmp_path: Path) -> None:
    import os

    from retail_dev.local_airflow import airflow_env

    env = airflow_env({"PATH": "/usr/bin"})
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(os.cpu_count())
    assert env["AIRFLOW__API__WORKERS"] == "1"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW_HOME"].endswith(".local/airflow")

"""The ``warehouse`` connection as users have it, on a real server that checks passwords.

The machine's PostgreSQL trusts every client, so a password (or its absence) proves
nothing there. This module starts a throwaway cluster (the machine's PostgreSQL 15
binaries, run as the ``postgres`` OS user) with ``scram-sha-256`` over TCP and ``peer``
authentication on its unix socket, then connects through both paths the DAG uses:

- the Python tasks: ``sales_mart_support.connections.warehouse_connection()`` (the
  connection looked up by ``PostgresHook``, opened with psycopg2);
- the Cosmos dbt tasks: the DAG's profile mapping renders the profile and its
  environment exactly as a Cosmos task does (``ProfileConfig.ensure_profile``) and real
  ``dbt show`` runs a query through it.

Each asserts who it connected as and that the extra's ``options`` reached libpq.
Skipped when not root or without the PostgreSQL server binaries (CI images have both).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from ingestion import project

REPO_ROOT = project.REPO_ROOT
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret pw@x"  # a space and an @: URI quoting is part of the test
QUERY = "select current_user as who, current_setting('statement_timeout') as timeout"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def auth_server() -> Iterator[dict[str, object]]:
    if os.geteuid() != 0 or not (PG_BIN / "initdb").is_file() or not shutil.which("runuser"):
        pytest.skip("needs root (to run the server as 'postgres') and PostgreSQL 15 binaries")
    postgres = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="pg-auth-"))
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    data, sockets, pwfile = root / "data", root / "sock", root / "pw"
    sockets.mkdir()
    os.chown(sockets, postgres.pw_uid, postgres.pw_gid)
    pwfile.write_text(PASSWORD + "\n")
    os.chown(pwfile, postgres.pw_uid, postgres.pw_gid)
    port = _free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=root,
        )

    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
        "--auth-local=peer", "--auth-host=scram-sha-256",
    )  # fmt: skip
    as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "start",
        "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
    )  # fmt: skip
    try:
        import psycopg2

        admin = psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", password=PASSWORD, dbname="postgres"
        )
        admin.autocommit = True
        with admin.cursor() as cur:
            # The OS user running the tests, for peer authentication on the socket.
            cur.execute(f'create role "{pwd.getpwuid(os.geteuid()).pw_name}" login')
        admin.close()
        yield {"port": port, "sockets": str(sockets), "root": root}
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _uris(server: dict[str, object]) -> dict[str, str]:
    port, sockets = server["port"], quote(str(server["sockets"]), safe="")
    options = "options=" + quote("-c statement_timeout=4321")
    return {
        "password": f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/postgres"
        f"?{options}&connect_timeout=5&sslmode=disable",
        "pgpass": f"postgresql://postgres@127.0.0.1:{port}/postgres?{options}",
        "peer": f"postgresql://{sockets}:{port}/postgres?{options}",  # no login, no password
    }


@pytest.fixture
def home_with_pgpass(auth_server, tmp_path: Path) -> Path:
    """A HOME whose ~/.pgpass holds the password (libpq reads it; 0600 as it requires)."""
    pgpass = tmp_path / ".pgpass"
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(f"127.0.0.1:{auth_server['port']}:*:postgres:{escaped}\n")
    pgpass.chmod(0o600)
    return tmp_path


def _mapping_class():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    task = bag.dags["sales_mart"].get_task("build_sales_mart.f_sales_model_build")
    return type(task.profile_config.profile_mapping)


@pytest.fixture(scope="module")
def mapping_class(dbt_manifest):
    return _mapping_class()


@pytest.mark.parametrize("mode", ["password", "pgpass", "peer"])
def test_python_tasks_connect(auth_server, home_with_pgpass, mode, monkeypatch) -> None:
    from sales_mart_support.connections import warehouse_connection

    for name in [name for name in os.environ if name.startswith("PG")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home_with_pgpass))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", _uris(auth_server)[mode])
    with warehouse_connection() as conn, conn.cursor() as cur:
        cur.execute(QUERY)
        who, timeout = cur.fetchone()
    expected = "postgres" if mode != "peer" else pwd.getpwuid(os.geteuid()).pw_name
    assert (who, timeout) == (expected, "4321ms")


@pytest.mark.parametrize("mode", ["password", "pgpass", "peer"])
def test_cosmos_dbt_tasks_connect(
    auth_server, home_with_pgpass, mapping_class, mode, monkeypatch, tmp_path: Path
) -> None:
    from cosmos.config import ProfileConfig

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", _uris(auth_server)[mode])
    profile_config = ProfileConfig(
        profile_name="retail",
        target_name="airflow",
        profile_mapping=mapping_class(conn_id="warehouse", profile_args={"schema": "mart"}),
    )
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PG", "AIRFLOW_CONN", "COSMOS_CONN"))
    }
    with profile_config.ensure_profile() as (profile_path, env_vars):
        profile_text = Path(profile_path).read_text(encoding="utf-8")
        assert PASSWORD not in profile_text  # the secret is only in the process environment
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("dbt")), "show", "--inline", QUERY,
                "--profiles-dir", str(Path(profile_path).parent), "--profile", "retail",
                "--target", "airflow", "--target-path", str(tmp_path / "target"),
                "--log-path", str(tmp_path / "logs"), "--output", "json", "--quiet",
            ],
            cwd=REPO_ROOT / "dbt_project",
            env={**base, **env_vars, "HOME": str(home_with_pgpass), "DO_NOT_TRACK": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert PASSWORD not in output
    expected = "postgres" if mode != "peer" else pwd.getpwuid(os.geteuid()).pw_name
    shown = json.loads(output[output.index("{") : output.rindex("}") + 1])["show"]
    assert shown == [{"who": expected, "timeout": "4321ms"}]

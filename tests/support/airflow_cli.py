"""Airflow as its CLI runs it in the end-to-end tests: a subprocess with its own
AIRFLOW_HOME (SQLite metadata), ``dags/`` as the DAG folder, the virtualenv's bin first
on PATH (Cosmos looks for ``dbt`` there) and the connections in ``AIRFLOW_CONN_*``."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ingestion import project

REPO_ROOT = project.REPO_ROOT
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 900
# A test process's own dbt folders (tests/conftest.py): never passed to another dbt.
TEST_DBT_FOLDERS = ("DBT_TARGET_PATH", "DBT_LOG_PATH")
# A metadata database `airflow db migrate` made once per test session (see migrate_db).
_MIGRATED_DB: Path | None = None


def run_command(
    cmd: list[str], env: Mapping[str, str], timeout: float = RUN_TIMEOUT_S, check: bool = True
) -> str:
    """Run ``cmd`` from the repository root; its output, or (``check``) the test fails
    showing it when ``cmd`` fails."""
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{output[-6000:]}")
    return output


def _clean_env() -> dict[str, str]:
    """This process's environment without what names Airflow settings, the warehouse, the
    report API or the report folder; the virtualenv's bin first on PATH."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PG", "REPORT_API_", "RETENTION_REPORT"))
    }
    return {
        **base,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DO_NOT_TRACK": "1",
    }


def cli_env(warehouse: Mapping[str, str], api: Any) -> dict[str, str]:
    """The environment of ``python -m ingestion`` against ``warehouse`` (libpq settings)
    and a running ``local_report_api.LocalReportApi``."""
    from retail_dev.cli import local_api_settings

    return {**_clean_env(), **warehouse, **local_api_settings(api).env()}


def airflow_env(airflow_home: Path, connections: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of an ``airflow`` command: only the settings and connections given.

    Cosmos's cache (partial parse, dbt ls) lives in the home: test processes running
    Airflow at once (pytest-xdist) never share it. A test process's own dbt folders
    (``DBT_TARGET_PATH`` / ``DBT_LOG_PATH``, tests/conftest.py) are not passed on: Cosmos
    runs dbt in a copy of the project and reads the results from there.
    """
    base = {k: v for k, v in _clean_env().items() if k not in TEST_DBT_FOLDERS}
    return {
        **base,
        "AIRFLOW__COSMOS__CACHE_DIR": str(airflow_home / "cosmos_cache"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        **connections,
        **extra,
    }


def socket_warehouse(settings: Mapping[str, str]) -> dict[str, str]:
    """``settings`` reaching the same server through its unix socket (as the embedded
    default does): the server's own socket folder, or the system one (/var/run/postgresql)."""
    folder = settings["PGHOST"] if settings["PGHOST"].startswith("/") else "/var/run/postgresql"
    socket = Path(folder) / f".s.PGSQL.{settings.get('PGPORT') or 5432}"
    assert socket.exists(), f"no PostgreSQL socket at {socket}"
    return {**settings, "PGHOST": folder}


def migrate_db(env: Mapping[str, str]) -> None:
    """``airflow db migrate`` for ``env``'s AIRFLOW_HOME (SQLite ``airflow.db``).

    The first call of the session migrates a template database; later calls copy it
    (milliseconds instead of about 8 s of Airflow start-up and migrations per home).
    """
    global _MIGRATED_DB
    if _MIGRATED_DB is None:
        template_home = Path(tempfile.mkdtemp(prefix="airflow_template_"))
        atexit.register(shutil.rmtree, template_home, ignore_errors=True)
        run_command(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            {**env, "AIRFLOW_HOME": str(template_home)},
        )
        _MIGRATED_DB = template_home / "airflow.db"
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MIGRATED_DB, home / "airflow.db")

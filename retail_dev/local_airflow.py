"""``airflow`` and ``docs``: a local Airflow (``airflow standalone``, SQLite metadata in
``.local/airflow``) with this project's DAGs and connections, and the dbt docs site.

The connections come from ``PG*`` / ``REPORT_API_*`` (``AIRFLOW_CONN_*`` when already
set); on the embedded warehouse with no report API configured, the local report API is
started on ``--api-port``. Everything started runs in its own process group and is
stopped, children included, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psutil

from ingestion.config import ApiSettings
from ingestion.project import DBT_PROJECT_DIR, REPO_ROOT
from ingestion.warehouse import libpq_keywords, libpq_settings
from retail_dev.embedded import use_embedded_default

AIRFLOW_HOME = REPO_ROOT / ".local" / "airflow"


def warehouse_conn(libpq: Mapping[str, str], *, form: str = "json") -> str:
    """The ``warehouse`` connection for ``AIRFLOW_CONN_WAREHOUSE``, as JSON or as a URI
    (a unix-socket folder host percent-encoded); a password only when there is one,
    libpq parameters (``PGSSLMODE``...) in the extra."""
    login, password = libpq.get("PGUSER") or "postgres", libpq.get("PGPASSWORD")
    port, database = int(libpq.get("PGPORT") or 5432), libpq.get("PGDATABASE") or "postgres"
    extra = libpq_keywords(libpq)
    if form == "uri":
        user = quote(login, safe="") + (":" + quote(password, safe="") if password else "")
        query = f"?{urlencode(extra)}" if extra else ""
        host = quote(libpq["PGHOST"], safe="")
        return f"postgresql://{user}@{host}:{port}/{quote(database, safe='')}{query}"
    fields: dict[str, Any] = {"conn_type": "postgres", "host": libpq["PGHOST"], "port": port,
                              "login": login, "schema": database}  # fmt: skip
    if password:
        fields["password"] = password
    if extra:
        fields["extra"] = extra
    return json.dumps(fields)


def report_api_conn(api: ApiSettings) -> str:
    """The ``report_api`` connection (JSON): host = base URL, password = key."""
    extra = {"nickname": api.nickname, "cohort": api.cohort}
    return json.dumps({"conn_type": "http", "host": api.base_url, "password": api.api_key,
                       "extra": extra})  # fmt: skip


def connection_env(
    libpq: Mapping[str, str], api: ApiSettings, *, warehouse_form: str = "json"
) -> dict[str, str]:
    """``AIRFLOW_CONN_WAREHOUSE`` / ``AIRFLOW_CONN_REPORT_API``: secrets, never print them."""
    return {
        "AIRFLOW_CONN_WAREHOUSE": warehouse_conn(libpq, form=warehouse_form),
        "AIRFLOW_CONN_REPORT_API": report_api_conn(api),
    }


def airflow_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a local Airflow: this project's DAGs, no examples, no telemetry,
    the dbt docs in the UI, and as many task slots as the machine has cores."""
    bin_dir = str(Path(sys.executable).parent)
    target = DBT_PROJECT_DIR / (environ.get("DBT_TARGET_PATH") or "target")
    docs = {"retail": {"dir": str(target), "index": "index.html", "name": "dbt docs (retail)"}}
    return {
        **environ,
        "PATH": f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}",
        "AIRFLOW_HOME": environ.get("AIRFLOW_HOME") or str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(os.cpu_count() or 2),
        # this machine only: the UI's generated password is for a local stack, as Airflow's
        # simple auth manager knows (it warns of a production-like shape otherwise)
        "AIRFLOW__API__HOST": environ.get("AIRFLOW__API__HOST") or "127.0.0.1",
        "AIRFLOW__API__PORT": environ.get("AIRFLOW__API__PORT") or "8080",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": json.dumps(docs),
        "DO_NOT_TRACK": "1",
    }


def stop_tree(process: subprocess.Popen[bytes] | None, grace_s: float = 5.0) -> None:
    """SIGTERM a process and every descendant, SIGKILL what is left after ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for member in alive:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def run_airflow(api_port: int) -> int:
    """``airflow standalone`` until Ctrl-C or SIGTERM; its exit code."""
    env = airflow_env(os.environ)
    local_api: subprocess.Popen[bytes] | None = None
    embedded = use_embedded_default(env)
    if not env.get("AIRFLOW_CONN_REPORT_API"):
        api = ApiSettings.from_env(env)
        if api is None and embedded:
            local_api = subprocess.Popen(  # noqa: S603 - our own module
                [sys.executable, "-m", "retail_dev", "serve", "--port", str(api_port)],
                start_new_session=True,
            )
            from local_report_api import LocalApiConfig

            key = LocalApiConfig()
            api = ApiSettings(f"http://127.0.0.1:{api_port}", key.api_key, key.nickname,
                              key.cohort)  # fmt: skip
        env["AIRFLOW_CONN_REPORT_API"] = report_api_conn(api or ApiSettings.require_env())
    env.setdefault("AIRFLOW_CONN_WAREHOUSE", warehouse_conn(libpq_settings(env)))
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    print(
        f"Airflow UI: http://localhost:{env['AIRFLOW__API__PORT']} (user admin, password in"
        f" {home / 'simple_auth_manager_passwords.json.generated'}). The DAGs start paused:"
        " unpause sales_mart and retention_report, then trigger sales_mart with"
        ' {"day": "2024-10-06"}. Airflow CLI: export AIRFLOW_HOME='
        + str(home)
        + "."
        + (f" Local report API on port {api_port}." if local_api else "")
        + " Ctrl-C stops everything.",
        flush=True,
    )
    airflow = subprocess.Popen(["airflow", "standalone"], env=env, start_new_session=True)
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even if started ignoring one
        signal.signal(stop, signal.default_int_handler)
    try:
        return airflow.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_tree(airflow)
        stop_tree(local_api)


def run_docs(port: int, generate_only: bool) -> int:
    """``dbt docs generate``, then ``dbt docs serve`` until Ctrl-C; its exit code."""
    env = airflow_env(os.environ)
    common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    subprocess.run(["dbt", "docs", "generate", *common], env=env, check=True)
    if generate_only:
        return 0
    return subprocess.call(["dbt", "docs", "serve", *common, "--port", str(port)], env=env)

"""``make celery-check``: the ``sales_mart`` DAG on a real CeleryExecutor with two workers.

Starts, as local processes, the Airflow services docker-compose.yaml defines (their
commands and environment are read from that file; only addresses, folders and the
check's short timeouts differ, see ``local_settings`` and ``CHECK_SETTINGS``):

- metadata in a fresh PostgreSQL database on the local server (``PG*``, default
  127.0.0.1:5432, user postgres), also the Celery result backend (``db+postgresql://``);
- Redis as the broker (``REDIS_URL``, default ``redis://127.0.0.1:6379/0``), with a key
  prefix of this check's own so that concurrent checks do not share queues;
- api-server, scheduler, dag-processor, triggerer and two Celery workers, ``worker1@%h``
  and ``worker2@%h``, one task slot each, each process with its own folder (cwd,
  ``AIRFLOW_HOME``, temporary folder, logs): they share nothing but the databases and
  the broker;
- the local report API (compose's ``report-api`` command) and a fresh warehouse database.

Then, through the public REST API (``/api/v2``, JWT from ``/auth/token``):

1. **two workers**: one Monday run of ``sales_mart`` (conf ``{"day": SUNDAY}``, so the
   week's retention is built too); it must succeed with task instances on both workers;
2. **worker killed**: on a fresh warehouse, the same run again; once half of its task
   instances are done, the worker running a task dies (SIGKILL of its process group and
   of the process groups of the tasks it started, as when its container or machine
   dies); the scheduler's heartbeat timeout fails the try, the retry runs on the other
   worker and the run must still succeed.

After each run the marts (``f_sales``, ``d_*``, ``f_customer_retention``) must equal, row
for row, those of the same day run by ``airflow dags test`` (SQLite metadata, its own
fresh warehouse database; it runs alongside run 2).

Every process started here is stopped by process group at the end, also on failure,
Ctrl-C or SIGTERM; the databases are dropped and the broker keys deleted. The exit status
is 0 only if every check passed; the work folder (every process's log) is kept on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg2
import requests
import yaml
from psycopg2 import sql

from ingestion.dates import iso_week_id

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
VENV_BIN = Path(sys.executable).parent

DAG_ID = "sales_mart"
# A Sunday the local report API serves (its increments run 2024-09-30..2024-12-31): the
# Monday run loads it and builds f_sales for it and the retention of its ISO week.
SUNDAY = "2024-10-06"
MONDAY = "2024-10-07"
MARTS = ("d_calendar", "d_city", "d_customer", "d_item", "f_sales", "f_customer_retention")

# The compose services started here, in start order; the worker runs once per name.
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
WORKER_NAMES = ("worker1", "worker2")
REPORT_API_SERVICE = "report-api"

# Settings of the check only, so that a killed worker is noticed in seconds rather than
# minutes. Production keeps Airflow's defaults (README, Scaling): a try without a
# heartbeat for 300 s is failed, looked for every 10 s (workers heartbeat every 5 s).
# The scheduler creates no scheduled run (use_job_schedule), only the runs triggered here.
# deploy/check_settings/airflow_local_settings.py (a cluster policy, on PYTHONPATH here
# only) shortens the retry delay of the lost try from the DAG's 60-120 s to 5 s.
CHECK_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "deploy" / "check_settings"), str(REPO_ROOT)]),
}

KILL_AFTER_RUNNING_S = 1.0
KILL_BEFORE_RUNNING_S = 4.0
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 420
STOP_GRACE_S = 15
POLL_S = 0.5
FINISHED = {"success", "failed"}


class CheckFailed(RuntimeError):
    """A check did not pass; the message says which and why."""


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


# -- docker-compose.yaml: the service definitions ----------------------------------------

_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${VAR:-default}`` from ``variables``, ``$$`` -> ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1)) or match.group(2) or ""

    return _COMPOSE_VARIABLE.sub(replace, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_environment(
    compose: Mapping[str, Any], service: str, variables: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment compose gives ``service``, interpolated (unset variables: defaults)."""
    env = compose["services"][service].get("environment") or {}
    return {key: interpolate(str(value), variables or {}) for key, value in env.items()}


def compose_command(
    compose: Mapping[str, Any], service: str, variables: Mapping[str, str] | None = None
) -> list[str]:
    command = compose["services"][service]["command"]
    if isinstance(command, str):
        command = shlex.split(command)
    return [interpolate(str(arg), variables or {}) for arg in command]


# -- this machine: addresses and folders --------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Site:
    """Where this check's services live on this machine."""

    work: Path
    pg: dict[str, str]  # host, port, user, password (may be empty)
    metadata_db: str
    warehouse_db: str
    baseline_db: str
    broker_url: str
    broker_prefix: str
    api_port: int
    report_api_port: int
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def report_api_url(self) -> str:
        return f"http://127.0.0.1:{self.report_api_port}"

    def pg_url(self, scheme: str, database: str) -> str:
        user = quote(self.pg["user"], safe="")
        if self.pg["password"]:
            user += ":" + quote(self.pg["password"], safe="")
        return f"{scheme}://{user}@{self.pg['host']}:{self.pg['port']}/{database}"

    def folder(self, name: str) -> Path:
        path = self.work / name
        (path / "tmp").mkdir(parents=True, exist_ok=True)
        return path


def warehouse_connection(compose_value: str, site: Site, database: str) -> str:
    """Compose's ``AIRFLOW_CONN_WAREHOUSE`` pointed at ``database`` on the local server."""
    conn = json.loads(compose_value)
    conn.update(host=site.pg["host"], port=int(site.pg["port"]), login=site.pg["user"])
    conn["schema"] = database
    if site.pg["password"]:
        conn["password"] = site.pg["password"]
    else:
        conn.pop("password", None)  # trust / ~/.pgpass: no password, as the DAG allows
    return json.dumps(conn)


def report_api_connection(compose_value: str, site: Site) -> str:
    """Compose's ``AIRFLOW_CONN_REPORT_API`` (key, nickname, cohort) at the local API."""
    conn = json.loads(compose_value)
    conn["host"] = site.report_api_url
    return json.dumps(conn)


def local_settings(
    compose_env: Mapping[str, str], site: Site, folder: Path, warehouse_db: str
) -> dict[str, str | None]:
    """What differs from compose on this machine (``None`` removes a variable)."""
    return {
        # Addresses: the local server, broker and API server instead of compose's hosts.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": site.pg_url("postgresql+psycopg2", site.metadata_db),
        "AIRFLOW__CELERY__RESULT_BACKEND": site.pg_url("db+postgresql", site.metadata_db),
        "AIRFLOW__CELERY__BROKER_URL": site.broker_url,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": site.broker_prefix,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{site.api_url}/execution/",
        "AIRFLOW__API__BASE_URL": site.api_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(site.api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": site.jwt_secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(site.work / "passwords.json"),
        # Ports compose gives each container alone, free ones here.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(site.ports["scheduler"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(site.ports["triggerer"]),
        "AIRFLOW_CONN_WAREHOUSE": warehouse_connection(
            compose_env["AIRFLOW_CONN_WAREHOUSE"], site, warehouse_db
        ),
        "AIRFLOW_CONN_REPORT_API": report_api_connection(
            compose_env["AIRFLOW_CONN_REPORT_API"], site
        ),
        # Folders: the repository instead of the image's /opt/airflow, and a folder per
        # process for everything it writes.
        "AIRFLOW_HOME": str(folder),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(folder / "logs"),
        "DBT_PROJECT_DIR": str(REPO_ROOT / "dbt_project"),
        "TMPDIR": str(folder / "tmp"),
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": None,  # no docs volume here
    }


def base_environment() -> dict[str, str]:
    """This process's environment without Airflow, libpq or report API settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PG", "REPORT_API_", "INGESTION_", "DBT_"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def _merge(*layers: Mapping[str, str | None]) -> dict[str, str]:
    env: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    compose_service: str
    argv: list[str]
    env: dict[str, str]
    folder: Path


def airflow_service(
    compose: Mapping[str, Any], site: Site, service: str, name: str, argv: list[str] | None = None
) -> ServiceSpec:
    """Compose's ``service`` as a local process ``name`` with a folder of its own."""
    variables = {"AIRFLOW_WORKER_NAME": name} if service == "airflow-worker" else {}
    compose_env = compose_environment(compose, service, variables)
    folder = site.folder(name)
    extra: dict[str, str] = {}
    if service == "airflow-worker":
        # Two workers on one machine: each serves its logs on a port of its own and
        # records its Celery node name as the task instances' host name.
        extra = {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(site.ports[name]),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deploy.worker_hostname.node_name",
            "AIRFLOW_WORKER_NODE_NAME": f"{name}@{socket.gethostname()}",
        }
    env = _merge(
        base_environment(),
        compose_env,
        local_settings(compose_env, site, folder, site.warehouse_db),
        CHECK_SETTINGS,
        extra,
    )
    argv = argv or ["airflow", *compose_command(compose, service, variables)]
    return ServiceSpec(name, service, argv, env, folder)


def airflow_services(compose: Mapping[str, Any], site: Site) -> list[ServiceSpec]:
    """The long-running compose Airflow services: the worker twice, worker1 and worker2."""
    return [
        airflow_service(compose, site, service, name)
        for service in AIRFLOW_SERVICES
        for name in (
            WORKER_NAMES if service == "airflow-worker" else (service.removeprefix("airflow-"),)
        )
    ]


def airflow_init(compose: Mapping[str, Any], site: Site) -> ServiceSpec:
    """Compose's airflow-init (the image's entrypoint migrates, ``_AIRFLOW_DB_MIGRATE``)."""
    return airflow_service(compose, site, "airflow-init", "init", ["airflow", "db", "migrate"])


def report_api_spec(compose: Mapping[str, Any], site: Site) -> ServiceSpec:
    """Compose's report-api command, on 127.0.0.1 and a free port."""
    argv = compose_command(compose, REPORT_API_SERVICE)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(site.report_api_port))):
        argv[argv.index(flag) + 1] = value
    if argv[0] == "python":
        argv[0] = sys.executable
    env = _merge(base_environment(), compose_environment(compose, REPORT_API_SERVICE))
    folder = site.folder("report-api")
    return ServiceSpec("report-api", REPORT_API_SERVICE, argv, env, folder)


def baseline_environment(compose: Mapping[str, Any], site: Site) -> dict[str, str]:
    """``airflow dags test``: SQLite metadata in its own home, its own warehouse database."""
    compose_env = compose_environment(compose, "airflow-scheduler")
    folder = site.folder("dags-test")
    local = local_settings(compose_env, site, folder, site.baseline_db)
    return _merge(
        base_environment(),
        {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
        },
        {
            key: local[key]
            for key in (
                "AIRFLOW_HOME",
                "AIRFLOW__CORE__DAGS_FOLDER",
                "AIRFLOW_CONN_WAREHOUSE",
                "AIRFLOW_CONN_REPORT_API",
                "DBT_PROJECT_DIR",
                "TMPDIR",
            )
        },
    )


# -- processes --------------------------------------------------------------------------


class Process:
    """A process started in a session of its own; stopped with everything it started."""

    def __init__(self, spec: ServiceSpec, log_name: str = "output.log") -> None:
        self.spec = spec
        self.log_path = spec.folder / log_name
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            spec.argv,
            cwd=spec.folder,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.popen.pid
        self._groups: set[int] = {self.pgid}

    def process_groups(self) -> set[int]:
        """Its own group and every group its descendants made (Airflow's task processes)."""
        with suppress(psutil.Error):
            for child in psutil.Process(self.popen.pid).children(recursive=True):
                with suppress(psutil.Error, ProcessLookupError):
                    self._groups.add(os.getpgid(child.pid))
        return set(self._groups)

    def signal_groups(self, sig: int) -> set[int]:
        """Send ``sig`` to each group; the groups that still had a process."""
        self.popen.poll()  # reap the leader: a zombie would count as alive
        alive = set()
        for pgid in self.process_groups():
            try:
                os.killpg(pgid, sig)
                alive.add(pgid)
            except ProcessLookupError:
                self._groups.discard(pgid)
        return alive

    def kill_now(self) -> set[int]:
        """SIGKILL, as a machine's death: freeze the group first so nothing new forks."""
        with suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGSTOP)
        killed = self.signal_groups(signal.SIGKILL)
        self.popen.wait()
        return killed

    def running(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)
        self._log.close()


def stop_all(processes: list[Process]) -> None:
    """SIGTERM every group, SIGKILL what is left after a grace period."""
    for process in processes:
        process.signal_groups(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if not any(process.signal_groups(0) for process in processes):
            break
        time.sleep(0.2)
    for process in processes:
        if process.signal_groups(signal.SIGKILL):
            say(f"{process.spec.name} did not stop on SIGTERM: killed")
        process.close()


def run_to_end(spec: ServiceSpec, processes: list[Process], timeout_s: float) -> Process:
    """Run a one-shot command (stopped with the rest if interrupted); fail on non-zero."""
    process = Process(spec, log_name=f"{spec.name}.log")
    processes.append(process)
    try:
        code = process.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{' '.join(spec.argv)} ran over {timeout_s:.0f}s") from error
    if code != 0:
        raise CheckFailed(f"{' '.join(spec.argv)} exited {code}:\n{process.tail()}")
    processes.remove(process)
    process.close()
    return process


def wait_for(what: str, condition: Callable[[], Any], timeout_s: float, *watch: Process) -> Any:
    """Poll ``condition`` until it returns something truthy; fail if a watched process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in watch:
            if not process.running():
                raise CheckFailed(
                    f"{process.spec.name} exited {process.popen.returncode} while waiting "
                    f"for {what}:\n{process.tail()}"
                )
        result = condition()
        if result:
            return result
        time.sleep(POLL_S)
    raise CheckFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- databases and broker -----------------------------------------------------------------


def pg_settings() -> dict[str, str]:
    return {
        "host": os.environ.get("PGHOST") or "127.0.0.1",
        "port": os.environ.get("PGPORT") or "5432",
        "user": os.environ.get("PGUSER") or "postgres",
        "password": os.environ.get("PGPASSWORD") or "",
    }


def pg_connect(pg: Mapping[str, str], database: str) -> Any:
    return psycopg2.connect(
        host=pg["host"],
        port=pg["port"],
        user=pg["user"],
        password=pg["password"] or None,
        dbname=database,
    )


def recreate_database(pg: Mapping[str, str], name: str, *, create: bool = True) -> None:
    conn = pg_connect(pg, os.environ.get("PGDATABASE") or "postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
            if create:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    finally:
        conn.close()


Marts = dict[str, list[tuple[Any, ...]]]


def snapshot_marts(pg: Mapping[str, str], database: str) -> Marts:
    """Every row of every mart table, in a stable order; values as the driver returns them."""
    conn = pg_connect(pg, database)
    try:
        with conn.cursor() as cur:
            snapshot = {}
            for table in MARTS:
                cur.execute(sql.SQL("select * from mart.{}").format(sql.Identifier(table)))
                snapshot[table] = sorted(cur.fetchall(), key=repr)
            return snapshot
    finally:
        conn.close()


def compare_marts(label: str, actual: Marts, expected: Marts) -> None:
    """Fail unless every mart is identical; the day and its week must have rows at all."""
    differences = []
    for table in MARTS:
        missing = set(expected[table]) - set(actual[table])
        extra = set(actual[table]) - set(expected[table])
        if missing or extra or len(actual[table]) != len(expected[table]):
            differences.append(
                f"{table}: {len(actual[table])} rows vs {len(expected[table])}, "
                f"{len(missing)} missing, {len(extra)} extra"
            )
    if differences:
        raise CheckFailed(f"{label}: marts differ from airflow dags test: {'; '.join(differences)}")
    if not expected["f_sales"] or not expected["f_customer_retention"]:
        raise CheckFailed(f"{label}: the marts are empty: the comparison proves nothing")
    counts = ", ".join(f"{table} {len(actual[table])}" for table in MARTS)
    say(f"{label}: marts identical to airflow dags test ({counts} rows)")


def broker_client(site: Site) -> Any:
    import redis

    return redis.Redis.from_url(site.broker_url)


def delete_broker_keys(site: Site) -> None:
    with suppress(Exception):
        client = broker_client(site)
        keys = list(client.scan_iter(match=f"{site.broker_prefix}*"))
        if keys:
            client.delete(*keys)


def workers_answering(site: Site, names: set[str]) -> bool:
    """Whether every named Celery worker answers a ping on this check's broker."""
    from celery import Celery

    app = Celery(
        broker=site.broker_url,
        broker_transport_options={"global_keyprefix": site.broker_prefix},
    )
    try:
        replies = app.control.ping(timeout=1.0)
    finally:
        app.close()
    answered = {name for reply in replies for name in reply}
    return names <= answered


# -- Airflow's REST API -------------------------------------------------------------------


class AirflowApi:
    """The public API (``/api/v2``) with a JWT from the simple auth manager's ``/auth/token``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def login(self, username: str, password: str) -> bool:
        try:
            response = self.session.post(
                f"{self.base_url}/auth/token",
                json={"username": username, "password": password},
                timeout=10,
            )
        except requests.ConnectionError:
            return False
        if response.status_code != 201:
            return False
        token = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"
        return True

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.ok:
            raise CheckFailed(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def dag_parsed(self) -> bool:
        return self.request("GET", f"/dags/{DAG_ID}").status_code == 200

    def trigger(self, run_id: str, conf: Mapping[str, Any]) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)}
        return self.json("POST", f"/dags/{DAG_ID}/dagRuns", json=body)["dag_run_id"]

    def run_state(self, run_id: str) -> str:
        return self.json("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]

    def run_note(self, run_id: str) -> str | None:
        return self.json("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["note"]

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"
        return self.json("GET", path, params={"limit": 100})["task_instances"]

    def tries(self, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self.json("GET", f"{path}/tries")["task_instances"]


def print_task_instances(tis: list[dict[str, Any]]) -> None:
    for ti in sorted(tis, key=lambda ti: (ti.get("start_date") or "9", ti["task_id"])):
        task = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        print(
            f"    {task:<62} {str(ti['state']):<9} try {ti['try_number']} "
            f"{ti.get('duration') or 0:5.1f}s  {ti.get('hostname') or '-'}",
            flush=True,
        )


def wait_for_run(api: AirflowApi, run_id: str, stack: list[Process]) -> str:
    return wait_for(
        f"run {run_id}",
        lambda: (state := api.run_state(run_id)) in FINISHED and state,
        RUN_TIMEOUT_S,
        *stack,
    )


def require_success(api: AirflowApi, run_id: str, state: str) -> list[dict[str, Any]]:
    tis = api.task_instances(run_id)
    print_task_instances(tis)
    print(f"run {run_id} {state}", flush=True)
    if state != "success":
        failed = [ti["task_id"] for ti in tis if ti["state"] not in ("success", "skipped")]
        raise CheckFailed(f"run {run_id} ended {state}; not successful: {failed}")
    return tis


# -- the check ----------------------------------------------------------------------------


@dataclass
class Stack:
    site: Site
    compose: dict[str, Any]
    api: AirflowApi
    workers: dict[str, Process]  # node name -> process
    services: list[Process]  # running until the end: one that exits fails the check


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the check through its clean-up (SIGINT too when the
    check was started with it ignored, as a non-interactive shell's background job is)."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_stack(site: Site, compose: dict[str, Any], processes: list[Process]) -> Stack:
    api_spec = report_api_spec(compose, site)
    report_api = Process(api_spec)
    processes.append(report_api)
    wait_for("the report API", lambda: port_open(site.report_api_port), 60, report_api)
    say(f"report API ({' '.join(api_spec.argv[1:4])}) on {site.report_api_url}")

    specs = airflow_services(compose, site)
    run_to_end(airflow_init(compose, site), processes, timeout_s=300)
    say(f"metadata database {site.metadata_db} migrated")

    users = specs[0].env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    admin = next(user.split(":")[0] for user in users.split(",") if user.split(":")[1] == "admin")
    (site.work / "passwords.json").write_text(json.dumps({admin: site.admin_password}))

    started = {spec.name: Process(spec) for spec in specs}
    processes.extend(started.values())
    for spec in specs:
        print(f"    {spec.name:<14} {' '.join(spec.argv):<58} {spec.folder}", flush=True)
    services = [report_api, *started.values()]
    api = AirflowApi(site.api_url)
    wait_for(
        "the API server",
        lambda: api.login(admin, site.admin_password),
        STARTUP_TIMEOUT_S,
        *services,
    )
    workers = {
        proc.spec.env["AIRFLOW_WORKER_NODE_NAME"]: proc
        for proc in started.values()
        if proc.spec.compose_service == "airflow-worker"
    }
    wait_for(
        "both workers", lambda: workers_answering(site, set(workers)), STARTUP_TIMEOUT_S, *services
    )
    wait_for(f"the DAG {DAG_ID}", api.dag_parsed, STARTUP_TIMEOUT_S, *services)
    api.json("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    say(f"Airflow up: {', '.join(started)}; workers {', '.join(workers)} answer; {DAG_ID} unpaused")
    return Stack(site, compose, api, workers, services)


def check_two_workers(stack: Stack) -> Marts:
    """Run 1: success, with task instances on both workers; returns the warehouse's marts."""
    say("== run 1: two workers ==")
    run_id = stack.api.trigger(f"celery_check_two_workers_{int(time.time())}", {"day": SUNDAY})
    state = wait_for_run(stack.api, run_id, stack.services)
    tis = require_success(stack.api, run_id, state)
    per_worker = {name: sum(ti.get("hostname") == name for ti in tis) for name in stack.workers}
    say("task instances per worker: " + ", ".join(f"{n} {c}" for n, c in per_worker.items()))
    if not all(per_worker.values()):
        raise CheckFailed(f"run {run_id} did not use both workers: {per_worker}")
    # the scheduler's run-note listener (package sales_mart_plugin) named the run's day
    note = stack.api.run_note(run_id)
    say(f"run note: {note}")
    expected = f"day {SUNDAY} · week {iso_week_id(date.fromisoformat(SUNDAY))}"
    if note != expected:
        raise CheckFailed(f"run {run_id} has the note {note!r}, not {expected!r}")
    return snapshot_marts(stack.site.pg, stack.site.warehouse_db)


def check_worker_killed(stack: Stack, alongside: Callable[[], None]) -> Marts:
    """Run 2 on an empty warehouse: a worker dies mid-run, the lost try runs on the other.

    The worker is killed once half of the run's task instances are done, while it runs a
    dbt task that started between ``KILL_AFTER_RUNNING_S`` and ``KILL_BEFORE_RUNNING_S``
    before (so that the try is lost mid-work, neither before it began nor as it reports
    success: a kill near a task's end once let its try succeed).
    """
    say("== run 2: a worker killed while it runs a task ==")
    recreate_database(stack.site.pg, stack.site.warehouse_db)
    say(f"warehouse database {stack.site.warehouse_db} recreated empty")
    run_id = stack.api.trigger(f"celery_check_worker_killed_{int(time.time())}", {"day": SUNDAY})
    alongside()

    def victim() -> dict[str, Any] | None:
        tis = stack.api.task_instances(run_id)
        done = sum(ti["state"] in ("success", "skipped") for ti in tis)
        now = datetime.now(UTC)

        def running_s(ti: dict[str, Any]) -> float:
            return (now - datetime.fromisoformat(ti["start_date"])).total_seconds()

        # a dbt task (5-20 s under Celery) that started moments ago: still mid-work when
        # the signal lands (one near its end could report success first)
        candidates = [
            ti
            for ti in tis
            if 2 * done >= len(tis)
            and ti["state"] == "running"
            and ti.get("hostname") in stack.workers
            and ti.get("start_date")
            and "Dbt" in (ti.get("operator") or "")
            and KILL_AFTER_RUNNING_S <= running_s(ti) <= KILL_BEFORE_RUNNING_S
        ]
        if candidates:
            return min(candidates, key=running_s)
        if stack.api.run_state(run_id) in FINISHED:
            raise CheckFailed(f"run {run_id} finished before a worker could be killed mid-task")
        return None

    victim = wait_for(
        "half the run done and a task running on a worker", victim, RUN_TIMEOUT_S, *stack.services
    )
    node, task_id, try_number = victim["hostname"], victim["task_id"], victim["try_number"]
    worker = stack.workers[node]
    groups = worker.kill_now()
    stack.services.remove(worker)
    worker.close()
    say(
        f"killed {node}: SIGKILL to process groups {sorted(groups)} while {task_id} "
        f"try {try_number} was running on it"
    )
    state = wait_for_run(stack.api, run_id, stack.services)
    require_success(stack.api, run_id, state)

    tries = stack.api.tries(run_id, task_id, victim["map_index"])
    for attempt in tries:
        print(
            f"    {task_id} try {attempt['try_number']}: {attempt['state']} "
            f"on {attempt.get('hostname')}",
            flush=True,
        )
    survivors = set(stack.workers) - {node}
    killed_try = [t for t in tries if t["try_number"] == try_number and t["state"] != "success"]
    retried = [
        t
        for t in tries
        if t["try_number"] > try_number
        and t["state"] == "success"
        and t.get("hostname") in survivors
    ]
    if not killed_try or not retried:
        raise CheckFailed(
            f"{task_id}: expected try {try_number} to fail on {node} and a later try to "
            f"succeed on {', '.join(sorted(survivors))}; the tries were {tries}"
        )
    say(
        f"{task_id}: try {try_number} lost with {node}, try {retried[0]['try_number']} "
        f"succeeded on {retried[0]['hostname']}"
    )
    return snapshot_marts(stack.site.pg, stack.site.warehouse_db)


class Baseline:
    """``airflow dags test`` of the same day, SQLite metadata, its own warehouse database."""

    def __init__(self, compose: Mapping[str, Any], site: Site, processes: list[Process]) -> None:
        self.site = site
        self.processes = processes
        self.env = baseline_environment(compose, site)
        self.process: Process | None = None
        self.started = 0.0

    def start(self) -> None:
        test = ["airflow", "dags", "test", DAG_ID, MONDAY, "--conf", json.dumps({"day": SUNDAY})]
        script = f"airflow db migrate && exec {shlex.join(test)}"
        spec = ServiceSpec(
            "dags-test", "-", ["bash", "-c", script], self.env, Path(self.env["AIRFLOW_HOME"])
        )
        self.process = Process(spec, log_name="dags-test.log")
        self.processes.append(self.process)
        self.started = time.monotonic()
        say(f"started: {' '.join(test)} on {self.site.baseline_db}")

    def marts(self) -> Marts:
        if self.process is None:
            self.start()
        assert self.process is not None
        try:
            code = self.process.popen.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise CheckFailed(f"airflow dags test ran over {RUN_TIMEOUT_S}s") from error
        if code != 0:
            raise CheckFailed(f"airflow dags test exited {code}:\n{self.process.tail()}")
        say(f"airflow dags test succeeded in {time.monotonic() - self.started:.0f}s")
        return snapshot_marts(self.site.pg, self.site.baseline_db)


def run_check(work: Path) -> None:
    suffix = f"{os.getpid()}_{secrets.token_hex(3)}"
    site = Site(
        work=work,
        pg=pg_settings(),
        metadata_db=f"celery_check_{suffix}_airflow",
        warehouse_db=f"celery_check_{suffix}_warehouse",
        baseline_db=f"celery_check_{suffix}_baseline",
        broker_url=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        broker_prefix=f"celery_check_{suffix}:",
        api_port=free_port(),
        report_api_port=free_port(),
        ports={name: free_port() for name in ("scheduler", "triggerer", *WORKER_NAMES)},
    )
    compose = load_compose()
    databases = (site.metadata_db, site.warehouse_db, site.baseline_db)
    processes: list[Process] = []
    try:
        for name in databases:
            recreate_database(site.pg, name)
        say(f"databases {', '.join(databases)} created on {site.pg['host']}:{site.pg['port']}")
        broker_client(site).ping()
        say(f"broker {site.broker_url}, key prefix {site.broker_prefix}")
        stack = start_stack(site, compose, processes)
        baseline = Baseline(compose, site, processes)
        run1 = check_two_workers(stack)
        # The baseline runs alongside run 2, which has a core to spare: one worker is
        # left, and the lost try waits for its heartbeat timeout.
        run2 = check_worker_killed(stack, alongside=baseline.start)
        expected = baseline.marts()
        compare_marts("run 1 (two workers)", run1, expected)
        compare_marts("run 2 (worker killed)", run2, expected)
    finally:
        stop_all(processes)
        say(f"stopped {len(processes)} processes (every process group they made)")
        for name in databases:
            with suppress(Exception):
                recreate_database(site.pg, name, create=False)
        delete_broker_keys(site)
        say("databases dropped, broker keys deleted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="celery-check-"))
    print(f"celery-check: work folder {work} (one folder per process, each with its log)")
    ok = False
    try:
        with interrupts_raise():
            run_check(work)
        ok = True
    except CheckFailed as error:
        print(f"celery-check FAILED: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("celery-check interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"celery-check: logs kept in {work}")
    say("celery-check passed" if ok else "celery-check failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

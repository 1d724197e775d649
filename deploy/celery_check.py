"""``make celery-check``: ``sales_mart`` on a real CeleryExecutor, two workers, one killed.

Runs docker-compose.yaml's Airflow services and report API as local processes: their own
``command:`` and ``environment:``, changed only as ``Check.env`` and ``CHECK_SETTINGS`` say
(what it proves, and the settings it changes: docs/scaling.md)."""

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import closing, suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg2
import redis
import requests
import yaml
from psycopg2 import sql

from ingestion import config, project

DAG_ID, MARTS = project.SALES_MART_DAG_ID, project.MART_TABLES
REPO = Path(__file__).resolve().parent.parent
SERVICES = yaml.safe_load((REPO / "docker-compose.yaml").read_text(encoding="utf-8"))["services"]
DAY = "2024-10-06"  # a Sunday the local report API serves: the run builds its week too
WEEK = ["--start", "2024-09-30", "--end", "2024-10-05"]  # its week's other days: loaded first
AIRFLOW = ("apiserver", "scheduler", "dag-processor", "triggerer", "worker1", "worker2")
# The check's own settings (production's in docs/scaling.md): a killed worker's try fails
# after 15 s without a heartbeat, not 300 s; check_settings/airflow_local_settings.py
# retries it after 1 s and records each worker's node name as its tasks' host name.
CHECK_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs triggered here
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_local_settings.worker_node_name",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login on 127.0.0.1
    "PYTHONPATH": str(REPO / "deploy" / "check_settings"),
}
PG_DEFAULTS = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}
TIMEOUT_S = 420
DATABASES = ("airflow", "week", "warehouse", "baseline")
COPY = ("drop database {db} with (force)", "create database {db} template {week}")


class CheckFailed(Exception):
    """A guarantee did not hold; the message says which."""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def compose_value(value: Any, **variables: str) -> str:
    """A compose value with each ``${VAR:-default}`` from ``variables``, else its default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m[1]) or m[2], str(value))


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def query(*statements: str, database: str = "postgres", **names: str) -> list[tuple[Any, ...]]:
    """Autocommitted statements on the ``PG*`` server; ``{name}`` quotes ``names[name]``."""
    quoted = {k: sql.Identifier(v) for k, v in names.items()}
    with closing(psycopg2.connect(dbname=database)) as conn, conn.cursor() as cur:
        conn.autocommit = True
        for statement in statements:
            cur.execute(sql.SQL(statement).format(**quoted))
        return cur.fetchall() if cur.description else []


def marts(db: str) -> dict[str, list[tuple[str]]]:  # every row of every mart, as text
    return {t: sorted(query("select {t}::text from mart.{t}", database=db, t=t)) for t in MARTS}


def killpg(procs: Iterable[psutil.Process], sig: int) -> list[psutil.Process]:
    """``sig`` to the groups of these processes and descendants (a task has its own group)."""
    tree = []
    for proc in procs:
        with suppress(psutil.Error):
            if proc.is_running():  # checks the start time: never a reused pid
                tree += [proc, *proc.children(recursive=True)]
    for proc in tree:
        with suppress(OSError):
            if (group := os.getpgid(proc.pid)) != os.getpgrp():
                os.killpg(group, sig)
    return tree


class Check:
    def __init__(self, work: Path) -> None:
        self.work, suffix = work, f"{os.getpid()}_{secrets.token_hex(3)}"
        self.dbs = {r: f"celery_check_{suffix}_{r}" for r in DATABASES}
        self.broker = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        self.prefix = f"celery_check_{suffix}:"
        self.port, self.report_api_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = {f"{n}@{socket.gethostname()}": n for n in AIRFLOW if "worker" in n}
        self.procs: dict[str, psutil.Popen] = {}

    def env(self, name: str, service: str, warehouse: str = "warehouse") -> dict[str, str]:
        """Compose's environment of ``service`` for the local process ``name``."""
        folder, worker = self.work / name, {"AIRFLOW_WORKER_NAME": name} if "worker" in name else {}
        (folder / "tmp").mkdir(parents=True)
        env = {k: os.environ[k] for k in ("HOME", "LANG", "USER") if k in os.environ}  # + PATH
        api = {"REPORT_API_URL": f"http://127.0.0.1:{self.report_api_port}"}  # compose's variable
        compose = SERVICES[service].get("environment", {})
        env |= {key: compose_value(value, **worker, **api) for key, value in compose.items()}
        user, password = (quote(os.environ.get(k, ""), safe="") for k in ("PGUSER", "PGPASSWORD"))
        pg = f"{user}:{password}@{os.environ['PGHOST']}:{os.environ['PGPORT']}"  # libpq: "" is none
        env |= {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # venv's
            # addresses: the local PostgreSQL, Redis and API server
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}/{self.dbs['airflow']}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}/{self.dbs['airflow']}",
            "AIRFLOW__CELERY__BROKER_URL": self.broker,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.prefix,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW_CONN_WAREHOUSE": f"postgres://{pg}/{self.dbs[warehouse]}",
            # ports each container has to itself
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            # folders: the checkout instead of the image's, and a home and TMPDIR each
            "AIRFLOW_HOME": str(folder),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "DBT_PROJECT_DIR": str(REPO / "dbt_project"),
            "TMPDIR": str(folder / "tmp"),
        }
        return env | worker | CHECK_SETTINGS

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> psutil.Popen:
        with open(self.work / name / "output.log", "wb") as log:
            self.procs[name] = psutil.Popen(argv, cwd=self.work / name, env=env, stdout=log,
                                            stderr=log, start_new_session=True)  # fmt: skip
        return self.procs[name]

    def wait_for(self, what: str, condition: Callable[[], Any], timeout_s: float = 180) -> Any:
        """Poll ``condition`` until it is truthy; fail if a service exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name in set(self.procs) & {*AIRFLOW, "report-api"}:
                if self.procs[name].poll() is not None:
                    raise CheckFailed(f"{name} exited while waiting for {what}: see its log")
            with suppress(requests.ConnectionError):  # the API server is starting
                if result := condition():
                    return result
            time.sleep(0.5)
        raise CheckFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")

    def call(self, method: str, path: str = "", **kwargs: Any) -> Any:
        url = f"{self.url}/api/v2/dags/{DAG_ID}{path}"
        response = requests.request(method, url, timeout=30, **kwargs)
        if not response.ok:
            raise CheckFailed(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def state(self, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        tis = self.call("GET", f"/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return self.call("GET", f"/dagRuns/{run_id}")["state"], tis["task_instances"]

    def run(self, run_id: str, meanwhile: Callable[[], Any] = lambda: None) -> Any:
        """Trigger a run, call ``meanwhile``, wait; its task instances if it succeeded."""
        body = {"dag_run_id": run_id, "logical_date": None, "conf": {"day": DAY}}
        self.call("POST", "/dagRuns", json=body)
        say(f"triggered run {run_id} (conf {body['conf']})")
        result = meanwhile()
        ended = lambda: (run := self.state(run_id))[0] in ("success", "failed") and run  # noqa: E731
        state, tis = self.wait_for(f"run {run_id}", ended, TIMEOUT_S)
        if state != "success":
            failed = [ti["task_id"] for ti in tis if ti["state"] not in ("success", "skipped")]
            raise CheckFailed(f"run {run_id} ended {state}; not successful: {failed}")
        hosts = {ti["hostname"] for ti in tis if ti["hostname"]}
        say(f"run {run_id} succeeded, with tasks on {', '.join(sorted(hosts))}")
        return tis, result

    def victim(self) -> dict[str, Any] | None:
        """Once half the run is done, the youngest dbt task on a worker, 1-4 s in (mid-work)."""
        tis, now = self.state("worker_killed")[1], time.time()
        done = sum(ti["state"] in ("success", "skipped") for ti in tis)
        dbt = [t for t in tis if t["state"] == "running" and "Dbt" in (t["operator"] or "")]
        age = {t["task_id"]: now - datetime.fromisoformat(t["start_date"]).timestamp() for t in dbt}
        young = [t for t in dbt if t["hostname"] in self.workers and 1 <= age[t["task_id"]] <= 4]
        return 2 * done >= len(tis) and min(young, key=lambda t: age[t["task_id"]], default=None)

    def kill_a_worker(self) -> dict[str, Any]:
        """SIGKILL the worker of ``victim``, as when its machine dies."""
        lost = self.wait_for("half the run done and a dbt task starting on a worker", self.victim)
        worker = self.procs.pop(self.workers[lost["hostname"]])
        os.killpg(worker.pid, signal.SIGSTOP)  # frozen: nothing forks while the tree is read
        tree = killpg([worker], signal.SIGKILL)
        say(f"SIGKILLed {lost['hostname']} ({len(tree)} processes) mid-{lost['task_id']}")
        return lost

    def main(self) -> None:
        redis.Redis.from_url(self.broker).ping()
        for database in self.dbs.values():
            query("create database {db}", db=database)  # new names: nothing to drop
        argv = shlex.split(SERVICES["report-api"]["command"])
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(self.report_api_port)
        self.start("report-api", argv, self.env("report-api", "report-api"))
        # compose's airflow-init: the image's entrypoint migrates (_AIRFLOW_DB_MIGRATE)
        self.start("init", ["airflow", "db", "migrate"], self.env("init", "airflow-init"))
        api = json.loads(self.env("week", "airflow-scheduler")["AIRFLOW_CONN_REPORT_API"])
        api = config.ApiSettings(api["host"], api["password"], **api["extra"])  # nickname, cohort
        env = os.environ | api.env()
        # the week is copied for each run (no partial week); dbt's artifacts stay in work/
        env |= {"PGDATABASE": self.dbs["week"], "DBT_TARGET_PATH": str(self.work / "target")}
        self.start("week", [sys.executable, "-m", "ingestion", "run", *WEEK], env)
        for step in ("init", "week"):
            if self.procs.pop(step).wait(TIMEOUT_S):
                raise CheckFailed(f"{step} failed: see {self.work / step}")
        for db in ("warehouse", "baseline"):  # copies of the week's other days, as for run 2
            query(*COPY, db=self.dbs[db], week=self.dbs["week"])
        for name in AIRFLOW:
            service = f"airflow-{name.rstrip('12')}"  # worker1 and worker2: airflow-worker
            command = compose_value(SERVICES[service]["command"], AIRFLOW_WORKER_NAME=name)
            self.start(name, ["airflow", *shlex.split(command)], self.env(name, service))
        dag = f"{self.url}/api/v2/dags/{DAG_ID}"  # parsed and served once it can be unpaused
        self.wait_for(DAG_ID, lambda: requests.patch(dag, json={"is_paused": False}, timeout=9).ok)
        # airflow dags test (SQLite metadata, its own warehouse) runs alongside the runs
        env = self.env("dags-test", "airflow-scheduler", warehouse="baseline")
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{self.work}/dags-test/airflow.db"
        test = shlex.join(["airflow", "dags", "test", DAG_ID, "--conf", json.dumps({"day": DAY})])
        baseline = self.start("dags-test", ["bash", "-c", f"airflow db migrate && {test}"], env)

        tis, _ = self.run("two_workers")
        if not set(self.workers) <= {ti["hostname"] for ti in tis}:
            raise CheckFailed(f"run 1 did not run tasks on both of {', '.join(self.workers)}")
        run1 = marts(self.dbs["warehouse"])

        query(*COPY, db=self.dbs["warehouse"], week=self.dbs["week"])
        tis, lost = self.run("worker_killed", self.kill_a_worker)
        last = next(ti for ti in tis if ti["task_id"] == lost["task_id"])  # dbt: not mapped
        if last["try_number"] <= lost["try_number"] or last["hostname"] == lost["hostname"]:
            raise CheckFailed(f"try {lost['try_number']} was not lost and retried elsewhere")
        say(f"try {lost['try_number']} lost, try {last['try_number']} ran on {last['hostname']}")
        run2 = marts(self.dbs["warehouse"])

        if baseline.wait(TIMEOUT_S):
            raise CheckFailed(f"airflow dags test failed: see {self.work / 'dags-test'}")
        expected = marts(self.dbs["baseline"])
        if not expected["f_sales"] or not expected["f_customer_retention"]:
            raise CheckFailed("airflow dags test built empty marts: the comparison proves nothing")
        for label, actual in (("run 1", run1), ("run 2", run2)):
            if differ := [table for table in MARTS if actual[table] != expected[table]]:
                raise CheckFailed(f"{label}: marts {differ} differ from airflow dags test's")
        say(f"both runs' marts equal airflow dags test's ({sum(map(len, expected.values()))} rows)")


def main() -> int:
    os.environ |= {key: os.environ.get(key) or value for key, value in PG_DEFAULTS.items()}
    work = Path(tempfile.mkdtemp(prefix="celery-check-"))
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in stops:  # SIGINT too: a script's background job starts with it ignored
        signal.signal(sig, signal.default_int_handler)  # raises KeyboardInterrupt
    check, code = Check(work), 1
    try:
        code = check.main() or 0
    except CheckFailed as error:
        print(f"celery-check FAILED: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    finally:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)  # the clean-up runs to its end
        tree = killpg(check.procs.values(), signal.SIGTERM)
        killpg(psutil.wait_procs(tree, timeout=5)[1], signal.SIGKILL)
        for database in check.dbs.values():
            with suppress(psycopg2.Error):
                query("drop database if exists {db} with (force)", db=database)
        with suppress(redis.RedisError):
            broker = redis.Redis.from_url(check.broker)
            if keys := list(broker.scan_iter(match=f"{check.prefix}*")):
                broker.delete(*keys)
        if code == 0:
            shutil.rmtree(work, ignore_errors=True)
    outcome = "passed" if code == 0 else f"failed; logs in {work}"
    say(f"stopped every process started, dropped the databases and broker keys; {outcome}")
    return code


if __name__ == "__main__":
    sys.exit(main())

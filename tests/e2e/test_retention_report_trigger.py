"""End to end: sales_mart's Monday run announces the retention mart, retention_report renders it.

Real components only: the marts are built from the recorded extracts (``pipeline.run``
with the local report API serving ``fixtures/course_api``), Airflow runs as subprocesses
with its own AIRFLOW_HOME (SQLite metadata), the warehouse is a fresh database.

1. ``airflow dags reserialize`` and ``unpause retention_report``, as a deployment has them.
2. A weekday run of sales_mart (2024-10-08, D = 2024-10-07): no retention build, so no
   asset event for the mart and nothing queued for retention_report.
3. The Monday run (2024-10-07, D = Sunday 2024-10-06) rebuilds 2024-W40, and its
   ``publish_retention`` task records an event on the asset ``mart.f_customer_retention``
   retention_report is scheduled on; Airflow queues retention_report, and the
   scheduler's own query (``DagModel.dags_needing_dagruns``) returns it.
4. ``airflow dags test retention_report``: the HTML page and the PNGs are written, and the
   page's numbers are the mart's rows of the last weeks.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings
from retail_dev.local_airflow import connection_env as airflow_connection_env
from retention_report.render import CHART_TITLES
from support.airflow_cli import VENV_BIN, airflow_env, migrate_db, run_command
from support.recorded_marts import WEEK_IDS, build_recorded_marts
from support.report_html import mart_rows, report_tables

pytestmark = pytest.mark.slow

RETENTION_BUILD = "build_retention_mart.f_customer_retention_model_build"
# The scheduler's question, asked of the test's metadata DB: which DAGs need a run now?
NEEDING_RUNS = """
import json
from airflow.models.dag import DagModel
from airflow.utils.session import create_session
with create_session() as session:
    query, triggered = DagModel.dags_needing_dagruns(session)
    print(json.dumps(sorted(triggered)))
"""


@dataclass
class Scenario:
    env: dict[str, str]
    airflow_home: Path
    reports: Path
    warehouse: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)
    queued: dict[str, list[tuple]] = field(default_factory=dict)
    runs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    needing_runs: list[str] = field(default_factory=list)


def _meta(scenario: Scenario, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(scenario.airflow_home / "airflow.db") as meta:
        return meta.execute(sql, params).fetchall()


def _last_run(scenario: Scenario, dag_id: str) -> tuple[str, dict[str, str]]:
    run_id, state = _meta(
        scenario,
        "select run_id, state from dag_run where dag_id = ? order by id desc limit 1",
        dag_id,
    )[0]
    tasks = dict(
        _meta(
            scenario,
            "select task_id, state from task_instance where dag_id = ? and run_id = ?",
            dag_id,
            run_id,
        )
    )
    return state, tasks


def _queued(scenario: Scenario) -> list[tuple]:
    return _meta(
        scenario,
        "select q.target_dag_id, a.uri from asset_dag_run_queue as q "
        "join asset as a on a.id = q.asset_id order by 1, 2",
    )


@pytest.fixture(scope="module")
def scenario(make_database, fixtures_dir, tmp_path_factory) -> Scenario:
    warehouse = make_database()
    build_recorded_marts(warehouse, fixtures_dir)
    airflow_home = tmp_path_factory.mktemp("airflow_home")
    reports = tmp_path_factory.mktemp("reports")
    config = LocalApiConfig.from_extracts(fixtures_dir, running_polls=1)
    with LocalReportApi(config) as api:
        env = airflow_env(
            airflow_home,
            airflow_connection_env(warehouse, local_api_settings(api), warehouse_form="uri"),
            RETENTION_REPORT_DIR=str(reports),
        )
        result = Scenario(env=env, airflow_home=airflow_home, reports=reports, warehouse=warehouse)
        airflow = str(VENV_BIN / "airflow")
        migrate_db(env)
        run_command([airflow, "dags", "reserialize"], env)
        run_command([airflow, "dags", "unpause", "retention_report"], env)
        for name, logical_date in (
            ("weekday", "2024-10-08T03:00:00+00:00"),
            ("monday", "2024-10-07T03:00:00+00:00"),
        ):
            result.outputs[name] = run_command(
                [airflow, "dags", "test", "sales_mart", logical_date], env
            )
            result.runs[name] = _last_run(result, "sales_mart")
            result.queued[name] = _queued(result)
        needing = run_command([str(VENV_BIN / "python"), "-c", NEEDING_RUNS], env)
        result.needing_runs = json.loads(needing.strip().splitlines()[-1])
        result.outputs["report"] = run_command([airflow, "dags", "test", "retention_report"], env)
    return result


def test_a_weekday_run_queues_no_report(scenario: Scenario) -> None:
    state, tasks = scenario.runs["weekday"]
    assert state == "success" and tasks[RETENTION_BUILD] == "skipped"
    assert tasks["publish_retention"] == "skipped"
    assert tasks["build_sales_mart.f_sales_model_build"] == "success"
    assert scenario.queued["weekday"] == []


def test_the_monday_run_emits_the_retention_marts_asset(scenario: Scenario) -> None:
    from ingestion.project import RETENTION_MART_ASSET

    state, tasks = scenario.runs["monday"]
    assert state == "success" and tasks[RETENTION_BUILD] == "success"
    events = _meta(
        scenario,
        "select e.source_dag_id, e.source_task_id from asset_event as e "
        "join asset as a on a.id = e.asset_id where a.uri = ?",
        RETENTION_MART_ASSET,
    )
    assert events == [("sales_mart", "publish_retention")]
    scheduled = _meta(
        scenario,
        "select r.dag_id from dag_schedule_asset_reference as r "
        "join asset as a on a.id = r.asset_id where a.uri = ?",
        RETENTION_MART_ASSET,
    )
    assert scheduled == [("retention_report",)]
    # Airflow queued the report DAG on that asset; the scheduler would start it now.
    assert scenario.queued["monday"] == [("retention_report", RETENTION_MART_ASSET)]
    assert scenario.needing_runs == ["retention_report"]


def test_retention_report_renders_the_marts_last_weeks(scenario: Scenario) -> None:
    state, tasks = _last_run(scenario, "retention_report")
    assert state == "success" and tasks == {"render_report": "success"}
    page = scenario.reports / f"{WEEK_IDS[0]}_{WEEK_IDS[-1]}" / "retention.html"
    assert f"retention report (8 weeks at most): {page}" in scenario.outputs["report"]
    for name in CHART_TITLES:
        assert (page.parent / name).read_bytes().startswith(b"\x89PNG"), name
    tables, images = report_tables(page)
    assert len(images) == len(CHART_TITLES)
    assert [row["period_id"] for row in tables["totals"]] == WEEK_IDS
    assert tables["items"] == mart_rows(scenario.warehouse, WEEK_IDS)

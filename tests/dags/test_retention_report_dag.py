"""dags/retention_report_dag.py: scheduled on the retention mart's asset, no sensor."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest

from ingestion import project

DAG_ID = project.RETENTION_REPORT_DAG_ID
DAGS_DIR = project.REPO_ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag(dbt_manifest):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_scheduled_on_the_asset_sales_mart_publishes(dagbag, dag) -> None:
    from airflow.sdk import Asset

    from ingestion.project import RETENTION_MART_ASSET

    publish = dagbag.dags["sales_mart"].get_task("publish_retention")
    assert publish.outlets == [Asset(RETENTION_MART_ASSET)]
    assert dag.timetable.asset_condition.objects == (Asset(RETENTION_MART_ASSET),)
    # cross-DAG dependency by asset only: no sensor waits on sales_mart
    assert not any("Sensor" in type(task).__name__ for task in dag.tasks)


def test_dag_settings(dag) -> None:
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.tags >= {"retention", "report"}
    assert dag.doc_md and "RETENTION_REPORT_DIR" in dag.doc_md
    assert dag.params["weeks"] == 8
    assert dag.task_ids == ["render_report"]
    task = dag.get_task("render_report")
    assert task.retries >= 1 and task.retry_exponential_backoff > 1
    assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=1)
    assert task.on_failure_callback
    assert task.python_callable.__code__.co_name == "wrapper"  # fail_fast
    assert "warehouse_connection()" in inspect.getsource(task.python_callable.__wrapped__)


def test_the_weeks_param_must_be_a_positive_integer(dag) -> None:
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dag.params)
    params["weeks"] = 12
    assert params.validate()["weeks"] == 12
    for bad in (0, "eight"):
        params = ParamsDict(dag.params)
        with pytest.raises(ValueError):
            params["weeks"] = bad

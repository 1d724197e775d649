"""dags/retention_report_dag.py: scheduled on the retention mart's asset, no sensor."""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path

import pytest

DAG_ID = "retention_report"
DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
RETENTION_BUILD = "build_retention_mart.f_customer_retention_model_build"


@pytest.fixture(scope="module")
def dagbag(dbt_manifest):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_scheduled_on_the_alias_cosmos_emits_the_retention_build_through(dagbag, dag) -> None:
    from airflow.sdk import AssetAlias
    from cosmos.dataset import get_dataset_alias_name

    build = dagbag.dags["sales_mart"].get_task(RETENTION_BUILD)
    # The alias Cosmos's operator records its asset events through at run time.
    emitted = get_dataset_alias_name(build.dag, build.task_group, build.task_id)
    assert emitted == "sales_mart__build_retention_mart__f_customer_retention_model_build"
    assert build.emit_datasets is True
    assert dag.timetable.asset_condition.objects == (AssetAlias(emitted),)
    # cross-DAG dependency by asset only: no sensor waits on sales_mart
    assert not any("Sensor" in type(task).__name__ for task in dag.tasks)


def test_every_mart_task_of_sales_mart_emits_assets(dagbag) -> None:
    sales_mart = dagbag.dags["sales_mart"]
    dbt_tasks = [task for task in sales_mart.tasks if task.task_id.startswith("build_")]
    assert dbt_tasks and all(task.emit_datasets for task in dbt_tasks)


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
    source = inspect.getsource(task.python_callable)
    assert "fail_fast_on_permanent_errors()" in source and "warehouse_connection()" in source


def test_the_weeks_param_must_be_a_positive_integer(dag) -> None:
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(dag.params)
    params["weeks"] = 12
    assert params.validate()["weeks"] == 12
    for bad in (0, "eight"):
        params = ParamsDict(dag.params)
        with pytest.raises(ValueError):
            params["weeks"] = bad


def test_report_dir_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    import retention_report_dag

    monkeypatch.setenv("RETENTION_REPORT_DIR", str(tmp_path))
    assert retention_report_dag.report_dir() == tmp_path
    monkeypatch.delenv("RETENTION_REPORT_DIR")
    assert retention_report_dag.report_dir() == retention_report_dag.DBT_PROJECT_DIR.parent / (
        "reports"
    )

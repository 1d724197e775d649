"""DagBag integrity of dags/sales_mart.py: imports, wiring, retries, no top-level I/O, speed."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestion import project
from ingestion.project import PERIOD_ENV, RETENTION_MART_ASSET, SALES_MART_DAG_ID

DAG_ID = SALES_MART_DAG_ID
DAGS_DIR = project.REPO_ROOT / "dags"
SALES_GROUP_MODELS = (
    "stg_report_api__user_order_log",
    "stg_report_api__user_activity_log",
    "stg_report_api__customer_research",
    "stg_report_api__price_log",
    "d_calendar",
    "d_city",
    "d_customer",
    "d_item",
    "f_sales",
)
DAY_TEMPLATE = "{{ ti.xcom_pull(task_ids='plan_rebuild', key='day_var') }}"
WEEK_START_TEMPLATE = "{{ ti.xcom_pull(task_ids='plan_rebuild', key='week_start_var') }}"


def build_task(model: str, group: str = "build_sales_mart") -> str:
    """Cosmos's task id for a model under TestBehavior.BUILD (outside a per-model group)."""
    return f"{group}.{model}_model_build"


RETENTION = build_task("f_customer_retention", "build_retention_mart")
RETENTION_WEEKS = build_task("f_customer_retention_weeks", "build_retention_mart")


def parse_dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def dagbag(dbt_manifest: Path):
    return parse_dagbag()


@pytest.fixture(scope="module")
def dag(dagbag):
    assert not dagbag.import_errors, dagbag.import_errors
    return dagbag.dags[DAG_ID]


def test_no_import_errors_and_only_the_two_dags(dagbag) -> None:
    assert dagbag.import_errors == {}
    # retention_report (tests/dags/test_retention_report_dag.py) is scheduled on sales_mart's asset
    assert set(dagbag.dags) == {DAG_ID, "retention_report"}


def test_dag_level_settings(dag) -> None:
    from airflow.sdk import CronTriggerTimetable

    assert dag.tags >= {"sales", "retention", "dbt", "cosmos"}
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.dagrun_timeout is not None
    assert dag.doc_md and "rebuild" in dag.doc_md.lower()
    # No start_date: every run gets its task instances (see test_sales_mart_runs.py).
    assert dag.start_date is None
    assert all(task.start_date is None for task in dag.tasks)
    assert set(dag.params.keys()) >= {"day", "rebuild_week"}
    assert dag.params["day"] is None and dag.params["rebuild_week"] is False


def test_every_task_retries_with_backoff_and_has_a_timeout(dag) -> None:
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_exponential_backoff > 1, task.task_id
        assert task.max_retry_delay is not None, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout <= timedelta(hours=1), task.task_id
        assert task.on_failure_callback, task.task_id


def test_report_sensor_reschedules_and_has_a_deadline(dag) -> None:
    sensor = dag.get_task("wait_for_report")
    assert sensor.mode == "reschedule"
    assert 0 < sensor.timeout <= timedelta(hours=6).total_seconds()
    assert sensor.upstream_task_ids == {"generate_report"}


def test_flow(dag) -> None:
    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids

    assert downstream("resolve_run_dates") >= {"prepare_staging"}
    assert downstream("prepare_staging") == {"generate_report"}
    # One task fetches and loads D (or records NOT FOUND): no files between tasks.
    assert downstream("wait_for_report") == {"load_day", "plan_rebuild"}
    assert downstream("load_day") == {"plan_rebuild"}
    assert dag.get_task("plan_rebuild").upstream_task_ids == {
        "load_day",
        "resolve_run_dates",
        "wait_for_report",
    }
    assert dag.get_task("plan_rebuild").trigger_rule == "all_success"
    sales_roots = {t for t in downstream("plan_rebuild") if t.startswith("build_sales_mart.")}
    assert sales_roots
    # the plan decides which weeks the retention group rebuilds: a short-circuit that
    # skips the retention group and the asset event (or fails on a week's missing days)
    assert "has_weeks_to_build" in downstream("plan_rebuild")
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    weeks = dag.get_task("has_weeks_to_build")
    assert isinstance(weeks, ShortCircuitOperator)
    assert weeks.ignore_downstream_trigger_rules is False
    assert downstream("has_weeks_to_build") == {
        "build_retention_mart.f_customer_retention_model_build"
    }
    publish = dag.get_task("publish_retention")
    assert publish.upstream_task_ids == {RETENTION_WEEKS}
    assert publish.trigger_rule == "all_success"
    assert [asset.name for asset in publish.outlets] == [RETENTION_MART_ASSET]
    # no partial week: checked after the complete weeks are built, whether any was
    check = dag.get_task("check_weeks_complete")
    assert check.upstream_task_ids == {"publish_retention", "plan_rebuild"}
    assert check.trigger_rule == "none_failed" and check.downstream_task_ids == set()


def _dbt_tasks(dag, group: str) -> dict[str, object]:
    return {t.task_id: t for t in dag.tasks if t.task_id.startswith(f"{group}.")}


def test_sales_group_builds_dimensions_and_f_sales_for_the_day(dag) -> None:
    from cosmos.constants import InvocationMode

    tasks = _dbt_tasks(dag, "build_sales_mart")
    ids = set(tasks)
    for model in ("d_calendar", "d_city", "d_customer", "d_item", "f_sales"):
        assert any(t.split(".")[1].startswith(model) for t in ids), model
    # every staging view, also those no mart reads: `dbt test` from a terminal expects them
    for view in ("user_order_log", "user_activity_log", "customer_research", "price_log"):
        assert build_task(f"stg_report_api__{view}") in ids, view
    # One Airflow task per model: `dbt build` of the model and its tests, in dbt's process.
    # ... and one for the customer history snapshot, after d_customer
    history = "build_sales_mart.d_customer_history_snapshot_build"
    assert set(ids) == {build_task(model) for model in SALES_GROUP_MODELS} | {history}
    assert build_task("d_customer") in dag.get_task(history).upstream_task_ids
    assert not any("f_customer_retention" in t for t in ids)
    # The staging view's build (its tests included) gates every mart that reads it, so a
    # failing staging test stops the marts.
    staging = build_task("stg_report_api__user_order_log")
    for model in ("d_city", "d_customer", "d_item", "f_sales"):
        assert staging in dag.get_task(build_task(model)).upstream_task_ids, model
    assert dag.get_task(build_task("f_sales")).upstream_task_ids >= {
        build_task(dim) for dim in ("d_calendar", "d_city", "d_customer", "d_item")
    }
    for task in tasks.values():
        assert type(task).__name__ == "DbtBuildLocalOperator", task.task_id
        assert task.invocation_mode == InvocationMode.DBT_RUNNER, task.task_id
        assert task.indirect_selection == "buildable", task.task_id
        assert task.select.startswith("fqn:retail."), task.task_id
        assert task.env == {PERIOD_ENV["day"]: DAY_TEMPLATE}, task.task_id
        assert not task.vars, task.task_id  # a new --vars value: a full re-parse per run
        assert task.install_deps is False, task.task_id
        assert not getattr(task, "full_refresh", False), task.task_id
        assert task.profile_config.profile_mapping.conn_id == "warehouse"
        assert task.emit_datasets is False  # no asset URI from a socket-folder host
        # the CLI's build lock, held around the task's dbt invocation
        assert task._pre_execute_hook.__name__ == "hold_build_lock", task.task_id
        assert task._post_execute_hook.__name__ == "release_build_lock", task.task_id


def test_retention_group_builds_only_the_retention_mart_for_the_week(dag) -> None:
    tasks = _dbt_tasks(dag, "build_retention_mart")
    assert set(tasks) == {RETENTION, RETENTION_WEEKS}
    assert dag.get_task(RETENTION_WEEKS).upstream_task_ids == {RETENTION}  # the weeks it built
    for task in tasks.values():
        assert task.env == {PERIOD_ENV["week_start"]: WEEK_START_TEMPLATE}, task.task_id
        assert not task.vars, task.task_id
        assert task.install_deps is False
        # buildable: the weekly reconciliation against f_sales runs with this model's build
        assert task.indirect_selection == "buildable"


@pytest.mark.parametrize(
    ("group", "selector"),
    [("build_sales_mart", "sales_mart"), ("build_retention_mart", "retention_mart")],
)
def test_task_groups_render_the_models_dbt_selects_for_their_selectors(
    dag, group: str, selector: str, tmp_path: Path
) -> None:
    """Cosmos resolves the dbt_project/selectors.yml selector (from the manifest) as dbt
    does for `dbt build --selector`: one task per model or snapshot, none for an ephemeral
    model."""
    from support.dbt_ls import dbt_ls

    nodes = dbt_ls(
        ["--selector", selector, "--resource-type", "model", "--resource-type", "snapshot"],
        tmp_path,
    )
    assert nodes
    assert set(_dbt_tasks(dag, group)) == {
        f"{group}.{node.split('.')[-1]}_{node.split('.')[0]}_build" for node in nodes
    }


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 23, 2, 59, tzinfo=UTC),
        datetime(2026, 11, 23, 3, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
    ],
)
def test_unpausing_schedules_the_next_run_not_a_past_day(dag, moment, monkeypatch) -> None:
    """A newly unpaused DAG runs at the next 03:00 UTC: no run for a day the local report
    API has no data for queues in front of a newcomer's first trigger."""
    import attrs
    import pendulum
    from airflow.timetables import trigger
    from airflow.timetables.base import TimeRestriction

    settings = {"expression": "0 3 * * *", "timezone": "UTC", "interval": timedelta(0)}
    assert attrs.asdict(dag.timetable) == {**settings, "run_immediately": timedelta(0)}
    monkeypatch.setattr(trigger, "utcnow", lambda: pendulum.instance(moment))
    timetable = trigger.CronTriggerTimetable(
        "0 3 * * *", timezone="UTC", run_immediately=timedelta(0)
    )
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=None, catchup=False),
    )
    assert first.logical_date > moment
    assert first.logical_date - moment <= timedelta(days=1)


def test_profile_is_generated_from_the_connection_without_secrets(dag) -> None:
    mapping = dag.get_task(build_task("f_sales")).profile_config.profile_mapping
    assert type(mapping).__name__ == "WarehouseProfileMapping"
    assert mapping.conn_id == "warehouse"
    assert mapping.profile_args.get("schema") == "mart"
    assert "password" in mapping.secret_fields  # rendered as an env_var() reference
    assert "password" not in mapping.required_fields


def _mapping_for(dag, uri: str, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri)
    mapping = dag.get_task(build_task("f_sales")).profile_config.profile_mapping
    return type(mapping)(conn_id="warehouse", profile_args={"schema": "mart"})


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("postgresql://postgres@127.0.0.1:5432/db", "127.0.0.1"),  # trust
        ("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql:5432/db", "/var/run/postgresql"),  # peer
    ],
)
def test_profile_of_a_passwordless_connection(dag, uri, host, monkeypatch) -> None:
    mapping = _mapping_for(dag, uri, monkeypatch)
    profile_yaml = mapping.get_profile_file_contents("retail", "airflow")
    profile = mapping.profile
    assert profile["host"] == host and profile["user"] == "postgres" and profile["dbname"] == "db"
    # An empty default: libpq then uses ~/.pgpass or needs no password.
    assert profile["password"] == "{{ env_var('COSMOS_CONN_POSTGRES_PASSWORD', '') }}"
    assert "COSMOS_CONN_POSTGRES_PASSWORD" not in mapping.env_vars  # no CosmosValueError
    assert "mock" not in profile_yaml


def test_profile_with_a_password_and_libpq_extras(dag, monkeypatch) -> None:
    mapping = _mapping_for(
        dag,
        "postgresql://etl:s3cr%40t@db.example:6543/retail"
        "?sslmode=require&connect_timeout=7&options=-c%20statement_timeout%3D600000",
        monkeypatch,
    )
    profile_yaml = mapping.get_profile_file_contents("retail", "airflow")
    assert "s3cr@t" not in profile_yaml  # the secret is an env var of the dbt process only
    profile = mapping.profile
    assert profile["port"] == 6543 and profile["sslmode"] == "require"
    assert profile["connect_timeout"] == 7  # dbt passes its own (10) otherwise
    env = mapping.env_vars
    assert env["COSMOS_CONN_POSTGRES_PASSWORD"] == "s3cr@t"
    assert env["PGSSLMODE"] == "require"
    assert env["PGOPTIONS"] == "-c statement_timeout=600000"  # libpq reads it for dbt


def test_a_missing_warehouse_connection_fails_the_dbt_task_without_retries(dag, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE", raising=False)
    mapping = dag.get_task(build_task("f_sales")).profile_config.profile_mapping
    fresh = type(mapping)(conn_id="warehouse_not_defined_anywhere")
    with pytest.raises(AirflowFailException, match="warehouse_not_defined_anywhere"):
        fresh.get_profile_file_contents("retail", "airflow")


def test_parse_needs_no_network_database_connection_or_variable(dbt_manifest, monkeypatch) -> None:
    """Top-level code does no I/O: parsing works with every outside service unreachable."""
    from airflow.sdk import BaseHook, Variable

    def refuse(*args, **kwargs):
        raise AssertionError("the DAG file reached out at parse time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(BaseHook, "get_connection", refuse)
    monkeypatch.setattr(Variable, "get", refuse)
    monkeypatch.setenv("PGHOST", "unreachable.invalid")
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_REPORT_API", raising=False)
    import psycopg2

    monkeypatch.setattr(psycopg2, "connect", refuse)
    bag = parse_dagbag()
    assert bag.import_errors == {}
    assert DAG_ID in bag.dags and "retention_report" in bag.dags


def test_parse_takes_under_a_second(dagbag) -> None:
    # The first parse of a process also loads plugins and providers once; the
    # dag-processor has those loaded, so time a parse after that.
    started = time.perf_counter()
    bag = parse_dagbag()
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert elapsed < 1.0, f"parsing dags/ took {elapsed:.2f}s"


@pytest.mark.parametrize(
    ("logical_date", "day", "builds_week"),
    [
        (datetime(2024, 10, 7, 3, tzinfo=UTC), "2024-10-06", True),  # Monday run
        (datetime(2024, 10, 8, 3, tzinfo=UTC), "2024-10-07", False),
        (datetime(2025, 1, 6, 3, tzinfo=UTC), "2025-01-05", True),  # 2025-W01 from 2024-12-30
    ],
)
def test_scheduled_runs_resolve_their_day_and_week(logical_date, day, builds_week) -> None:
    from ingestion.dates import resolve_run_dates

    dates = resolve_run_dates(logical_date=logical_date, run_after=logical_date).as_xcom()
    assert dates["day"] == day
    assert dates["build_week"] is builds_week
    if builds_week:
        assert dates["week_end"] == day


def test_every_python_task_fails_fast_on_permanent_errors(dag) -> None:
    """The fail-fast decorator wraps each Python task body (tests/dags/test_sales_mart_support
    checks what it does)."""
    from sales_mart_support.failures import fail_fast

    for task_id in (
        "resolve_run_dates",
        "prepare_staging",
        "generate_report",
        "wait_for_report",
        "load_day",
        "plan_rebuild",
        "check_weeks_complete",
    ):
        code = dag.get_task(task_id).python_callable.__code__
        assert (code.co_filename, code.co_name) == (fail_fast.__code__.co_filename, "wrapper")

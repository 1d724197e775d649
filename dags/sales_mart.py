"""
### sales_mart: daily sales mart, and the weekly retention mart on Mondays

Each run loads **day D = the UTC day before the run's trigger time** (the run's logical
date, or `run_after` for a manual run without one; never "now"):

1. `resolve_run_dates`: D, its ISO week, and whether this run builds the week.
2. `prepare_staging`: staging schema migrations (idempotent).
3. `generate_report` -> `wait_for_report` (sensor in *reschedule* mode, deadline 2 h).
4. `load_day`: downloads D's increment into a temporary folder of the task and replaces
   D's rows in staging in one transaction (a line a newer batch corrected is kept); when
   the API answers NOT FOUND nothing is loaded and the day is recorded in
   `staging.load_audit`. One idempotent task: no file outlives it, no worker needs
   another's disk.
5. `plan_rebuild`: D, plus every day D's increment moved lines out of (a correction), and
   the ISO weeks to rebuild: D's when D is a Sunday (or on request), and each complete or
   already built week a correction touched (`ingestion.pipeline.rebuild_plan`).
6. `build_sales_mart` (Cosmos): the staging views, the dimensions and `f_sales` for the
   planned days (`RETAIL_DAY=D1,D2..`, read like `--vars {day: ...}`): one task per
   model, `<model>_model_build`, a `dbt build` of the model and then its tests (a
   failing staging test stops the marts).
7. `has_weeks_to_build` (short-circuit): when the plan has weeks, `build_retention_mart`
   (Cosmos) rebuilds `f_customer_retention` for them (`RETAIL_WEEK_START=Mondays`);
   otherwise the retention group is skipped. `end` runs either way.

The dbt tasks run dbt in the task's own process (Cosmos's `dbtRunner` invocation), so a
daily run costs little more than a plain `dbt build` of the same selections;
`SALES_MART_DBT_MODE=build-subprocess` runs the `dbt` executable instead (README, Airflow).

**Rebuild a day or a week on demand** (Airflow UI: *Trigger DAG* with params, or
`airflow dags trigger sales_mart --conf '{"day": "2024-10-06"}'`):

- `day` (`YYYY-MM-DD`): reload and rebuild that day instead of the one before the trigger
  time. A Sunday also rebuilds its week's retention.
- `rebuild_week` (`true`): also rebuild the retention of D's ISO week when D is not a
  Sunday. To rebuild only a week, pass its Sunday as `day`.

Every step is idempotent, so reruns and backfills in any order give the same marts
(`airflow backfill create --dag-id sales_mart --from-date ... --to-date ...`; the runs
are serialised by `max_active_runs=1`). `catchup` is off: missed days are backfilled
on purpose, not replayed by surprise after a pause.

Any day of the dbt calendar (2020-01-01..2030-12-31) can be run, by `airflow dags test`,
a trigger with `day` or a backfill: the DAG has no start_date, so no run is left without
tasks; a day outside the calendar fails `resolve_run_dates` at once.

Connections: `warehouse` (Postgres, password optional, libpq parameters in the extra;
Cosmos builds the dbt profile from it) and `report_api` (HTTP: host = base URL,
password = key, extra nickname/cohort), read through the providers' hooks inside the
tasks only (`PG*` / `REPORT_API_*` when undefined); no secret reaches XCom. Transient
faults are retried with backoff; bad input and bad configuration fail the task on its
first try. Failures are logged with the day and task; `SALES_MART_ALERT_WEBHOOK_CONN_ID`
(HttpNotifier) / `SALES_MART_ALERT_EMAIL` (SmtpNotifier) also notify.

The steps are `ingestion`'s (no Airflow in it, also run by `python -m ingestion`); what
only Airflow needs (connections, fail-fast, alerts, XCom values) is in
`dags/sales_mart_support/`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    CronTriggerTimetable,
    Param,
    PokeReturnValue,
    TriggerRule,
    chain,
    dag,
    get_current_context,
    task,
)
from cosmos import (
    DbtTaskGroup,
    ExecutionConfig,
    InvocationMode,
    LoadMode,
    ProfileConfig,
    ProjectConfig,
    RenderConfig,
    TestBehavior,
    TestIndirectSelection,
)

from sales_mart_support.alerts import ALERT_MACROS, failure_callbacks
from sales_mart_support.connections import WAREHOUSE_CONN_ID, WarehouseProfileMapping

DAG_ID = "sales_mart"
DBT_PROJECT_DIR = Path(
    os.environ.get("DBT_PROJECT_DIR", Path(__file__).resolve().parent.parent / "dbt_project")
)
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"

# dbt selections: named selectors of dbt_project/selectors.yml, which the CLI builds use
# too (ingestion.dbt). The sales group is every staging view and the dimensions and
# f_sales with everything they read; the retention group is f_customer_retention with
# whatever it needs that the sales group has not built. Cosmos reads them from the
# manifest's `selectors` (dbt parse writes them there).
SALES_SELECTOR = "sales_mart"
RETENTION_SELECTOR = "retention_mart"

RUN_DATES = "resolve_run_dates"
PLAN = "plan_rebuild"
# The days and weeks the run rebuilds: D (and its week on a Sunday) plus every day a
# correction in D's increment moved lines out of, and those days' complete weeks.
# They reach dbt as RETAIL_DAY / RETAIL_WEEK_START (ingestion.dbt.PERIOD_ENV), which the
# models read like the `day` / `week_start` vars: a new --vars value would make each run's
# first dbt task re-parse the whole project.
DAY_TEMPLATE = "{{ ti.xcom_pull(task_ids='" + PLAN + "', key='day_var') }}"
WEEK_START_TEMPLATE = "{{ ti.xcom_pull(task_ids='" + PLAN + "', key='week_start_var') }}"


default_args = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(minutes=30),
    # a log line, plus Airflow's HTTP / SMTP notifiers when configured (alerts.py)
    "on_failure_callback": failure_callbacks(),
}


profile_config = ProfileConfig(
    profile_name="retail",
    target_name="airflow",
    profile_mapping=WarehouseProfileMapping(
        conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": "mart"}
    ),
)
project_config = ProjectConfig(
    manifest_path=DBT_MANIFEST,
    project_name="retail",
    install_dbt_deps=False,  # no hub packages; `dbt deps` cannot reach the hub anyway
)

# How each Cosmos task runs dbt (benchmarks/airflow_run.py, docs/benchmarks.md):
# - "build" (default): one `dbt build` task per model (the model, then its tests, in one
#   invocation), dbt invoked in the task's own process with dbtRunner (stated, not left
#   to Cosmos's run-time discovery): half the tasks of "after-each".
# - "build-subprocess": the same tasks, each running the `dbt` executable; the fallback
#   if dbt in the task process ever conflicts with Airflow's (see README).
# - "after-each": a `dbt run` task then a `dbt test` task per model, dbtRunner (the
#   set-up before B6: Cosmos chose dbtRunner at run time since dbt-core is installed);
#   "after-each-subprocess": the same with `dbt` executables.
DBT_MODES = {
    "build": (TestBehavior.BUILD, InvocationMode.DBT_RUNNER),
    "build-subprocess": (TestBehavior.BUILD, InvocationMode.SUBPROCESS),
    "after-each": (TestBehavior.AFTER_EACH, InvocationMode.DBT_RUNNER),
    "after-each-subprocess": (TestBehavior.AFTER_EACH, InvocationMode.SUBPROCESS),
}
DBT_MODE = os.environ.get("SALES_MART_DBT_MODE", "build")
if DBT_MODE not in DBT_MODES:
    raise ValueError(f"SALES_MART_DBT_MODE={DBT_MODE!r}: choose one of {sorted(DBT_MODES)}")
TEST_BEHAVIOR, INVOCATION_MODE = DBT_MODES[DBT_MODE]

execution_config = ExecutionConfig(
    dbt_project_path=DBT_PROJECT_DIR,
    invocation_mode=INVOCATION_MODE,
    # A model's tests are those whose other parents are upstream of it (as a plain
    # `dbt build` selects them): relationships to the dimensions run with f_sales, but
    # the weekly reconciliation against f_customer_retention waits for the retention group.
    test_indirect_selection=TestIndirectSelection.BUILDABLE,
)


def _render_config(selector: str) -> RenderConfig:
    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        selector=selector,
        test_behavior=TEST_BEHAVIOR,
        # Each dbt task announces the models it built as Airflow assets (OpenLineage's
        # reading of dbt's artifacts, through an AssetAlias per task): `retention_report`
        # is scheduled on the retention build's (sales_mart_support/assets.py).
        emit_datasets=True,
    )


@dag(
    dag_id=DAG_ID,
    # No start_date: Airflow creates no task instances for a run whose logical date is
    # before it, so such a run "succeeded" doing nothing. Without one every run (dags
    # test, triggers, backfills of any year) gets its tasks and resolve_run_dates decides:
    # a day outside the dbt calendar fails there, loudly. run_immediately=True keeps the
    # first scheduled run what the past start_date gave with catchup=False: the latest
    # 03:00 already passed when the DAG is first unpaused.
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC", run_immediately=True),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=default_args,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day to rebuild (YYYY-MM-DD)",
            description="Empty: the day before the trigger time. A Sunday also rebuilds its week.",
        ),
        "rebuild_week": Param(
            False,
            type="boolean",
            title="Rebuild the retention of the day's ISO week",
            description="Only needed when the day is not a Sunday.",
        ),
    },
    tags=["sales", "retention", "dbt", "cosmos"],
    doc_md=__doc__,
    user_defined_macros=ALERT_MACROS,  # the alert notifiers' failure_summary
)
def sales_mart() -> None:
    @task(task_id=RUN_DATES, multiple_outputs=True)
    def resolve_run_dates() -> dict[str, Any]:
        """D and its ISO week from the run's own dates (or the `day` param)."""
        from ingestion.dates import resolve_run_dates as resolve
        from sales_mart_support.failures import fail_fast_on_permanent_errors

        context = get_current_context()
        dag_run = context["dag_run"]
        params = context["params"]
        with fail_fast_on_permanent_errors():
            dates = resolve(
                logical_date=dag_run.logical_date,
                run_after=dag_run.run_after,
                day_param=params.get("day"),
                rebuild_week_param=bool(params.get("rebuild_week")),
            )
        print(dates.reason)
        return dates.as_xcom()

    @task
    def prepare_staging() -> None:
        """Create or upgrade the staging schema (versioned migrations, idempotent)."""
        from ingestion.migrate import migrate
        from sales_mart_support.connections import warehouse_connection
        from sales_mart_support.failures import fail_fast_on_permanent_errors

        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            migrate(conn)

    @task
    def generate_report() -> str:
        """Ask the report API for a report; the task id goes to XCom."""
        from ingestion.client import ReportApiClient
        from sales_mart_support.connections import report_api_settings
        from sales_mart_support.failures import fail_fast_on_permanent_errors

        with fail_fast_on_permanent_errors(), ReportApiClient(report_api_settings()) as client:
            return client.generate_report()

    @task.sensor(
        poke_interval=60,
        timeout=timedelta(hours=2),
        mode="reschedule",
        execution_timeout=timedelta(minutes=5),
    )
    def wait_for_report(report_task_id: str) -> PokeReturnValue:
        """Poll the report; between pokes the worker slot is released (reschedule)."""
        from ingestion.client import ReportApiClient, ReportTimeout
        from sales_mart_support.connections import report_api_settings
        from sales_mart_support.failures import fail_fast_on_permanent_errors
        from sales_mart_support.xcom import report_to_xcom

        with fail_fast_on_permanent_errors(), ReportApiClient(report_api_settings()) as client:
            try:
                # A short burst of polls first: reports are often ready in seconds.
                report = client.wait_for_report(report_task_id, deadline_s=15, max_delay_s=4)
            except ReportTimeout:
                return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=report_to_xcom(report))

    @task
    def load_day(report: dict[str, Any], day: str) -> dict[str, Any]:
        """Fetch D's increment (temporary folder) and load it; NOT FOUND is recorded."""
        from ingestion.dates import parse_day
        from ingestion.pipeline import load_day as fetch_and_load
        from sales_mart_support.connections import report_api_settings, warehouse_connection
        from sales_mart_support.failures import fail_fast_on_permanent_errors
        from sales_mart_support.xcom import day_load_to_xcom

        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            summary = fetch_and_load(
                conn, report_api_settings(), str(report["report_id"]), parse_day(day)
            )
        if summary is None:
            print(
                f"The report API has no increment for {day} (NOT FOUND): nothing is loaded "
                "into staging, the day is recorded in staging.load_audit. The dbt build "
                "still runs so the marts reflect staging."
            )
        else:
            print(summary.format())
        return day_load_to_xcom(day, summary)

    @task(task_id=PLAN, multiple_outputs=True)
    def plan_rebuild(day: str, build_week: bool, loaded: dict[str, Any]) -> dict[str, Any]:
        """D, the days D's load moved lines out of, and the complete weeks they touch."""
        from ingestion.dates import parse_day
        from ingestion.pipeline import rebuild_plan
        from sales_mart_support.connections import warehouse_connection
        from sales_mart_support.failures import fail_fast_on_permanent_errors

        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            run_day = parse_day(day)
            plan = rebuild_plan(
                conn,
                run_day,
                run_day,
                [parse_day(changed) for changed in loaded["rebuild_days"]],
                also_week_of=run_day if build_week else None,
            )
        planned = plan.as_xcom()
        print(f"f_sales days: {planned['day_var']}; retention weeks: {planned['week_start_var']}")
        return planned

    build_sales_mart = DbtTaskGroup(
        group_id="build_sales_mart",
        project_config=project_config,
        profile_config=profile_config,
        execution_config=execution_config,
        render_config=_render_config(SALES_SELECTOR),
        operator_args={"env": {"RETAIL_DAY": DAY_TEMPLATE}},
    )

    # False skips only the retention group (its first tasks); `end` keeps its trigger rule.
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def has_weeks_to_build(build_week: bool, reason: str) -> bool:
        """The Monday run (D = Sunday) builds the week D closes, and any week to correct."""
        print(reason)
        return build_week

    build_retention_mart = DbtTaskGroup(
        group_id="build_retention_mart",
        project_config=project_config,
        profile_config=profile_config,
        execution_config=execution_config,
        render_config=_render_config(RETENTION_SELECTOR),
        operator_args={"env": {"RETAIL_WEEK_START": WEEK_START_TEMPLATE}},
    )
    end = EmptyOperator(task_id="end", trigger_rule=TriggerRule.NONE_FAILED)

    dates = resolve_run_dates()
    report_task_id = generate_report()
    chain(dates, prepare_staging(), report_task_id)
    loaded = load_day(wait_for_report(report_task_id), dates["day"])
    plan = plan_rebuild(dates["day"], dates["build_week"], loaded)
    plan >> build_sales_mart
    weeks = has_weeks_to_build(plan["build_week"], dates["reason"])
    chain(build_sales_mart, weeks, build_retention_mart, end)


sales_mart()

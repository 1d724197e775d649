"""
### sales_mart: daily sales mart, and the weekly retention mart on Mondays

Each run loads **day D = the UTC day before the run's trigger time** (the run's logical
date, or `run_after` for a manual run without one; never "now"):

1. `resolve_run_dates`: D, its ISO week, and whether this run builds the week.
2. `prepare_staging`: staging schema migrations (idempotent).
3. `generate_report` -> `wait_for_report` (sensor in *reschedule* mode, deadline 2 h) ->
   `fetch_increment` downloads D's increment files.
4. `branch_on_increment`: NOT FOUND -> `increment_not_found` (nothing is loaded; the day
   is recorded in `staging.load_audit`); otherwise `load_staging` replaces D's rows in
   staging in one transaction (a line a newer batch corrected is kept).
5. `plan_rebuild`: D, plus every day D's increment moved lines out of (a correction), and
   the ISO weeks to rebuild: D's when D is a Sunday (or on request), and each complete or
   already built week a correction touched (`ingestion.pipeline.rebuild_plan`).
6. `build_sales_mart` (Cosmos): the staging views, the dimensions and `f_sales` for the
   planned days (`--vars {day: "D1,D2.."}`): one task per model, `<model>_model_build`,
   a `dbt build` of the model and then its tests (a failing staging test stops the marts).
7. `branch_on_week_end`: when the plan has weeks, `build_retention_mart` (Cosmos) rebuilds
   `f_customer_retention` for them (`--vars {week_start: Mondays}`); otherwise
   `no_retention_today`. -> `end`.

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
password = key, extra nickname/cohort). They are read inside the tasks only; no secret
reaches XCom. Transient faults are retried with backoff; bad input and bad configuration
fail the task on its first try. Failures are logged with the day and task; set
`SALES_MART_ALERT_WEBHOOK_CONN_ID` / `SALES_MART_ALERT_EMAIL` to notify.
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
from cosmos.profiles import PostgresUserPasswordProfileMapping

DAG_ID = "sales_mart"
DBT_PROJECT_DIR = Path(
    os.environ.get("DBT_PROJECT_DIR", Path(__file__).resolve().parent.parent / "dbt_project")
)
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"

# dbt selections. The sales group is every staging view (a terminal's `dbt test` expects
# them all) and the dimensions and f_sales with everything they read; the retention
# group is f_customer_retention with whatever it needs that the sales group has not built.
SALES_MODELS = [
    "path:models/staging",
    "+d_calendar",
    "+d_city",
    "+d_customer",
    "+d_item",
    "+f_sales",
]
RETENTION_MODELS = ["+f_customer_retention"]

RUN_DATES = "resolve_run_dates"
PLAN = "plan_rebuild"
# The days and weeks the run rebuilds: D (and its week on a Sunday) plus every day a
# correction in D's increment moved lines out of, and those days' complete weeks.
DAY_TEMPLATE = "{{ ti.xcom_pull(task_ids='" + PLAN + "', key='day_var') }}"
WEEK_START_TEMPLATE = "{{ ti.xcom_pull(task_ids='" + PLAN + "', key='week_start_var') }}"


def _notify_failure(context: Any) -> None:
    """on_failure_callback: summary in the log, webhook/e-mail when configured."""
    from ingestion.airflow_glue import notify_failure

    notify_failure(context)


default_args = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": _notify_failure,
}


class WarehouseProfileMapping(PostgresUserPasswordProfileMapping):
    """Cosmos's Postgres mapping with the password optional and libpq extras passed on.

    ``PostgresUserPasswordProfileMapping`` refuses a connection without a password, so
    trust, peer (a unix-socket directory as host) and ``~/.pgpass`` set-ups failed every
    dbt task. Here the profile's password is ``env_var(..., '')``: an empty password is
    "none" to libpq, which then uses the password file or needs none. The secret stays an
    environment variable of the dbt process, never a profile value. Extras that are libpq
    parameters (``sslmode``, ``connect_timeout``, ``options``...) reach dbt's connection:
    ``connect_timeout`` in the profile (dbt always passes its own), the rest as ``PG*``
    variables, which libpq reads for every parameter dbt does not set.
    """

    required_fields = ["host", "user", "dbname"]

    @property
    def conn(self) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

        try:
            return super().conn
        except AirflowNotFoundException as error:  # no retry defines a connection
            raise AirflowFailException(
                f"connection {self.conn_id!r} is not defined: dbt cannot reach the warehouse"
            ) from error

    @property
    def profile(self) -> dict[str, Any]:
        profile = super().profile
        if not profile.get("user"):  # libpq's default, as for peer authentication
            import getpass

            profile["user"] = getpass.getuser()
        profile["password"] = "{{ env_var('" + self.get_env_var_name("password") + "', '') }}"
        timeout = self.conn.extra_dejson.get("connect_timeout")
        if timeout not in (None, ""):
            profile["connect_timeout"] = int(timeout)
        return profile

    @property
    def env_vars(self) -> dict[str, str]:
        from ingestion.airflow_glue import LIBPQ_EXTRA_VARIABLES, libpq_settings_from_connection

        settings = libpq_settings_from_connection(self.conn)
        env = {name: settings[name] for name in LIBPQ_EXTRA_VARIABLES.values() if name in settings}
        password = self.get_dbt_value("password")
        if password:
            env[self.get_env_var_name("password")] = str(password)
        if self.disable_event_tracking:
            env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")
        return env


profile_config = ProfileConfig(
    profile_name="retail",
    target_name="airflow",
    profile_mapping=WarehouseProfileMapping(conn_id="warehouse", profile_args={"schema": "mart"}),
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


def _render_config(select: list[str], exclude: list[str] | None = None) -> RenderConfig:
    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        select=select,
        exclude=exclude or [],
        test_behavior=TEST_BEHAVIOR,
        # No other DAG consumes the marts as Airflow assets.
        emit_datasets=False,
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
)
def sales_mart() -> None:
    @task(task_id=RUN_DATES, multiple_outputs=True)
    def resolve_run_dates() -> dict[str, Any]:
        """D and its ISO week from the run's own dates (or the `day` param)."""
        from ingestion.airflow_glue import fail_fast_on_permanent_errors
        from ingestion.airflow_glue import resolve_run_dates as resolve

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
        from ingestion.airflow_glue import fail_fast_on_permanent_errors, warehouse_connection
        from ingestion.migrate import migrate

        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            migrate(conn)

    @task
    def generate_report() -> str:
        """Ask the report API for a report; the task id goes to XCom."""
        from ingestion.airflow_glue import fail_fast_on_permanent_errors, report_api_settings
        from ingestion.client import ReportApiClient

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
        from ingestion.airflow_glue import fail_fast_on_permanent_errors, report_api_settings
        from ingestion.client import ReportApiClient, ReportTimeout

        with fail_fast_on_permanent_errors(), ReportApiClient(report_api_settings()) as client:
            try:
                # A short burst of polls first: reports are often ready in seconds.
                report = client.wait_for_report(report_task_id, deadline_s=15, max_delay_s=4)
            except ReportTimeout:
                return PokeReturnValue(is_done=False)
        # Ids and days only: file URLs may be pre-signed (credentials) and stay out of XCom.
        return PokeReturnValue(
            is_done=True,
            xcom_value={
                "report_id": report.report_id,
                "start_day": report.start_day.isoformat(),
                "end_date": report.end_date.isoformat(),
            },
        )

    @task
    def fetch_increment(report: dict[str, Any], day: str) -> dict[str, Any] | None:
        """Download D's increment files; None when the API answers NOT FOUND."""
        from ingestion.airflow_glue import (
            fail_fast_on_permanent_errors,
            increment_workdir,
            report_api_settings,
        )
        from ingestion.dates import parse_day
        from ingestion.pipeline import fetch_increment as fetch

        with fail_fast_on_permanent_errors():
            workdir = increment_workdir(DAG_ID, day)
            return fetch(report_api_settings(), report["report_id"], parse_day(day), workdir)

    @task.branch
    def branch_on_increment(fetched: dict[str, Any] | None, day: str) -> str:
        """NOT FOUND skips the staging load; the marts are still refilled from staging."""
        if fetched is None:
            print(
                f"The report API has no increment for {day} (NOT FOUND): nothing is loaded "
                "into staging. The dbt build still runs so the marts reflect staging."
            )
            return "increment_not_found"
        print(f"Increment {fetched.get('increment_id')} found for {day}: loading staging.")
        return "load_staging"

    @task
    def load_staging(fetched: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
        """Replace D's rows in staging with the increment, in one transaction."""
        from ingestion.airflow_glue import (
            fail_fast_on_permanent_errors,
            files_present,
            increment_workdir,
            report_api_settings,
            summary_to_xcom,
            warehouse_connection,
        )
        from ingestion.dates import parse_day
        from ingestion.pipeline import fetch_increment as fetch
        from ingestion.pipeline import load_fetched_increment

        with fail_fast_on_permanent_errors():
            if not files_present(fetched):
                # Another worker fetched them (no shared volume) or they were cleaned up.
                day = str(fetched["day"])
                print(f"increment files for {day} are not on this worker; fetching them again")
                fetched = fetch(
                    report_api_settings(),
                    report["report_id"],
                    parse_day(day),
                    increment_workdir(DAG_ID, day),
                )
                if fetched is None:
                    raise RuntimeError(f"the increment for {day} disappeared from the report API")
            with warehouse_connection() as conn:
                summary = load_fetched_increment(conn, fetched)
        print(summary.format())
        return {
            **summary_to_xcom(summary),
            "rebuild_days": [day.isoformat() for day in summary.rebuild_days],
        }

    @task
    def increment_not_found(report: dict[str, Any], day: str) -> None:
        """Record the NOT FOUND day in staging.load_audit; staging itself is unchanged."""
        from ingestion.airflow_glue import fail_fast_on_permanent_errors, warehouse_connection
        from ingestion.dates import parse_day
        from ingestion.loader import record_not_found

        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            record_not_found(conn, parse_day(day), str(report["report_id"]))

    @task(task_id=PLAN, multiple_outputs=True, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def plan_rebuild(day: str, build_week: bool) -> dict[str, Any]:
        """D, the days D's load moved lines out of, and the complete weeks they touch."""
        from ingestion.airflow_glue import fail_fast_on_permanent_errors, warehouse_connection
        from ingestion.dates import parse_day
        from ingestion.pipeline import rebuild_plan

        # None when the load was skipped (NOT FOUND day)
        loaded = get_current_context()["ti"].xcom_pull(task_ids="load_staging") or {}
        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            run_day = parse_day(day)
            plan = rebuild_plan(
                conn,
                run_day,
                run_day,
                [parse_day(changed) for changed in loaded.get("rebuild_days", [])],
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
        render_config=_render_config(SALES_MODELS),
        operator_args={"vars": {"day": DAY_TEMPLATE}},
    )

    @task.branch
    def branch_on_week_end(build_week: bool, reason: str) -> str:
        """The Monday run (D = Sunday) builds the week D closes, and any week to correct."""
        print(reason)
        return "build_retention_mart" if build_week else "no_retention_today"

    build_retention_mart = DbtTaskGroup(
        group_id="build_retention_mart",
        project_config=project_config,
        profile_config=profile_config,
        execution_config=execution_config,
        render_config=_render_config(RETENTION_MODELS, exclude=SALES_MODELS),
        operator_args={"vars": {"week_start": WEEK_START_TEMPLATE}},
    )
    no_retention_today = EmptyOperator(task_id="no_retention_today")
    end = EmptyOperator(task_id="end", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)

    dates = resolve_run_dates()
    report_task_id = generate_report()
    chain(dates, prepare_staging(), report_task_id)
    report = wait_for_report(report_task_id)
    fetched = fetch_increment(report, dates["day"])
    loaded = load_staging(fetched, report)
    not_found = increment_not_found(report, dates["day"])
    branch_on_increment(fetched, dates["day"]) >> [loaded, not_found]
    plan = plan_rebuild(dates["day"], dates["build_week"])
    [loaded, not_found] >> plan >> build_sales_mart
    week_branch = branch_on_week_end(plan["build_week"], dates["reason"])
    build_sales_mart >> week_branch >> [build_retention_mart, no_retention_today] >> end


sales_mart()

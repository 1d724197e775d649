"""
### sales_mart: the daily sales mart, and the weekly retention mart on Mondays

Each run loads **day D**: the UTC day before the run's logical date (or `run_after` for
a manual run without one), or the `day` param. D's increment is fetched and loaded into
staging in one task, then the dbt groups refill `f_sales` and the dimensions for D and
for every day D's corrections moved lines out of. When D is a Sunday (or `rebuild_week`
is set), `f_customer_retention` is rebuilt for D's ISO week, provided each of its seven
days is loaded or NOT FOUND; otherwise `check_weeks_complete` fails naming the missing
days (after the complete weeks are built), and the run that later loads the last of them
builds the week. `publish_retention` records the `mart.f_customer_retention` asset event
that starts `retention_report`.

Trigger with `{"day": "2024-10-06"}` to rebuild any day of the dbt calendar; reruns and
backfills in any order give the same marts. Connections: `warehouse` (Postgres) and
`report_api` (HTTP: host = base URL, password = key, extra nickname/cohort). See
docs/airflow.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    Asset,
    CronTriggerTimetable,
    Param,
    PokeReturnValue,
    TriggerRule,
    chain,
    dag,
    get_current_context,
    task,
)

from ingestion.project import (
    PERIOD_ENV,
    RETENTION_MART_ASSET,
    RETENTION_SELECTOR,
    SALES_MART_DAG_ID,
    SALES_SELECTOR,
)
from sales_mart_support.alerts import ALERT_MACROS, default_args
from sales_mart_support.cosmos import dbt_group
from sales_mart_support.failures import fail_fast

PLAN = "plan_rebuild"


def plan_template(key: str) -> str:
    """The rebuild plan's dbt variable, rendered into the dbt tasks' environment."""
    return "{{ ti.xcom_pull(task_ids='" + PLAN + "', key='" + key + "') }}"


@dag(
    dag_id=SALES_MART_DAG_ID,
    # unpausing waits for the next 03:00 UTC instead of running a past day first (Airflow's
    # default runs the last one when unpaused within 2.4 h of it)
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,  # missed days are backfilled on purpose, not replayed after a pause
    max_active_runs=1,  # days one after the other: the runs share the marts
    dagrun_timeout=timedelta(hours=6),
    default_args=default_args(),
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day (YYYY-MM-DD)",
            description="Empty: the day before the trigger time.",
        ),
        "rebuild_week": Param(
            False,
            type="boolean",
            title="Also rebuild the day's ISO week",
            description="A Sunday rebuilds its week anyway.",
        ),
    },  # fmt: skip
    tags=["sales", "retention", "dbt", "cosmos"],
    doc_md=__doc__,
    user_defined_macros=ALERT_MACROS,
)
def sales_mart() -> None:
    @task(multiple_outputs=True)
    @fail_fast
    def resolve_run_dates() -> dict[str, Any]:
        """D and its ISO week from the run's own dates (or the `day` param), never "now"."""
        from ingestion.dates import resolve_run_dates as resolve

        context = get_current_context()
        run, params = context["dag_run"], context["params"]
        dates = resolve(logical_date=run.logical_date, run_after=run.run_after,
                        day_param=params.get("day"),
                        rebuild_week_param=bool(params.get("rebuild_week")))  # fmt: skip
        print(dates.reason)
        return dates.as_xcom()

    @task
    @fail_fast
    def prepare_staging() -> None:
        """Staging migrations (idempotent)."""
        from ingestion.migrate import migrate
        from sales_mart_support.connections import warehouse_connection

        with warehouse_connection() as conn:
            migrate(conn)

    @task
    @fail_fast
    def generate_report() -> str:
        from ingestion.client import ReportApiClient
        from sales_mart_support.connections import report_api_settings

        with ReportApiClient(report_api_settings()) as client:
            return client.generate_report()

    @task.sensor(poke_interval=60, timeout=timedelta(hours=2), mode="reschedule",
                 execution_timeout=timedelta(minutes=5))  # fmt: skip
    @fail_fast
    def wait_for_report(report_task_id: str) -> PokeReturnValue:
        """Poll the report; between pokes the worker slot is free (reschedule)."""
        from ingestion.client import ReportApiClient, ReportTimeout
        from sales_mart_support.connections import report_api_settings

        with ReportApiClient(report_api_settings()) as client:
            try:  # a short burst of polls first: reports are often ready in seconds
                report = client.wait_for_report(report_task_id, deadline_s=15, max_delay_s=4)
            except ReportTimeout:
                return PokeReturnValue(is_done=False)
        ready = {"report_id": str(report.report_id), "start_day": report.start_day.isoformat()}
        return PokeReturnValue(is_done=True, xcom_value=ready)

    @task
    @fail_fast
    def load_day(report: dict[str, str], day: str) -> list[str]:
        """Fetch D's increment into a temporary folder and load it (NOT FOUND: recorded).
        Returns the days whose marts changed: D and days a correction moved lines out of."""
        from ingestion.dates import parse_day
        from ingestion.pipeline import load_day as fetch_and_load
        from sales_mart_support.connections import report_api_settings, warehouse_connection

        with warehouse_connection() as conn:
            loaded = fetch_and_load(
                conn, report_api_settings(), report["report_id"], parse_day(day)
            )
        print(loaded.format() if loaded else f"{day}: no increment (NOT FOUND), recorded")
        return [changed.isoformat() for changed in (loaded.rebuild_days if loaded else [])]

    @task(task_id=PLAN, multiple_outputs=True)
    @fail_fast
    def plan_rebuild(
        day: str, build_week: bool, changed: list[str], report: dict[str, str]
    ) -> dict[str, Any]:
        """D and the days D's load changed; the complete weeks they touch."""
        from ingestion.dates import parse_day
        from ingestion.pipeline import rebuild_plan
        from sales_mart_support.connections import warehouse_connection

        run_day = parse_day(day)
        with warehouse_connection() as conn:
            plan = rebuild_plan(
                conn, run_day, run_day, map(parse_day, changed),
                source_start=parse_day(report["start_day"]),
                also_week_of=run_day if build_week else None,
            )  # fmt: skip
        planned = plan.as_xcom()
        print(f"f_sales days: {planned['day_var']}; weeks: {planned['week_start_var']}")
        return planned

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def has_weeks_to_build(build_week: bool) -> bool:
        """Complete weeks to build: D a Sunday (or on request), weeks a correction touched."""
        return build_week

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    @fail_fast
    def check_weeks_complete(incomplete: str | None) -> None:
        """No partial week (SPEC section 4): fail naming the days a requested week misses,
        after the complete weeks are built; the run that loads the last one builds it."""
        if incomplete:
            from ingestion.pipeline import IncompleteWeekError

            raise IncompleteWeekError(f"f_customer_retention {incomplete}")

    dates = resolve_run_dates()
    report_task_id = generate_report()
    chain(dates, prepare_staging(), report_task_id)
    report = wait_for_report(report_task_id)
    changed = load_day(report, dates["day"])
    plan = plan_rebuild(dates["day"], dates["build_week"], changed, report)
    sales = dbt_group("build_sales_mart", SALES_SELECTOR, {PERIOD_ENV["day"]: plan_template(
        "day_var")})  # fmt: skip
    retention = dbt_group("build_retention_mart", RETENTION_SELECTOR,
                          {PERIOD_ENV["week_start"]: plan_template("week_start_var")})  # fmt: skip
    publish = EmptyOperator(task_id="publish_retention", outlets=[Asset(RETENTION_MART_ASSET)])
    weeks = has_weeks_to_build(plan["build_week"])
    chain(plan, sales, weeks, retention, publish, check_weeks_complete(plan["incomplete"]))


sales_mart()

"""
### retention_report: charts of the weekly retention mart, after each build

Scheduled on the retention mart's asset: every `sales_mart` run whose retention group
builds `mart.f_customer_retention` (the Monday run, a week's rebuild, a correction)
emits an asset event (Cosmos, `emit_datasets`), and Airflow then starts this DAG. No
sensor, no polling; a run without a retention build (a weekday) starts nothing.

`render_report` reads the last `weeks` (param, default 8) built weeks of the mart
(`mart.f_customer_retention_weeks`) with pandas and writes, under
`$RETENTION_REPORT_DIR/<first week>_<last week>/`, the PNG charts (new vs returning
customers and their revenue, refunds, per item and in total, week over week) and
`retention.html`, one page with the charts embedded and the numbers as tables: it opens
offline. `RETENTION_REPORT_DIR` unset: `reports/` beside the dbt project (the repo root
in development). A mart with no built week yet fails the task at once, saying so.

Also by hand (Airflow UI *Trigger DAG*, `airflow dags trigger retention_report --conf
'{"weeks": 12}'`) and from a terminal: `make report` / `python -m ingestion report`,
the same function (`retention_report/`, no Airflow in it).

Connection: `warehouse` (as `sales_mart`; `PG*` when undefined).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task

from sales_mart_support.alerts import ALERT_MACROS, failure_callbacks
from sales_mart_support.assets import RETENTION_MART

DAG_ID = "retention_report"
DEFAULT_WEEKS = 8  # retention_report.DEFAULT_WEEKS (not imported here: pandas, matplotlib)
DBT_PROJECT_DIR = Path(
    os.environ.get("DBT_PROJECT_DIR", Path(__file__).resolve().parent.parent / "dbt_project")
)


def report_dir() -> Path:
    """``RETENTION_REPORT_DIR``, else ``reports/`` beside the dbt project."""
    configured = os.environ.get("RETENTION_REPORT_DIR")
    return Path(configured) if configured else DBT_PROJECT_DIR.parent / "reports"


default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=15),
    "on_failure_callback": failure_callbacks(),
}


@dag(
    dag_id=DAG_ID,
    schedule=[RETENTION_MART],
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=default_args,
    params={
        "weeks": Param(
            DEFAULT_WEEKS,
            type="integer",
            minimum=1,
            title="Weeks",
            description="How many of the last built weeks of f_customer_retention to report.",
        ),
    },
    tags=["retention", "report"],
    doc_md=__doc__,
    user_defined_macros=ALERT_MACROS,  # the alert notifiers' failure_summary
)
def retention_report() -> None:
    @task
    def render_report() -> None:
        """The last `weeks` built weeks as PNG charts and one HTML page."""
        from retention_report import NoWeeksBuilt
        from retention_report import render_report as render
        from sales_mart_support.connections import warehouse_connection
        from sales_mart_support.failures import fail_fast_on_permanent_errors

        context = get_current_context()
        weeks = int(context["params"]["weeks"])
        with fail_fast_on_permanent_errors(), warehouse_connection() as conn:
            try:
                path = render(conn, report_dir(), weeks=weeks)
            except NoWeeksBuilt as exc:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(str(exc)) from None
        print(f"retention report ({weeks} weeks at most): {path}")

    render_report()


retention_report()

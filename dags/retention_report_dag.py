"""
### retention_report: charts of the weekly retention mart, after each weekly build

Scheduled on the `mart.f_customer_retention` asset, which `sales_mart` publishes after
each build of the retention mart (the Monday run, a rebuilt week): no sensor, and a
weekday run starts nothing. Renders the last `weeks` built weeks as PNG charts and one
HTML page under `$RETENTION_REPORT_DIR/<first week>_<last week>/` (unset: `reports/`
beside the dbt project). Also by hand: *Trigger DAG* with `{"weeks": 12}`, or
`python -m retail_dev report` from a terminal. Connection: `warehouse`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, Param, dag, get_current_context, task

from ingestion.project import DBT_PROJECT_DIR, RETENTION_MART_ASSET, RETENTION_REPORT_DAG_ID
from sales_mart_support.alerts import ALERT_MACROS, default_args
from sales_mart_support.failures import fail_fast


@dag(
    dag_id=RETENTION_REPORT_DAG_ID,
    schedule=[Asset(RETENTION_MART_ASSET)],
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=default_args(retries=2, execution_timeout=timedelta(minutes=15)),
    params={
        "weeks": Param(
            8,
            type="integer",
            minimum=1,
            title="Weeks",
            description="How many of the last built weeks to report.",
        )
    },  # fmt: skip
    tags=["retention", "report"],
    doc_md=__doc__,
    user_defined_macros=ALERT_MACROS,
)
def retention_report() -> None:
    @task
    @fail_fast
    def render_report() -> None:
        """The last `weeks` built weeks as PNG charts and one HTML page."""
        from retention_report import render_report as render
        from sales_mart_support.connections import warehouse_connection

        weeks = int(get_current_context()["params"]["weeks"])
        folder = os.environ.get("RETENTION_REPORT_DIR") or DBT_PROJECT_DIR.parent / "reports"
        with warehouse_connection() as conn:
            path = render(conn, Path(folder), weeks=weeks)
        print(f"retention report ({weeks} weeks at most): {path}")

    render_report()


retention_report()

"""The names several places share: the dbt project, its selectors and period variables,
the DAG ids, the mart tables, the ISO week id and the calendar bounds.

The CLI, the DAGs, the plugin, deploy/, benchmarks/ and the tests import them from here;
the calendar bounds are read from ``dbt_project.yml``, the one place they are written.
"""

from __future__ import annotations

import os
from datetime import date
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The image installs the package elsewhere and sets DBT_PROJECT_DIR.
DBT_PROJECT_DIR = Path(os.environ.get("DBT_PROJECT_DIR") or REPO_ROOT / "dbt_project")

# Named selectors of dbt_project/selectors.yml (the CLI's builds and Cosmos's groups).
SALES_SELECTOR = "sales_mart"
RETENTION_SELECTOR = "retention_mart"
SALES_AND_RETENTION_SELECTOR = "sales_and_retention_marts"
# The narrowing dbt variables and the environment variables dbt reads them from when
# they are unset (a changed --vars makes dbt re-parse the project; these do not).
PERIOD_ENV = {"day": "RETAIL_DAY", "week_start": "RETAIL_WEEK_START"}

SALES_MART_DAG_ID = "sales_mart"
RETENTION_REPORT_DAG_ID = "retention_report"
# The Airflow asset sales_mart's weekly build publishes and retention_report is scheduled on.
RETENTION_MART_ASSET = "mart.f_customer_retention"

MART_TABLES = ("d_calendar", "d_city", "d_customer", "d_item", "f_sales", "f_customer_retention")


def iso_week_id(day: date) -> str:
    """The ISO week of ``day`` as PostgreSQL's ``to_char(d, 'IYYY-"W"IW')``: ``2024-W40``."""
    iso = day.isocalendar()
    return f"{iso.year:04d}-W{iso.week:02d}"


@cache
def calendar_bounds() -> tuple[date, date]:
    """The days ``d_calendar`` covers (vars ``calendar_start`` / ``calendar_end``)."""
    import yaml

    variables = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    return (
        date.fromisoformat(str(variables["calendar_start"])),
        date.fromisoformat(str(variables["calendar_end"])),
    )

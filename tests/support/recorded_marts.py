"""Marts built from the recorded course extracts, as ``python -m ingestion run`` builds them.

The local report API serves ``fixtures/course_api`` over real HTTP; ``pipeline.run``
loads the report and both increments into a database and dbt builds every mart. The
range 2024-09-08..2024-10-06 gives the built weeks 2024-W36..W40.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from ingestion.pipeline import RunSummary, run
from ingestion.warehouse import connection
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings

START, END = date(2024, 9, 8), date(2024, 10, 6)
WEEK_IDS = [f"2024-W{week}" for week in range(36, 41)]


@contextmanager
def libpq_environment(settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` (``PG*``, and any other variable) in this process's environment (dbt
    reads them), restored after."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_recorded_marts(settings: Mapping[str, str], fixtures_dir: Path) -> RunSummary:
    """Load the recorded extracts into the database ``settings`` name and build the marts."""
    config = LocalApiConfig.from_extracts(fixtures_dir, running_polls=1)
    with (
        LocalReportApi(config) as api,
        libpq_environment(settings),
        connection(settings) as conn,
    ):
        return run(conn, local_api_settings(api), START, END)

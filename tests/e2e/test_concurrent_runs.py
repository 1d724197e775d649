"""Two ``python -m ingestion run`` over overlapping ranges at once: the marts equal those
of the same runs one after the other (real processes, real PostgreSQL and dbt)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ingestion.project import REPO_ROOT
from local_report_api import LocalApiConfig, LocalReportApi
from support.mart_tables import query, snapshot

pytestmark = pytest.mark.slow

RANGES = (("2024-09-29", "2024-10-01"), ("2024-09-30", "2024-10-02"))


def _start(settings: dict[str, str], api: LocalReportApi, first: str, last: str):
    env = {
        **os.environ,
        **settings,
        "REPORT_API_URL": api.url,
        "REPORT_API_KEY": api.config.api_key,
        "REPORT_API_NICKNAME": api.config.nickname,
        "REPORT_API_COHORT": api.config.cohort,
        "DO_NOT_TRACK": "1",
    }
    command = [sys.executable, "-m", "ingestion", "run", "--start", first, "--end", last]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]


def test_overlapping_runs_at_once_equal_them_one_after_the_other(
    make_database, fixtures_dir
) -> None:
    with LocalReportApi(LocalApiConfig.from_extracts(fixtures_dir, running_polls=1)) as api:
        sequential = make_database()
        for first, last in RANGES:
            _finish(_start(sequential, api, first, last))

        concurrent = make_database()
        processes = [_start(concurrent, api, first, last) for first, last in RANGES]
        for process in processes:
            _finish(process)

    expected = snapshot(sequential)
    assert expected["f_sales"] and expected["f_customer_retention"]
    assert snapshot(concurrent) == expected
    weeks = "select period_start from mart.f_customer_retention_weeks order by 1"
    assert query(concurrent, weeks) == query(sequential, weeks)

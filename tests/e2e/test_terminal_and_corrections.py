"""A newcomer's session, end to end on the real CLI, PostgreSQL and dbt.

1. ``python -m retail_dev demo``, then the README's dbt commands from ``dbt_project/``
   exactly as shown (``dbt build``, ``dbt run``, ``dbt test``, ``dbt docs generate``
   with ``--profiles-dir .``): all pass.
2. ``python -m ingestion run`` against a report API whose increments correct earlier
   days (lines re-dated into another ISO week and reassigned): every mart equals the
   spec on the final staging, computed independently; rerunning an older range does not
   move the corrected lines back, and leaves every mart as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingestion.cli import main
from ingestion.dbt import DBT_PROJECT_DIR
from local_report_api import LocalApiConfig, LocalReportApi
from support.mart_expectations import expected_marts
from support.mart_tables import actual_marts, query

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).with_name("dbt")
# Increments re-sending lines of the day eight days earlier (synthetic.CORRECTION_LAG):
# 2024-10-01 corrects 2024-09-23 (the report, W39); 2024-10-08 corrects 2024-09-30 (W40).
CORRECTIONS = {date(2024, 10, 1): 3, date(2024, 10, 8): 2}


def _terminal_dbt(*args: str) -> subprocess.CompletedProcess[str]:
    """``dbt <args> --profiles-dir .`` from dbt_project/, as the README shows it."""
    return subprocess.run(
        [str(DBT), *args, "--profiles-dir", "."],
        cwd=DBT_PROJECT_DIR,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def fresh_warehouse(make_database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = make_database()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("REPORT_API_URL", "REPORT_API_KEY", "REPORT_API_NICKNAME", "REPORT_API_COHORT"):
        monkeypatch.delenv(name, raising=False)
    return settings


@pytest.mark.parametrize("command", [("build",), ("run",), ("test",), ("docs", "generate")])
def test_readme_dbt_commands_pass_right_after_the_demo(
    command: tuple[str, ...], demo_database: dict[str, str]
) -> None:
    result = _terminal_dbt(*command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def demo_database(make_database) -> Iterator[dict[str, str]]:
    """``demo`` as on the embedded default, on a test database: the local report API is
    given explicitly (``retail_dev`` starts it only for the embedded warehouse)."""
    from retail_dev.cli import local_api_settings
    from retail_dev.cli import main as dev_main

    settings = make_database()
    with pytest.MonkeyPatch.context() as patch, LocalReportApi(LocalApiConfig()) as api:
        for name, value in {**settings, **local_api_settings(api).env()}.items():
            patch.setenv(name, value)
        patch.setattr(sys, "argv", ["retail_dev", "demo"])
        assert dev_main() == 0
        yield settings


@pytest.fixture
def correcting_api(fresh_warehouse, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalReportApi]:
    config = LocalApiConfig(orders_per_day=200, corrections=CORRECTIONS)
    with LocalReportApi(config) as api:
        monkeypatch.setenv("REPORT_API_URL", api.url)
        monkeypatch.setenv("REPORT_API_KEY", config.api_key)
        monkeypatch.setenv("REPORT_API_NICKNAME", config.nickname)
        monkeypatch.setenv("REPORT_API_COHORT", config.cohort)
        yield api


def _held_weeks(settings: dict[str, str]) -> set[date]:
    rows = query(settings, "select distinct period_start from mart.f_customer_retention")
    return {row[0] for row in rows}


def test_corrections_rebuild_every_day_and_week_they_touch(
    correcting_api, fresh_warehouse: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--start", "2024-09-23", "--end", "2024-10-13"]) == 0
    output = capsys.readouterr().out
    assert "rows moved here from 2024-09-23" in output
    assert "rows moved here from 2024-09-30" in output
    weeks = _held_weeks(fresh_warehouse)
    assert weeks >= {date(2024, 9, 23), date(2024, 9, 30), date(2024, 10, 7)}
    marts = actual_marts(fresh_warehouse)
    assert marts == expected_marts(fresh_warehouse, weeks)

    # An older range again (the report and 2024-10-01): the corrections of 2024-10-08
    # are newer than both and stay; nothing in the marts changes.
    staged = query(
        fresh_warehouse,
        "select uniq_id, date_time, customer_id, item_id, payment_amount, status"
        " from staging.user_order_log order by uniq_id",
    )
    assert main(["run", "--start", "2024-09-29", "--end", "2024-10-01"]) == 0
    assert "kept from newer batches" in capsys.readouterr().out
    assert (
        query(
            fresh_warehouse,
            "select uniq_id, date_time, customer_id, item_id, payment_amount, status"
            " from staging.user_order_log order by uniq_id",
        )
        == staged
    )
    assert actual_marts(fresh_warehouse) == marts

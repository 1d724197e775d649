"""``python -m ingestion run`` end to end on the real extracts, without Airflow.

The local report API serves the recorded course files over real HTTP; the CLI requests a
report, loads it and the increments into the real PostgreSQL, and dbt builds the marts.
Expected values are computed independently from the CSV files (``support.mart_expectations``).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ingestion import dbt
from ingestion.cli import main
from ingestion.report_api import LocalApiConfig, LocalReportApi
from support.mart_expectations import order_lines, retention, signed_sums_per_day
from support.mart_tables import query, snapshot

pytestmark = pytest.mark.slow

START, END = date(2024, 9, 8), date(2024, 10, 6)
# ISO weeks whose Sunday lies in START..END: 2024-W36 (only its Sunday has data) .. W40.
WEEK_STARTS = [date(2024, 9, 2) + timedelta(weeks=n) for n in range(5)]


@pytest.fixture(scope="module")
def recorded_api(fixtures_dir):
    with LocalReportApi(LocalApiConfig.from_extracts(fixtures_dir, running_polls=1)) as api:
        yield api


@pytest.fixture(scope="module")
def pipeline_db(make_database, recorded_api):
    """A database on which ``run`` has been executed once over START..END."""
    settings = make_database()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        patch.setenv("REPORT_API_URL", recorded_api.url)
        patch.setenv("REPORT_API_KEY", recorded_api.config.api_key)
        patch.setenv("REPORT_API_NICKNAME", recorded_api.config.nickname)
        patch.setenv("REPORT_API_COHORT", recorded_api.config.cohort)
        yield settings, patch


def _run(start: date, end: date) -> int:
    return main(["run", "--start", start.isoformat(), "--end", end.isoformat()])


@pytest.fixture(scope="module")
def first_run(pipeline_db):
    settings, _ = pipeline_db
    assert _run(START, END) == 0
    return settings


def test_staging_holds_every_distinct_order_line(first_run, fixtures_dir):
    lines = order_lines(fixtures_dir)
    (count,) = query(first_run, "select count(*) from staging.user_order_log")[0]
    assert count == len(lines)
    refunded = query(
        first_run, "select count(*) from staging.user_order_log where status = 'refunded'"
    )[0][0]
    assert refunded == sum(line.status == "refunded" for line in lines.values()) > 0


def test_f_sales_matches_the_extracts_per_day(first_run, fixtures_dir):
    expected = signed_sums_per_day(order_lines(fixtures_dir))
    actual = {
        date_id: (count, total)
        for date_id, count, total in query(
            first_run,
            "select date_id, count(*), sum(payment_amount) from mart.f_sales group by date_id",
        )
    }
    assert actual == expected


def test_retention_matches_the_extracts_per_week(first_run, fixtures_dir):
    expected = retention(order_lines(fixtures_dir))
    rows = query(
        first_run,
        """
        select period_id, item_id, period_start, period_end, new_customers_count,
               returning_customers_count, refunded_customer_count, new_customers_revenue,
               returning_customers_revenue, customers_refunded
        from mart.f_customer_retention where period_name = 'weekly'
        """,
    )
    actual = {(row[0], row[1]): tuple(row[2:]) for row in rows}
    assert actual == expected
    assert {row[0] for row in rows} == {f"2024-W{week}" for week in range(36, 41)}
    # W40 holds the first refunds of the extracts (2024-10-02, new format).
    assert sum(row[6] for row in rows if row[0] == "2024-W40") > 0


def test_not_found_days_are_reported_and_runs_are_idempotent(first_run, capsys):
    before = snapshot(first_run)
    capsys.readouterr()
    assert _run(date(2024, 10, 1), END) == 0
    output = capsys.readouterr().out
    assert "days with no increment: 2024-10-03, 2024-10-04, 2024-10-05, 2024-10-06" in output
    assert snapshot(first_run) == before


def test_rebuilding_days_and_weeks_in_another_order_gives_the_same_marts(first_run):
    before = snapshot(first_run)
    for week_start in reversed(WEEK_STARTS[-2:]):
        dbt.build_retention_week(week_start)
    for day in (date(2024, 10, 2), date(2024, 9, 15), date(2024, 10, 1)):
        dbt.build_sales_day(day)
    assert snapshot(first_run) == before

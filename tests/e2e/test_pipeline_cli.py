"""``python -m ingestion run`` end to end on the real extracts, without Airflow.

The local report API serves the recorded course files over real HTTP; the CLI requests a
report, loads it and the increments into the real PostgreSQL, and dbt builds the marts.
Expected values are computed independently from the CSV files (``support.mart_expectations``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from ingestion import dbt
from ingestion.cli import main
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings
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
        _use(patch, settings, recorded_api)
        yield settings, patch


def _use(patch: pytest.MonkeyPatch, settings: dict[str, str], api: LocalReportApi) -> None:
    """The CLI's environment: this warehouse and that report API."""
    for name, value in {**settings, **local_api_settings(api).env()}.items():
        patch.setenv(name, value)


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
    loaded = query(first_run, "select sum(rows_loaded) from staging.load_audit"
                   " where start_day in ('2024-10-01', '2024-10-02')")[0][0]  # fmt: skip
    capsys.readouterr()
    assert _run(date(2024, 10, 1), END) == 0
    output, log = capsys.readouterr()
    assert "days with no increment: 2024-10-03, 2024-10-04, 2024-10-05, 2024-10-06" in output
    assert snapshot(first_run) == before
    # not a terminal: the progress bar's last state only, as one plain line (same rows again)
    assert re.search(rf"^done .* 6/6 days, {loaded:,} rows loaded", log, re.MULTILINE), log
    assert "\x1b" not in output + log


def test_status_shows_loads_marts_freshness_and_failures(first_run, capsys):
    capsys.readouterr()
    assert main(["status"]) == 0
    output = capsys.readouterr().out
    assert "\x1b" not in output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line[:3] == "  2"}
    audit = query(
        first_run,
        "select start_day, end_day, table_name, rows_loaded from staging.load_audit"
        " where outcome = 'loaded'",
    )
    loaded = {(first, last, table): rows for first, last, table, rows in audit}
    tables = ("user_order_log", "user_activity_log", "customer_research", "price_log")
    # the recorded 2024-10-02 has no customer_research file (HTTP 404): a blank cell
    outcomes = {
        "2024-09-08..2024-09-30": ["loaded"],
        "2024-10-01": ["loaded"],
        "2024-10-02": ["loaded,", "missing", "(404)"],
    }
    for day, outcome in outcomes.items():
        first, _, last = day.partition("..")
        key = (date.fromisoformat(first), date.fromisoformat(last or first))
        counts = [str(loaded[(*key, table)]) for table in tables if (*key, table) in loaded]
        assert len(counts) == (3 if day == "2024-10-02" else 4)
        assert rows[day][1 : 1 + len(outcome) + len(counts)] == [*outcome, *counts]
    for day in ("2024-10-03", "2024-10-04", "2024-10-05", "2024-10-06"):
        assert rows[day][1:3] == ["NOT", "FOUND"] and len(rows[day]) == 6  # no row counts
    days, lines = query(first_run, "select count(distinct date_id), count(*) from mart.f_sales")[0]
    assert re.search(
        rf"mart\.f_sales +2024-09-08\.\.2024-10-02 +{days} day\(s\), {lines} lines", output
    )
    assert days == 25
    assert re.search(r"mart\.f_customer_retention +2024-W36\.\.2024-W40 +5 week\(s\)", output)
    assert (
        "Source freshness: latest day loaded 2024-10-02, latest day processed 2024-10-06"
        f" (NOT FOUND); today is {date.today()}, {(date.today() - END).days} day(s) later."
    ) in output
    assert "Failures: not recorded in the warehouse" in output
    assert "Last file the API did not have (404): 2024-10-02 customer_research." in output


def test_rebuilding_days_and_weeks_in_another_order_gives_the_same_marts(first_run):
    before = snapshot(first_run)
    for week_start in reversed(WEEK_STARTS[-2:]):
        dbt.build_periods([], [week_start])
    for day in (date(2024, 10, 2), date(2024, 9, 15), date(2024, 10, 1)):
        dbt.build_periods([day])
    assert snapshot(first_run) == before


def test_a_week_with_a_missing_day_waits_for_the_run_that_loads_it(
    make_database, recorded_api, fixtures_dir, monkeypatch, capsys
):
    """SPEC section 4, no partial week: Sunday 2024-10-06 run alone (W40's other days
    never ran) builds the day, not the week, and fails naming the missing days; the run
    that loads them builds the week, equal to the spec computed from the files."""
    settings = make_database()
    _use(monkeypatch, settings, recorded_api)
    capsys.readouterr()
    assert _run(END, END) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    missing = ", ".join(f"2024-{day}" for day in ("09-30", "10-01", "10-02", "10-03",
                                                   "10-04", "10-05"))  # fmt: skip
    assert error == (
        "error: f_customer_retention: not built, days neither loaded nor NOT FOUND (a failed or"
        f" missing run): week 2024-W40 (2024-09-30..2024-10-06) misses {missing}; the run"
        " that loads the last missing day builds the week"
    )
    assert query(settings, "select to_regclass('mart.f_customer_retention')") == [(None,)]
    assert _run(date(2024, 9, 30), date(2024, 10, 5)) == 0
    rows = query(
        settings,
        "select period_id, item_id, period_start, period_end, new_customers_count,"
        " returning_customers_count, refunded_customer_count, new_customers_revenue,"
        " returning_customers_revenue, customers_refunded from mart.f_customer_retention",
    )
    expected = retention(order_lines(fixtures_dir))
    # the report's weeks (whose days it loaded) and W40, now complete, as the spec says
    assert {(row[0], row[1]): tuple(row[2:]) for row in rows} == expected

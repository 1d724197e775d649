"""Which days and weeks a run rebuilds (``ingestion.pipeline.plan_periods``), and the dbt
variables that carry them (``ingestion.dbt.period_var``). Pure functions: no database."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestion.dates import iso_week_bounds
from ingestion.dbt import period_var
from ingestion.pipeline import plan_periods

SUNDAY = date(2024, 10, 6)
MONDAY_W40, MONDAY_W39, MONDAY_W41 = date(2024, 9, 30), date(2024, 9, 23), date(2024, 10, 7)


def test_the_monday_run_builds_the_week_its_sunday_closes() -> None:
    plan = plan_periods(SUNDAY, SUNDAY)
    assert plan.days == [SUNDAY]
    assert plan.week_starts == [MONDAY_W40]


def test_a_weekday_run_builds_no_week() -> None:
    wednesday = date(2024, 10, 2)
    assert plan_periods(wednesday, wednesday, latest_loaded_day=date(2024, 10, 1)).week_starts == []


def test_a_correction_rebuilds_the_day_and_the_complete_week_it_left() -> None:
    tuesday = date(2024, 10, 8)
    plan = plan_periods(tuesday, tuesday, [date(2024, 9, 28)], latest_loaded_day=date(2024, 10, 7))
    assert plan.days == [date(2024, 9, 28), tuesday]
    assert plan.week_starts == [MONDAY_W39]  # W41 (the run's own week) waits for Sunday


def test_the_current_week_waits_unless_published() -> None:
    """A rerun of Wednesday moving a line out of Monday of the same, incomplete week."""
    wednesday, monday = date(2024, 10, 9), date(2024, 10, 7)
    assert plan_periods(wednesday, wednesday, [monday]).week_starts == []
    published = plan_periods(wednesday, wednesday, [monday], published_weeks=[MONDAY_W41])
    assert published.week_starts == [MONDAY_W41]


def test_a_rerun_of_an_old_day_rebuilds_its_week_once_the_pipeline_is_past_it() -> None:
    """Rerunning 2024-10-02 after 2024-10-13 was loaded: W40 is complete, so it is rebuilt."""
    wednesday = date(2024, 10, 2)
    plan = plan_periods(wednesday, wednesday, [wednesday], latest_loaded_day=date(2024, 10, 13))
    assert plan.week_starts == [MONDAY_W40]


def test_rebuild_week_on_request_and_report_days() -> None:
    wednesday = date(2024, 10, 2)
    assert plan_periods(wednesday, wednesday, also_week_of=wednesday).week_starts == [MONDAY_W40]
    report_days = [date(2024, 9, 2) + timedelta(days=n) for n in range(28)]  # W36..W39
    plan = plan_periods(date(2024, 9, 30), date(2024, 10, 1), report_days)
    assert plan.days == [*report_days, date(2024, 9, 30), date(2024, 10, 1)]
    assert plan.week_starts == [date(2024, 9, 2) + timedelta(weeks=n) for n in range(4)]


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        plan_periods(SUNDAY, SUNDAY - timedelta(days=1))


@given(
    st.sets(st.dates(date(2020, 1, 1), date(2030, 12, 31)), max_size=6),
    st.dates(date(2020, 1, 8), date(2030, 12, 31)),
)
def test_every_changed_day_is_built_and_no_incomplete_week_is(
    changed: set[date], last: date
) -> None:
    plan = plan_periods(last, last, changed)
    assert set(plan.days) == changed | {last}
    for monday in plan.week_starts:
        assert monday.isoweekday() == 1 and monday + timedelta(days=6) <= last
    for day in changed:
        monday, sunday = iso_week_bounds(day)
        assert (monday in plan.week_starts) == (sunday <= last)


def test_period_var_writes_runs_of_days_as_ranges() -> None:
    days = [date(2024, 10, 1), date(2024, 9, 30), date(2024, 10, 2), date(2024, 10, 9)]
    assert period_var(days) == "2024-09-30..2024-10-02,2024-10-09"
    assert period_var([date(2024, 10, 1), date(2024, 10, 1)]) == "2024-10-01"
    mondays = [MONDAY_W39, MONDAY_W40, date(2024, 10, 14)]
    assert period_var(mondays, step_days=7) == "2024-09-23..2024-09-30,2024-10-14"
    with pytest.raises(ValueError, match="empty selection would mean every day"):
        period_var([])

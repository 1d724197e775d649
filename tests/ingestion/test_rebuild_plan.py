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


def future(after: date) -> list[date]:
    """Days after ``after`` up to a year on: not loaded yet."""
    return [after + timedelta(days=n) for n in range(1, 366)]


def test_a_weekday_run_builds_no_week() -> None:
    wednesday = date(2024, 10, 2)
    assert plan_periods(wednesday, wednesday, unaccounted_days=future(wednesday)).week_starts == []


def test_a_correction_rebuilds_the_day_and_the_complete_week_it_left() -> None:
    tuesday = date(2024, 10, 8)
    plan = plan_periods(tuesday, tuesday, [date(2024, 9, 28)], unaccounted_days=future(tuesday))
    assert plan.days == [date(2024, 9, 28), tuesday]
    assert plan.week_starts == [MONDAY_W39]  # W41 (the run's own week) waits for Sunday
    assert plan.incomplete == {}  # nobody asked for W41


def test_a_week_with_a_missing_day_is_not_built_and_says_which() -> None:
    """The Monday run of a week whose Wednesday failed (SPEC section 4: no partial week)."""
    wednesday = date(2024, 10, 2)
    plan = plan_periods(SUNDAY, SUNDAY, unaccounted_days=[wednesday, *future(SUNDAY)])
    assert plan.days == [SUNDAY] and plan.week_starts == []
    assert plan.incomplete == {MONDAY_W40: [wednesday]}
    message = plan.incomplete_message()
    assert "2024-W40" in message and "2024-10-02" in message and "2024-10-03" not in message
    assert plan.as_xcom()["incomplete"] == message and plan.as_xcom()["build_week"] is False


def test_the_run_that_loads_the_last_missing_day_builds_the_week() -> None:
    wednesday = date(2024, 10, 2)
    plan = plan_periods(wednesday, wednesday, [wednesday], unaccounted_days=future(SUNDAY))
    assert plan.week_starts == [MONDAY_W40] and plan.incomplete == {}
    # another day of the week still missing: the week waits, the run does not fail
    thursday = wednesday + timedelta(days=1)
    waiting = plan_periods(wednesday, wednesday, [wednesday], unaccounted_days=[thursday])
    assert waiting.week_starts == [] and waiting.incomplete == {}


def test_rebuild_week_on_request_and_report_days() -> None:
    wednesday = date(2024, 10, 2)
    assert plan_periods(wednesday, wednesday, also_week_of=wednesday).week_starts == [MONDAY_W40]
    unfinished = plan_periods(wednesday, wednesday, also_week_of=wednesday,
                              unaccounted_days=future(wednesday))  # fmt: skip
    assert unfinished.week_starts == [] and list(unfinished.incomplete) == [MONDAY_W40]
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
    st.sets(st.dates(date(2020, 1, 1), date(2030, 12, 31)), max_size=6),
)
def test_every_changed_day_is_built_and_no_incomplete_week_is(
    changed: set[date], last: date, missing: set[date]
) -> None:
    """Days after the run's day are not loaded yet; ``missing`` days failed."""
    unaccounted = missing | set(future(last))
    plan = plan_periods(last, last, changed, unaccounted_days=unaccounted)
    assert set(plan.days) == changed | {last}
    for monday in [*plan.week_starts, *plan.incomplete]:
        assert monday.isoweekday() == 1
    for monday in plan.week_starts:  # complete: every day accounted for
        assert not unaccounted & {monday + timedelta(days=n) for n in range(7)}
    for day in changed | {last}:
        monday, sunday = iso_week_bounds(day)
        week = {monday + timedelta(days=n) for n in range(7)}
        assert (monday in plan.week_starts) == (not unaccounted & week)
    if last.isoweekday() == 7:  # the Monday run: built, or refused naming the missing days
        monday = iso_week_bounds(last)[0]
        week = {monday + timedelta(days=n) for n in range(7)}
        assert plan.incomplete.get(monday, []) == sorted(unaccounted & week)


def test_period_var_writes_runs_of_days_as_ranges() -> None:
    days = [date(2024, 10, 1), date(2024, 9, 30), date(2024, 10, 2), date(2024, 10, 9)]
    assert period_var(days) == "2024-09-30..2024-10-02,2024-10-09"
    assert period_var([date(2024, 10, 1), date(2024, 10, 1)]) == "2024-10-01"
    mondays = [MONDAY_W39, MONDAY_W40, date(2024, 10, 14)]
    assert period_var(mondays, step_days=7) == "2024-09-23..2024-09-30,2024-10-14"
    with pytest.raises(ValueError, match="empty selection would mean every day"):
        period_var([])

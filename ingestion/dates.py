"""Day and ISO-week arithmetic of the runs: a run triggered at T loads day D, the UTC day
before T; the run whose D is a Sunday builds the ISO week ending on D. Pure functions of
the run's own dates, never "now", so a rerun or backfill computes the same day and week.
ISO weeks as PostgreSQL's ``IYYY-"W"IW``: 2024-12-30 is in 2025-W01."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ingestion.project import calendar_bounds, iso_week_id

SUNDAY = 7  # date.isoweekday()

# The days d_calendar covers: the loader refuses rows dated outside them and a DAG run
# for such a day fails at once: no mart could hold the day.
CALENDAR_START, CALENDAR_END = calendar_bounds()


def report_day(trigger: datetime) -> date:
    """The day a run triggered at ``trigger`` loads: the UTC day before it (naive = UTC)."""
    if trigger.tzinfo is not None:
        trigger = trigger.astimezone(UTC)
    return trigger.date() - timedelta(days=1)


def iso_week_bounds(day: date) -> tuple[date, date]:
    """The Monday and the Sunday of the ISO week holding ``day``."""
    monday = day - timedelta(days=day.isoweekday() - 1)
    return monday, monday + timedelta(days=6)


def is_week_end(day: date) -> bool:
    """True when ``day`` is a Sunday, the last day of its ISO week."""
    return day.isoweekday() == SUNDAY


def days_between(first: date, last: date) -> list[date]:
    """Every day of ``first..last``, both included (none when ``last`` is earlier)."""
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def week_starts_ending_within(start: date, end: date) -> list[date]:
    """The Mondays of the ISO weeks whose Sunday lies in ``[start, end]``, in order."""
    if end < start:
        return []
    first_sunday = start + timedelta(days=(SUNDAY - start.isoweekday()) % 7)
    sundays = range(0, (end - first_sunday).days + 1, 7)
    return [first_sunday + timedelta(days=offset - 6) for offset in sundays]


def parse_day(value: str | date) -> date:
    """A day from ``'YYYY-MM-DD'`` (or a date), with a clear error for anything else."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except (AttributeError, ValueError) as error:
        raise ValueError(f"expected a day as YYYY-MM-DD, got {value!r}") from error


class DayOutsideCalendar(ValueError):
    """A run's day D is outside the dbt calendar: nothing could be built for it."""


@dataclass(frozen=True)
class RunDates:
    """The day a run loads and, when it closes a week, the week it builds."""

    day: date
    build_week: bool
    reason: str

    def as_xcom(self) -> dict[str, str | bool]:
        """JSON-able values (the DAG pushes them as separate XCom keys for its templates)."""
        monday, sunday = iso_week_bounds(self.day)
        return {
            "day": self.day.isoformat(),
            "week_start": monday.isoformat(),
            "week_end": sunday.isoformat(),
            "week_id": iso_week_id(self.day),
            "build_week": self.build_week,
            "reason": self.reason,
        }


def resolve_run_dates(
    *,
    logical_date: datetime | None,
    run_after: datetime | None,
    day_param: str | None = None,
    rebuild_week_param: bool = False,
) -> RunDates:
    """Day D of a run: ``day_param`` (a manual run's ``day``), else the UTC day before the
    logical date (scheduled runs, backfills, ``airflow dags test``) or ``run_after`` (a
    manual run without one). D's week is built when D is a Sunday or on request; a day
    outside the dbt calendar raises :class:`DayOutsideCalendar`."""
    if day_param:
        day = parse_day(day_param)
        source = f"the run's 'day' param {day.isoformat()}"
    else:
        trigger = logical_date or run_after
        if trigger is None:
            raise ValueError("the run has neither a logical date nor run_after")
        day = report_day(trigger)
        source = f"the day before the trigger time {trigger.isoformat()}"
    if not CALENDAR_START <= day <= CALENDAR_END:
        raise DayOutsideCalendar(
            f"day {day.isoformat()} ({source}) is outside the dbt calendar "
            f"{CALENDAR_START.isoformat()}..{CALENDAR_END.isoformat()} (vars calendar_start / "
            "calendar_end in dbt_project/dbt_project.yml): there is nothing this run could "
            "load or build; pass a day within the calendar"
        )
    if is_week_end(day):
        build_week, why = True, f"{day} is a Sunday: week {iso_week_id(day)} is complete"
    elif rebuild_week_param:
        build_week, why = True, f"'rebuild_week' requested for week {iso_week_id(day)}"
    else:
        build_week, why = False, f"{day} is not a Sunday: no weekly retention on this run"
    return RunDates(day=day, build_week=build_week, reason=f"D = {day} ({source}); {why}")

"""Day and ISO-week arithmetic for the daily runs and the weekly retention build.

A run triggered at time T loads day D = the UTC calendar day before T (the day whose
data is complete by then). The run whose D is a Sunday also builds the ISO week
(Monday..Sunday) ending on D. Everything here is pure: the caller passes the run's
own dates (Airflow's ``run_after`` / ``logical_date``, passed as plain datetimes: this
module imports no Airflow), never "now", so a rerun or a backfill of a run computes
exactly the same day and week (:func:`resolve_run_dates`).

ISO weeks follow ISO 8601 as Python's :meth:`datetime.date.isocalendar` and
PostgreSQL's ``to_char(d, 'IYYY-"W"IW')`` do: weeks start on Monday and week 1 is the
week holding the year's first Thursday, so 2024-12-30 is in ``2025-W01`` and
2021-01-03 in ``2020-W53``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ingestion.project import calendar_bounds, iso_week_id

SUNDAY = 7  # date.isoweekday()

# The days d_calendar covers: the loader refuses rows dated outside them and a DAG run
# for such a day fails at once: no mart could hold the day.
CALENDAR_START, CALENDAR_END = calendar_bounds()


def report_day(trigger: datetime) -> date:
    """The day a run triggered at ``trigger`` loads: the UTC day before it.

    A naive ``trigger`` is taken to be UTC already (Airflow's dates are aware, in UTC).
    """
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


def week_starts_ending_within(start: date, end: date) -> list[date]:
    """The Mondays of the ISO weeks whose Sunday lies in ``[start, end]``, in order.

    These are the complete weeks a backfill of the days ``start..end`` must rebuild.
    """
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

    @property
    def week_start(self) -> date:
        return iso_week_bounds(self.day)[0]

    @property
    def week_end(self) -> date:
        return iso_week_bounds(self.day)[1]

    def as_xcom(self) -> dict[str, str | bool]:
        """JSON-able values (the DAG pushes them as separate XCom keys for its templates)."""
        return {
            "day": self.day.isoformat(),
            "week_start": self.week_start.isoformat(),
            "week_end": self.week_end.isoformat(),
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
    """Day D of a scheduled or manual run, from the run's own dates, never from "now".

    - ``day_param`` (a manual run's ``day``) wins: that day is reloaded and rebuilt.
    - Otherwise D is the UTC day before the run's trigger time: the logical date when
      the run has one (scheduled runs, backfills, ``airflow dags test <date>``), else
      ``run_after`` (a manual run without a logical date).

    The week ending on D is built when D is a Sunday, or for D's week on request.
    A day outside the dbt calendar raises :class:`DayOutsideCalendar`.
    """
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

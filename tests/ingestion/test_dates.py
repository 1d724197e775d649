"""Day and ISO-week arithmetic, checked over whole years against Python and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ingestion.dates import (
    DayOutsideCalendar,
    is_week_end,
    iso_week_bounds,
    iso_week_id,
    parse_day,
    report_day,
    resolve_run_dates,
    week_starts_ending_within,
)

# 2020-12-01 .. 2026-01-31 spans the ISO years with 53 weeks (2020) and the
# year boundaries where the ISO year differs from the calendar year.
FIRST = date(2020, 12, 1)
LAST = date(2026, 1, 31)
ALL_DAYS = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]


@pytest.mark.parametrize(
    ("day", "week_id"),
    [
        (date(2024, 12, 30), "2025-W01"),
        (date(2024, 12, 29), "2024-W52"),
        (date(2021, 1, 3), "2020-W53"),
        (date(2021, 1, 4), "2021-W01"),
        (date(2020, 12, 31), "2020-W53"),
        (date(2024, 10, 6), "2024-W40"),
        (date(2026, 1, 1), "2026-W01"),
        (date(2023, 1, 1), "2022-W52"),
    ],
)
def test_iso_week_id_at_year_boundaries(day: date, week_id: str) -> None:
    assert iso_week_id(day) == week_id


def test_week_fields_agree_with_isocalendar_every_day() -> None:
    for day in ALL_DAYS:
        iso = day.isocalendar()
        monday, sunday = iso_week_bounds(day)
        assert monday.isoweekday() == 1 and sunday.isoweekday() == 7, day
        assert monday <= day <= sunday and (sunday - monday).days == 6, day
        assert monday.isocalendar()[:2] == sunday.isocalendar()[:2] == iso[:2], day
        assert iso_week_id(day) == f"{iso.year}-W{iso.week:02d}", day
        assert is_week_end(day) == (iso.weekday == 7), day


def test_week_fields_agree_with_postgres_every_day(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(
            """
            select d::date,
                   to_char(d, 'IYYY-"W"IW'),
                   date_trunc('week', d)::date,
                   (date_trunc('week', d) + interval '6 days')::date,
                   extract(isodow from d) = 7
            from generate_series(%s::date, %s::date, interval '1 day') as d
            order by d
            """,
            (FIRST, LAST),
        )
        rows = cur.fetchall()
    assert len(rows) == len(ALL_DAYS)
    for day, week_id, monday, sunday, sunday_flag in rows:
        assert iso_week_id(day) == week_id, day
        assert iso_week_bounds(day) == (monday, sunday), day
        assert is_week_end(day) is sunday_flag, day


@pytest.mark.parametrize(
    ("trigger", "day"),
    [
        # The daily cron run at 00:00 UTC loads the day that just ended.
        (datetime(2024, 10, 7, 0, 0, tzinfo=UTC), date(2024, 10, 6)),
        (datetime(2024, 10, 7, 23, 59, 59, tzinfo=UTC), date(2024, 10, 6)),
        # Year and leap-day boundaries.
        (datetime(2025, 1, 1, 3, 0, tzinfo=UTC), date(2024, 12, 31)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), date(2024, 2, 29)),
        # Another offset is converted to UTC first: 01:30 at +03:00 is 22:30 UTC the day before.
        (datetime(2024, 10, 7, 1, 30, tzinfo=timezone(timedelta(hours=3))), date(2024, 10, 5)),
        # Naive times are UTC.
        (datetime(2024, 10, 7, 12, 0), date(2024, 10, 6)),
    ],
)
def test_report_day_is_the_utc_day_before_the_trigger(trigger: datetime, day: date) -> None:
    assert report_day(trigger) == day


def test_monday_runs_and_only_they_build_a_week() -> None:
    for day in ALL_DAYS:
        trigger = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        loaded = report_day(trigger)
        assert is_week_end(loaded) == (day.isoweekday() == 1), day
        if is_week_end(loaded):
            monday, sunday = iso_week_bounds(loaded)
            assert sunday == loaded and monday == loaded - timedelta(days=6)


def test_week_starts_ending_within_every_window_of_a_year() -> None:
    days = [d for d in ALL_DAYS if d.year == 2024] + [date(2025, 1, d) for d in range(1, 8)]
    for i, start in enumerate(days):
        for end in days[i : i + 22]:
            expected = [
                d - timedelta(days=6)
                for d in (start + timedelta(days=n) for n in range((end - start).days + 1))
                if d.isoweekday() == 7
            ]
            assert week_starts_ending_within(start, end) == expected, (start, end)


def test_week_starts_ending_within_edges() -> None:
    assert week_starts_ending_within(date(2024, 10, 7), date(2024, 10, 12)) == []
    assert week_starts_ending_within(date(2024, 10, 6), date(2024, 10, 6)) == [date(2024, 9, 30)]
    assert week_starts_ending_within(date(2024, 12, 23), date(2025, 1, 5)) == [
        date(2024, 12, 23),
        date(2024, 12, 30),
    ]
    assert week_starts_ending_within(date(2024, 10, 10), date(2024, 10, 1)) == []
    # The whole of 2024 ends 52 ISO weeks inside it (2024-W01 .. 2024-W52).
    weeks = week_starts_ending_within(date(2024, 1, 1), date(2024, 12, 31))
    assert len(weeks) == 52 and iso_week_id(weeks[0]) == "2024-W01"
    assert iso_week_id(weeks[-1]) == "2024-W52"


def test_parse_day() -> None:
    assert parse_day("2024-10-06") == date(2024, 10, 6)
    assert parse_day(" 2024-10-06 ") == date(2024, 10, 6)
    assert parse_day(date(2024, 10, 6)) == date(2024, 10, 6)
    assert parse_day(datetime(2024, 10, 6, 5, tzinfo=UTC)) == date(2024, 10, 6)
    for bad in ("", "06.10.2024", "2024-13-01", None):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_day(bad)  # type: ignore[arg-type]


def test_resolve_run_dates_prefers_the_param_then_the_logical_date() -> None:
    monday = datetime(2024, 10, 7, 3, tzinfo=UTC)
    later = datetime(2024, 10, 9, 12, tzinfo=UTC)
    assert resolve_run_dates(logical_date=monday, run_after=later).day == date(2024, 10, 6)
    assert resolve_run_dates(logical_date=None, run_after=later).day == date(2024, 10, 8)
    manual = resolve_run_dates(logical_date=None, run_after=later, day_param="2024-10-02")
    assert manual.day == date(2024, 10, 2) and not manual.build_week
    forced = resolve_run_dates(
        logical_date=None, run_after=later, day_param="2024-10-02", rebuild_week_param=True
    )
    assert forced.build_week and forced.as_xcom()["week_start"] == "2024-09-30"
    sunday = resolve_run_dates(logical_date=monday, run_after=monday).as_xcom()
    assert sunday["build_week"] and sunday["week_id"] == "2024-W40"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        resolve_run_dates(logical_date=monday, run_after=monday, day_param="06/10/2024")


@pytest.mark.parametrize(
    ("logical_date", "day_param", "day"),
    [
        (datetime(2020, 1, 1, 3, tzinfo=UTC), None, "2019-12-31"),
        (datetime(2024, 10, 7, 3, tzinfo=UTC), "2031-01-01", "2031-01-01"),
    ],
)
def test_a_day_outside_the_dbt_calendar_is_refused(logical_date, day_param, day) -> None:
    with pytest.raises(DayOutsideCalendar, match=f"{day}.*2020-01-01..2030-12-31"):
        resolve_run_dates(logical_date=logical_date, run_after=logical_date, day_param=day_param)
    # The calendar's own ends are days like any other.
    for edge in ("2020-01-01", "2030-12-31"):
        assert resolve_run_dates(logical_date=None, run_after=logical_date, day_param=edge)

"""The pipeline's steps, shared by the CLI and the DAG (no Airflow here): everything a task
does runs from a terminal too. A step that downloads files also loads them, so no two
steps (or workers) share a folder; steps hand each other days and ids, never paths."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from psycopg2.extensions import connection as Connection

from ingestion import dbt
from ingestion.client import NotFound, Report, ReportApiClient
from ingestion.config import ApiSettings
from ingestion.dates import days_between, iso_week_bounds, week_starts_ending_within
from ingestion.loader import LoadSummary, load_increment, load_report, record_not_found
from ingestion.migrate import migrate
from ingestion.project import iso_week_id

log = logging.getLogger(__name__)

#: ``run``'s progress: (what it is doing now, days done since the last call, rows loaded).
Progress = Callable[[str, int, int], None]


def request_report(settings: ApiSettings) -> Report:
    """Ask the API for a report and wait until it is ready (``REPORT_API_DEADLINE_S``, 300)."""
    deadline_s = float(os.environ.get("REPORT_API_DEADLINE_S", "").strip() or 300)
    with ReportApiClient(settings) as client:
        return client.wait_for_report(client.generate_report(), deadline_s=deadline_s)


def load_full_report(
    conn: Connection, settings: ApiSettings, report: Report, workdir: Path | None = None
) -> LoadSummary:
    """Download the full report's files into a temporary folder and load them (replaces
    the report's days in staging)."""
    with scratch_dir(workdir) as scratch, ReportApiClient(settings) as client:
        files = client.fetch_files(report.files, scratch / f"report-{report.report_id}")
        return load_report(conn, report.start_day, report.end_date, files, str(report.report_id))


def load_day(
    conn: Connection, settings: ApiSettings, report_id: str, day: date, workdir: Path | None = None
) -> LoadSummary | None:
    """Fetch and load ``day``'s increment; None (recorded in load_audit) on NOT FOUND.

    The DAG's one ingestion task: the files go to a temporary folder removed on return
    (``workdir`` instead, when given), so the step needs nothing from another worker.
    Idempotent: a rerun replaces the day's rows again, or records NOT FOUND again.
    """
    with ReportApiClient(settings) as client:
        answer = client.get_increment(report_id, day)
        if isinstance(answer, NotFound):
            log.warning("no increment for %s (NOT FOUND): %s", day, answer.reason)
            record_not_found(conn, day, report_id)
            return None
        with scratch_dir(workdir) as scratch:
            folder = scratch / f"increment-{day.isoformat()}"
            files = client.fetch_files(answer.files, folder, day=day)
            return load_increment(conn, day, files, batch_id=str(answer.increment_id))


class IncompleteWeekError(RuntimeError):
    """A requested week has days neither loaded nor NOT FOUND: it was not built."""


@dataclass(frozen=True)
class RebuildPlan:
    """What the marts must rebuild after loading days: f_sales days, complete weeks to
    build, and requested weeks left unbuilt with the days they miss."""

    days: list[date]
    week_starts: list[date]
    incomplete: dict[date, list[date]] = field(default_factory=dict)

    def incomplete_message(self) -> str | None:
        """Why requested weeks were not built (SPEC section 4: no partial week), or None."""
        if not self.incomplete:
            return None
        weeks = "; ".join(
            f"week {iso_week_id(monday)} ({monday}..{monday + timedelta(6)}) misses"
            f" {', '.join(day.isoformat() for day in missing)}"
            for monday, missing in sorted(self.incomplete.items())
        )
        return (
            f"not built, days neither loaded nor NOT FOUND (a failed or missing run): {weeks};"
            " the run that loads the last missing day builds the week"
        )

    def as_xcom(self) -> dict[str, Any]:
        """JSON-able, with the dbt variables ready for the Cosmos task templates."""
        weeks = dbt.period_var(self.week_starts, step_days=7) if self.week_starts else None
        return {"days": [day.isoformat() for day in self.days],
                "week_starts": [monday.isoformat() for monday in self.week_starts],
                "day_var": dbt.period_var(self.days), "week_start_var": weeks,
                "build_week": bool(self.week_starts),
                "incomplete": self.incomplete_message()}  # fmt: skip


def plan_periods(
    first_day: date,
    last_day: date,
    changed_days: Iterable[date] = (),
    *,
    unaccounted_days: Iterable[date] = (),
    also_week_of: date | None = None,
) -> RebuildPlan:
    """The days and weeks to rebuild for a run over ``first_day..last_day``.

    Every day of the range and every ``changed_days`` (a report's other days, days a
    correction moved lines out of) is refilled. A week is built only when none of its
    days is in ``unaccounted_days`` (neither loaded nor NOT FOUND, and not before the
    source's first day). Requested weeks (a Sunday in the range, ``also_week_of``'s
    week) that are not complete are returned in ``incomplete``; the weeks of changed
    days are built once complete, so the run that loads a week's last day builds it.
    """
    if last_day < first_day:
        raise ValueError(f"day range {first_day}..{last_day} ends before it starts")
    changed = set(changed_days)
    unaccounted = set(unaccounted_days)
    requested = set(week_starts_ending_within(first_day, last_day))
    if also_week_of is not None:
        requested.add(iso_week_bounds(also_week_of)[0])
    weeks, incomplete = [], {}
    for monday in sorted(requested | {iso_week_bounds(day)[0] for day in changed}):
        missing = [day for day in days_between(*iso_week_bounds(monday)) if day in unaccounted]
        if not missing:
            weeks.append(monday)
        elif monday in requested:
            incomplete[monday] = missing
    days = sorted(changed.union(days_between(first_day, last_day)))
    return RebuildPlan(days=days, week_starts=weeks, incomplete=incomplete)


def rebuild_plan(
    conn: Connection,
    first_day: date,
    last_day: date,
    changed_days: Iterable[date] = (),
    *,
    source_start: date,
    also_week_of: date | None = None,
) -> RebuildPlan:
    """:func:`plan_periods` with the warehouse's record of the days loaded or NOT FOUND
    (``staging.load_audit``); days before ``source_start``, the first day the source
    holds (its report's ``start_day``), count as done: a history may start mid-week."""
    changed = sorted(set(changed_days))
    candidates = {*changed, *days_between(first_day, last_day), *filter(None, [also_week_of])}
    week_days = sorted({day for c in candidates for day in days_between(*iso_week_bounds(c))})
    with conn.cursor() as cur:
        cur.execute(
            "select day from unnest(%s::date[]) as day where day >= %s"
            " and not exists (select from staging.load_audit as audit"
            " where day between audit.start_day and audit.end_day)",
            (week_days, source_start),
        )
        unaccounted = [row[0] for row in cur.fetchall()]
    conn.rollback()  # read only; leave no transaction open for the loader
    return plan_periods(
        first_day, last_day, changed, unaccounted_days=unaccounted, also_week_of=also_week_of
    )


@dataclass
class RunSummary:
    """What ``run`` did, for the CLI to print."""

    loads: list[LoadSummary] = field(default_factory=list)
    days_not_found: list[date] = field(default_factory=list)
    days_built: list[date] = field(default_factory=list)
    weeks_built: list[date] = field(default_factory=list)
    incomplete: str | None = None

    def raise_for_incomplete_weeks(self) -> None:
        if self.incomplete:
            raise IncompleteWeekError(f"f_customer_retention: {self.incomplete}")

    def format(self) -> str:
        lines = [load.format() for load in self.loads]
        if self.days_not_found:
            lines.append("days with no increment: " + ", ".join(map(str, self.days_not_found)))
        lines.append(
            f"f_sales refilled for {len(self.days_built)} day(s): {dbt.period_var(self.days_built)}"
            if self.days_built
            else "f_sales refilled for no day"
        )
        weeks = ", ".join(str(week) for week in self.weeks_built) or "none"
        lines.append(f"f_customer_retention rebuilt for weeks starting: {weeks}")
        if self.incomplete:
            lines.append(f"f_customer_retention: {self.incomplete}")
        return "\n".join(lines)


def run(
    conn: Connection,
    settings: ApiSettings,
    start: date,
    end: date,
    workdir: Path | None = None,
    progress: Progress = lambda doing, days, rows: None,
) -> RunSummary:
    """The whole pipeline for ``start``..``end`` without Airflow: load the report's days and
    each later day's increment, then, in one dbt build, refill every day of the range and
    every day the loads changed, and the complete weeks they touch (:func:`rebuild_plan`).
    Any range may run again, in any order, with the same result. ``progress`` hears of
    each day done and of the build."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    summary = RunSummary()
    migrate(conn)
    with scratch_dir(workdir) as scratch:
        progress("requesting the report", 0, 0)
        report = request_report(settings)
        if start <= report.end_date and end >= report.start_day:
            progress(f"loading report {report.report_id}", 0, 0)
            summary.loads.append(load_full_report(conn, settings, report, scratch))
            days = (min(end, report.end_date) - max(start, report.start_day)).days + 1
            progress(f"loaded report {report.report_id}", days, summary.loads[-1].rows_loaded)
        for day in days_between(start, end):
            if report.start_day <= day <= report.end_date:
                continue  # the report holds this day; increments exist only after it
            loaded = load_day(conn, settings, report.report_id, day, scratch)
            if loaded is None:
                summary.days_not_found.append(day)
                progress(f"{day}: NOT FOUND", 1, 0)
            else:
                summary.loads.append(loaded)
                progress(f"loaded {day}", 1, loaded.rows_loaded)
    changed = [day for load in summary.loads for day in load.rebuild_days]
    plan = rebuild_plan(conn, start, end, changed, source_start=report.start_day)
    progress("building the marts", 0, 0)
    dbt.build_periods(plan.days, plan.week_starts)
    summary.days_built = plan.days
    summary.weeks_built = plan.week_starts
    summary.incomplete = plan.incomplete_message()
    return summary


@contextmanager
def scratch_dir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="report-api-") as scratch:
        yield Path(scratch)

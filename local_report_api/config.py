"""What the local report API serves and how it behaves: one frozen ``LocalApiConfig``.

Behaviour switches (today the ``fail_*`` fields) live here as plain fields, read by the
app's one fault hook (``app._fault``); a new fault is a field plus a branch there.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from local_report_api import synthetic


@dataclass(frozen=True)
class LocalApiConfig:
    """Behaviour and data of the local report API.

    Defaults reproduce the real source's calendar:

    - the report covers 2024-09-02 .. 2024-09-29, four full ISO weeks (W36-W39);
    - increments exist for every later day up to ``increments_until`` (2024-12-31),
      except the NOT FOUND day 2024-10-09 (``not_found_days``);
    - the increment of 2024-10-02 lacks ``customer_research_inc.csv`` (404), as the real
      increment of that day does (``missing_files``);
    - files of days before ``status_since`` (2024-10-02, the real cut-over) are in the
      old format without the ``status`` column;
    - ``get_report`` answers RUNNING ``running_polls`` times (2) before SUCCESS;
    - ``corrections`` maps an increment day to a number of lines of the day eight days
      earlier that it sends again, re-dated and reassigned (none by default);
    - ``fail_first`` maps a path (``/get_report``) to a number of initial requests that
      are answered with ``fail_status`` (503) and ``Retry-After: fail_retry_after_s``.
    """

    seed: int = 42
    report_start: date = date(2024, 9, 2)
    report_end: date = date(2024, 9, 29)
    increments_until: date = date(2024, 12, 31)
    orders_per_day: int = 1000
    customers: int = 10_000
    status_since: date = date(2024, 10, 2)
    running_polls: int = 2
    not_found_days: frozenset[date] = frozenset({date(2024, 10, 9)})
    missing_files: frozenset[tuple[date, str]] = frozenset(
        {(date(2024, 10, 2), "customer_research_inc")}
    )
    api_key: str = field(default="local-dev-key", repr=False)
    nickname: str = "local-dev"
    cohort: str = "local"
    fail_first: Mapping[str, int] = field(default_factory=dict)
    fail_status: int = 503
    fail_retry_after_s: int = 0
    extracts_dir: Path | None = None
    # day -> how many earlier order lines that day's increment corrects (re-dates and
    # reassigns); none by default, see synthetic.SyntheticShape.corrections
    corrections: Mapping[date, int] = field(default_factory=dict)

    @classmethod
    def from_extracts(cls, extracts_dir: Path, **overrides: Any) -> LocalApiConfig:
        """Serve recorded extracts instead of synthetic data.

        ``extracts_dir`` holds ``report/<name>.csv`` and ``increments/<YYYY-MM-DD>/<name>_inc.csv``
        (the layout of ``shared/fixtures/course_api``). The report window is read from the
        report's dated files (orders, then activity, then research), unless
        ``report_start`` and ``report_end`` are given; a day without a folder is NOT FOUND,
        an absent file is a 404. Files are served as they are, header-only and 0-byte
        files included (the source's way of saying "no rows for the period").
        """
        days = _report_file_days(extracts_dir / "report")
        if days:
            window = {"report_start": min(days), "report_end": max(days)}
        elif "report_start" in overrides and "report_end" in overrides:
            window = {}
        else:
            raise ValueError(
                f"{extracts_dir / 'report'}: no dated rows to take the report's days from;"
                " pass report_start and report_end"
            )
        increments_dir = extracts_dir / "increments"
        increments = sorted(
            date.fromisoformat(folder.name)
            for folder in (increments_dir.iterdir() if increments_dir.is_dir() else ())
            if folder.is_dir()
        )
        report_end = overrides.get("report_end", window.get("report_end"))
        settings: dict[str, Any] = {
            **window,
            "increments_until": max(increments, default=report_end),
            "not_found_days": frozenset(),
            "missing_files": frozenset(),
            "extracts_dir": extracts_dir,
        }
        return cls(**{**settings, **overrides})

    def __post_init__(self) -> None:
        if self.report_end < self.report_start:
            raise ValueError("report_end is before report_start")
        if self.orders_per_day < 1:
            raise ValueError("orders_per_day must be at least 1")

    @property
    def shape(self) -> synthetic.SyntheticShape:
        return synthetic.SyntheticShape(
            seed=self.seed,
            orders_per_day=self.orders_per_day,
            customers=self.customers,
            status_since=self.status_since,
            corrections=tuple(sorted(self.corrections.items())),
        )

    @property
    def report_id(self) -> str:
        """Stable across restarts: a report id saved by a run stays valid for the next."""
        return synthetic.stable_hex(self.seed, "report", self.report_start, self.report_end)

    @property
    def report_days(self) -> list[date]:
        span = (self.report_end - self.report_start).days
        return [self.report_start + timedelta(days=offset) for offset in range(span + 1)]

    def increment_id(self, day: date) -> str:
        return synthetic.stable_hex(self.seed, "increment", self.report_id, day)


# Report files with a date, and the field holding it.
_DATED_REPORT_FILES = (("user_order_log", 2), ("user_activity_log", 2), ("customer_research", 0))


def _report_file_days(report_dir: Path) -> set[date]:
    """The days of the first dated report file that has rows (empty set when none has)."""
    for name, field_index in _DATED_REPORT_FILES:
        path = report_dir / f"{name}.csv"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            next(rows, None)  # header (absent in a 0-byte file)
            days = {date.fromisoformat(row[field_index][:10]) for row in rows if row}
        if days:
            return days
    return set()

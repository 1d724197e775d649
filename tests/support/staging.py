"""Staging loaded from the real extracts (../shared/fixtures/course_api): the report and
both increments, through the project's migrations and loader."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ingestion.loader import load_increment, load_report
from ingestion.migrate import migrate
from ingestion.warehouse import connection

REPORT_START = date(2024, 9, 8)
REPORT_END = date(2024, 9, 30)
INCREMENT_DAYS = (date(2024, 10, 1), date(2024, 10, 2))


def staging_files(folder: Path, suffix: str = "") -> dict[str, Path | None]:
    names = ("user_order_log", "user_activity_log", "customer_research", "price_log")
    files: dict[str, Path | None] = {}
    for name in names:
        path = folder / f"{name}{suffix}.csv"
        files[name] = path if path.exists() else None
    return files


def load_fixtures(settings: dict[str, str], fixtures_dir: Path) -> None:
    """Create staging with the project's migrations and load the report and both increments."""
    with connection(settings) as conn:
        migrate(conn)
        load_report(
            conn, REPORT_START, REPORT_END, staging_files(fixtures_dir / "report"), "report"
        )
        for day in INCREMENT_DAYS:
            folder = fixtures_dir / "increments" / day.isoformat()
            load_increment(conn, day, staging_files(folder, "_inc"), f"increment-{day}")

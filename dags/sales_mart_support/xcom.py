"""The values the ``sales_mart`` tasks hand each other through XCom: JSON-able, no secrets.

No file path ever goes to XCom (the task that downloads files also loads them), and no
URL either (a report's file URLs may be pre-signed).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingestion.client import Report
    from ingestion.loader import LoadSummary


def report_to_xcom(report: Report) -> dict[str, str]:
    """A ready report by its id and days only."""
    return {
        "report_id": str(report.report_id),
        "start_day": report.start_day.isoformat(),
        "end_date": report.end_date.isoformat(),
    }


def day_load_to_xcom(day: str, summary: LoadSummary | None) -> dict[str, Any]:
    """What ``load_day`` did with day D: loaded (with its summary) or NOT FOUND.

    ``rebuild_days`` (D and the days a correction moved lines out of) feeds the plan.
    """
    if summary is None:
        return {"day": day, "found": False, "rebuild_days": []}
    return {
        "day": day,
        "found": True,
        **json.loads(json.dumps(dataclasses.asdict(summary), default=str)),
        "rebuild_days": [changed.isoformat() for changed in summary.rebuild_days],
    }

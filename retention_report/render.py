"""Render the report: PNG charts and one HTML page that embeds them (opens offline).

Files go to ``out_dir/<first week>_<last week>/``: ``retention.html`` and the charts
``*.png``. Rendering the same weeks again replaces them, so a rerun after a week was
rebuilt leaves the current numbers.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg2.extensions import connection as Connection

from retention_report import charts
from retention_report.data import RetentionWeeks, read_retention_weeks, week_over_week

DEFAULT_WEEKS = 8
HTML_NAME = "retention.html"
# file name -> (title, what the chart draws); the order of the page
CHART_TITLES = {
    "customers.png": "New vs returning customers per week",
    "revenue.png": "Revenue of new vs returning customers per week",
    "refunds.png": "Refunds per week",
    "week_over_week.png": "Week over week",
    "items_revenue.png": "Revenue per item",
    "items_last_week.png": "Per item, last week",
}


def render_report(conn: Connection, out_dir: Path | str, weeks: int = DEFAULT_WEEKS) -> Path:
    """Read the last ``weeks`` built weeks and write the report; returns the HTML path.

    Raises :class:`retention_report.NoWeeksBuilt` (a clear message) when the mart holds
    no week yet.
    """
    data = read_retention_weeks(conn, weeks)
    folder = Path(out_dir) / f"{data.first_week_id}_{data.last_week_id}"
    folder.mkdir(parents=True, exist_ok=True)
    images = draw_charts(data, folder)
    html = render_html(data, images)
    path = folder / HTML_NAME
    partial = path.with_suffix(".html.partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a page
    return path


def draw_charts(data: RetentionWeeks, folder: Path) -> dict[str, Path]:
    """Every chart of :data:`CHART_TITLES` as a PNG in ``folder``."""
    week_ids = list(data.totals["period_id"])
    drawers: dict[str, Callable[[Path], Path]] = {
        "customers.png": lambda path: charts.customers_per_week(data.totals, path),
        "revenue.png": lambda path: charts.revenue_per_week(data.totals, path),
        "refunds.png": lambda path: charts.refunds_per_week(data.totals, path),
        "week_over_week.png": lambda path: charts.week_over_week_change(
            week_over_week(data.totals), path
        ),
        "items_revenue.png": lambda path: charts.revenue_per_item(data.items, week_ids, path),
        "items_last_week.png": lambda path: charts.customers_per_item(
            data.items, data.last_week_id, path
        ),
    }
    return {name: drawers[name](folder / name) for name in CHART_TITLES}


def _number(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:+.1f}%"
    return str(value)


def render_html(data: RetentionWeeks, images: dict[str, Path]) -> str:
    """The page: charts embedded as base64 PNG, and the numbers behind them as tables."""
    env = Environment(
        loader=PackageLoader("retention_report"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    env.filters["number"] = _number
    embedded = {
        name: base64.b64encode(path.read_bytes()).decode("ascii") for name, path in images.items()
    }
    return env.get_template("report.html").render(
        first_week=data.first_week_id,
        last_week=data.last_week_id,
        week_count=len(data.weeks),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        charts=[(name, title, embedded[name]) for name, title in CHART_TITLES.items()],
        totals=data.totals.to_dict("records"),
        changes=week_over_week(data.totals).to_dict("records"),
        items=data.items.to_dict("records"),
    )

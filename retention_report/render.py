"""Render the report: PNG charts and one HTML page that embeds them (opens offline).

Files go to ``out_dir/<first week>_<last week>/``: ``retention.html`` and the charts
``*.png``. Rendering the same weeks again replaces them, so a rerun after a week was
rebuilt leaves the current numbers.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader
from matplotlib.figure import Figure
from psycopg2.extensions import connection as Connection

from retention_report import charts, data

DEFAULT_WEEKS = 8
HTML_NAME = "retention.html"
# Nothing in a PNG that changes from run to run: the same mart gives the same bytes.
PNG_METADATA = {"Software": None}
# file name -> title; the order of the page
CHART_TITLES = {
    "customers.png": "New vs returning customers per week (sum over items)",
    "revenue.png": "Revenue of new vs returning customers per week (shipped lines)",
    "refunds.png": "Refunds per week",
    "week_over_week.png": "Week over week change (no bar: first week, or nothing the week before)",
    "items_revenue.png": "Revenue per item and week (shipped lines)",
    "items_last_week.png": "Per item, last week",
}


def render_report(conn: Connection, out_dir: Path | str, weeks: int = DEFAULT_WEEKS) -> Path:
    """Read the last ``weeks`` built weeks and write the report; returns the HTML path.

    Raises :class:`retention_report.NoWeeksBuilt` (a clear message) when the mart holds
    no week yet.
    """
    retention = data.read_retention_weeks(conn, weeks)
    week_ids = retention.totals["period_id"]
    folder = Path(out_dir) / f"{week_ids.iloc[0]}_{week_ids.iloc[-1]}"
    folder.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for name, figure in draw_charts(retention).items():
        figure.savefig(folder / name, format="png", metadata=PNG_METADATA)
        pngs[name] = (folder / name).read_bytes()
    path = folder / HTML_NAME
    partial = path.with_suffix(".html.partial")
    partial.write_text(render_html(retention, pngs), encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a page
    return path


def draw_charts(retention: data.RetentionWeeks) -> dict[str, Figure]:
    """Every chart of :data:`CHART_TITLES`, by file name."""
    totals, items, week_ids, title = *retention, retention.totals["period_id"], CHART_TITLES
    changes = data.week_over_week(totals)
    return {
        "customers.png": charts.stacked(
            totals, data.COUNTS[:2], title["customers.png"], "customers"
        ),
        "revenue.png": charts.stacked(totals, data.REVENUES, title["revenue.png"], "revenue"),
        "refunds.png": charts.grouped(totals, data.COUNTS[2:], title["refunds.png"], "count"),
        "week_over_week.png": charts.grouped(
            changes,
            data.CHANGES,
            title["week_over_week.png"],
            "change on the week before",
            charts.WOW_LIMIT,
        ),
        "items_revenue.png": charts.revenue_per_item(items, week_ids, title["items_revenue.png"]),
        "items_last_week.png": charts.customers_per_item(items, week_ids.iloc[-1]),
    }


def _number(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:+.1f}%"
    return str(value)


def render_html(retention: data.RetentionWeeks, pngs: dict[str, bytes]) -> str:
    """The page: charts embedded as base64 PNG, and the numbers behind them as tables."""
    env = Environment(loader=PackageLoader("retention_report"), autoescape=True, trim_blocks=True)
    env.filters["number"] = _number
    totals, items = retention
    return env.get_template("report.html").render(
        first_week=totals["period_id"].iloc[0],
        last_week=totals["period_id"].iloc[-1],
        week_count=len(totals),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        charts=[
            (name, title, base64.b64encode(pngs[name]).decode())
            for name, title in CHART_TITLES.items()
        ],
        labels=data.LABELS,
        tables=[
            ("totals", "Totals per week", totals),
            ("week_over_week", "Week over week", data.week_over_week(totals)),
            ("items", "Per item and week (the mart's rows)", items),
        ],
    )

"""The charts and tables read well, on synthetic weeks (no database: the frames the mart
would give): axes fitted to the data, legends clear of every bar and line, readable labels.

Each figure is laid out and drawn (``draw_without_rendering``), then measured in display
coordinates, as the PNG shows it.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from matplotlib.figure import Figure

from retention_report.charts import WOW_LIMIT
from retention_report.data import ITEM_COLUMNS, RetentionWeeks, summarize, week_over_week
from retention_report.render import CHART_TITLES, draw_charts, render_html

ITEMS = ["Молоко 1%", "Сахар песок", "Устройство для нагревания табака Трубка Мира"]


def weeks(*scales: float) -> RetentionWeeks:
    """One week per scale (0: a built week without orders), every measure times the scale;
    the first week is the largest when the scales fall, where a legend inside would sit."""
    mondays = [date(2024, 9, 2) + timedelta(weeks=n) for n in range(len(scales))]
    built = pd.DataFrame(
        {
            "period_id": [f"{m.isocalendar()[0]}-W{m.isocalendar()[1]:02d}" for m in mondays],
            "period_start": mondays,
            "period_end": [m + timedelta(days=6) for m in mondays],
        }
    )
    rows = [
        (*week, item_id, name, round(60 * scale) + item_id, round(40 * scale), round(3 * scale),
         round(5 * scale), Decimal(round(6000 * scale)) + item_id, Decimal(round(9000 * scale)))
        for week, scale in zip(built.itertuples(index=False), scales, strict=True)
        if scale
        for item_id, name in enumerate(ITEMS)
    ]  # fmt: skip
    return summarize(built, pd.DataFrame.from_records(rows, columns=ITEM_COLUMNS))


def drawn(data: RetentionWeeks) -> dict[str, Figure]:
    figures = draw_charts(data)
    for figure in figures.values():
        figure.draw_without_rendering()
    return figures


def test_the_week_over_week_axis_fits_small_changes() -> None:
    data = weeks(1.0, 0.933, 0.96, 0.95)  # changes of -7.5% .. +3.5%, as in issue 20
    changes = week_over_week(data.totals).drop(columns="period_id").fillna(0.0).to_numpy()
    low, high = changes.min(), changes.max()
    assert -10 < low < -5 and 2 < high < 5
    (ax,) = drawn(data)["week_over_week.png"].axes
    bottom, top = ax.get_ylim()
    # the axis holds every bar, with a margin of at most a fifth of the data's span each side
    assert bottom < low and top > high
    assert top - bottom <= 1.4 * (high - low), (bottom, top)


def test_changes_beyond_the_limit_are_cut_and_labelled() -> None:
    data = weeks(0.01, 1.0, 1.1)  # the week after a near-empty one: thousands of percent
    (ax,) = drawn(data)["week_over_week.png"].axes
    assert WOW_LIMIT < ax.get_ylim()[1] < 1.3 * WOW_LIMIT
    labels = [text.get_text().strip() for text in ax.texts]
    assert labels and all(re.fullmatch(r"\+[\d,]+%", label) for label in labels)
    assert all(ax.get_ylim()[0] <= text.get_position()[1] <= WOW_LIMIT for text in ax.texts)


SCENARIOS = {
    "several weeks": (1.0, 0.8, 1.2, 0.5, 0.9),
    "one week": (1.0,),
    "no change": (1.0, 1.0, 1.0),
    "all-zero weeks": (0, 0, 0),
    "zero then orders": (0, 1.0, 0),
    "falling": (1.0, 0.5, 0.25),
}


def _legends(figure: Figure) -> list:
    """The figure's legends and its axes' legends."""
    return [*figure.legends, *filter(None, (ax.get_legend() for ax in figure.axes))]


def _bars_and_points(ax) -> list[tuple[float, float, float, float]]:
    """Every bar's rectangle and every line's marker, in display coordinates."""
    boxes = [tuple(patch.get_window_extent().extents) for patch in ax.patches]
    for line in ax.lines:
        if line.get_label().startswith("_"):
            continue  # the zero line of the change chart: not data
        for x, y in ax.transData.transform(line.get_xydata()):
            boxes.append((x, y, x, y))
    return boxes


@pytest.mark.parametrize("scales", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_axes_fit_the_data_and_legends_cover_none(scales: tuple[float, ...]) -> None:
    figures = drawn(weeks(*scales))
    assert set(figures) == set(CHART_TITLES)
    for name, figure in figures.items():
        legends = [legend.get_window_extent() for legend in _legends(figure)]
        for ax in figure.axes:
            values = [
                *(y for p in ax.patches for y in (p.get_y(), p.get_y() + p.get_height())),
                *(x for p in ax.patches for x in (p.get_x(), p.get_x() + p.get_width())),
            ]
            assert all(math.isfinite(v) for v in [*ax.get_ylim(), *ax.get_xlim(), *values])
            low, high = ax.get_ylim() if name != "items_last_week.png" else ax.get_xlim()
            assert low < high, name
            for x0, y0, x1, y1 in _bars_and_points(ax):
                for legend in legends:
                    overlap = (
                        x0 < legend.x1 and x1 > legend.x0 and y0 < legend.y1 and y1 > legend.y0
                    )
                    assert not overlap, f"{name}: the legend covers data at {(x0, y0, x1, y1)}"
                # and every bar and point is inside the axes: fitted, never cut off
                assert ax.bbox.x0 - 1 <= x0 <= x1 <= ax.bbox.x1 + 1, name
                assert ax.bbox.y0 - 1 <= y0 <= y1 <= ax.bbox.y1 + 1, name


def test_count_axes_of_an_all_zero_week_start_at_zero() -> None:
    figures = drawn(weeks(0, 0))
    for name in ("customers.png", "revenue.png", "refunds.png"):
        (ax,) = figures[name].axes
        assert ax.get_ylim() == (0.0, 1.0), name


def test_legends_and_tables_use_the_readable_labels() -> None:
    data = weeks(1.0, 0.9)
    figures = drawn(data)
    legend_texts = {
        name: [text.get_text() for legend in _legends(figure) for text in legend.get_texts()]
        for name, figure in figures.items()
    }
    assert legend_texts["refunds.png"] == ["customers with a refund", "refunded lines"]
    assert legend_texts["week_over_week.png"] == [
        "revenue",
        "new customers",
        "returning customers",
        "refunded lines",
    ]
    page = render_html(data, dict.fromkeys(CHART_TITLES, b"png"))
    headers = {
        table: re.findall(r"<th>(.*?)</th>", body)
        for table, body in re.findall(r'<table id="(\w+)">(.*?)</table>', page, re.S)
    }
    counts = ["new customers", "returning customers", "customers with a refund", "refunded lines"]
    revenues = ["revenue of new customers", "revenue of returning customers"]
    week = ["week", "Monday", "Sunday"]
    assert headers == {
        "totals": [*week, "items with orders", *counts, *revenues, "revenue"],
        "week_over_week": [
            "week",
            "revenue",
            "new customers",
            "returning customers",
            "refunded lines",
        ],
        "items": [*week, "item id", "item", *counts, *revenues],
    }

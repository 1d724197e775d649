"""The report's charts, drawn with matplotlib's object API (``Figure``, no pyplot).

No GUI backend and no global figure state: rendering works on a headless Airflow worker
and in several threads at once. Every axis is fitted to the data it shows, and every
legend sits outside the plot area, so it never covers a bar or a line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter, StrMethodFormatter

from retention_report.data import LABELS

COLORS = {
    "new_customers_count": "#4c72b0",
    "returning_customers_count": "#55a868",
    "refunded_customer_count": "#dd8452",
    "customers_refunded": "#c44e52",
    "revenue": "#8172b3",
}
COLORS |= {"new_customers_revenue": COLORS["new_customers_count"]}
COLORS |= {"returning_customers_revenue": COLORS["returning_customers_count"]}
MAX_ITEMS = 12  # items drawn one by one per chart; the rest is summed as "other items"
# Changes beyond this (percent; after a near-empty week) are cut, with their value written.
WOW_LIMIT = 150.0
MONEY = StrMethodFormatter("{x:,.0f}")


def _figure(title: str, width: float = 9.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    figure.suptitle(title)
    return figure


def fit(set_limits: Callable[..., object], values: Iterable[float]) -> None:
    """Limits around the data and zero, with a 10% margin (none below a non-negative axis);
    0..1 when everything is 0."""
    values = [float(value) for value in values] or [0.0]
    low, high = min(0.0, *values), max(0.0, *values)
    margin = (high - low) * 0.1 or 1.0
    set_limits(low - margin if low < 0 else 0.0, high + margin)


def _weekly_axes(figure: Figure, weeks: pd.Series, ylabel: str) -> Axes:
    ax = figure.add_subplot()
    ax.set_xticks(range(len(weeks)), weeks, rotation=45)
    ax.set_xlim(-0.5, len(weeks) - 0.5)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(MONEY)
    return ax


def _legend(figure: Figure) -> Figure:
    if any(ax.get_legend_handles_labels()[0] for ax in figure.axes):
        figure.legend(loc="outside right center", fontsize="small")
    return figure


def stacked(totals: pd.DataFrame, columns: list[str], title: str, ylabel: str) -> Figure:
    """Per week, ``columns`` stacked on each other (new, then returning customers)."""
    figure = _figure(title)
    ax = _weekly_axes(figure, totals["period_id"], ylabel)
    bottom = pd.Series(0.0, index=totals.index)
    for column in columns:
        values = totals[column].astype("float64")
        ax.bar(
            range(len(totals)), values, bottom=bottom, color=COLORS[column], label=LABELS[column]
        )
        bottom += values
    fit(ax.set_ylim, bottom)
    return _legend(figure)


def grouped(
    frame: pd.DataFrame, columns: list[str], title: str, ylabel: str, limit: float = math.inf
) -> Figure:
    """Per week, one bar per column side by side; bars beyond ``limit`` are cut, labelled."""
    figure = _figure(title)
    ax = _weekly_axes(figure, frame["period_id"], ylabel)
    width = 0.8 / len(columns)
    drawn = []
    for index, column in enumerate(columns):
        xs = [week + (index - (len(columns) - 1) / 2) * width for week in range(len(frame))]
        values = frame[column].astype("float64").fillna(0.0)
        cut = values.clip(-limit, limit)
        ax.bar(xs, cut, width, color=COLORS[column], label=LABELS[column])
        drawn += list(cut)
        for x, value, end in zip(xs, values, cut, strict=True):
            if value != end:  # written inside the cut bar, so it stays on the axes
                va = "top" if end > 0 else "bottom"
                ax.text(x, end, f" {value:+,.0f}% ", ha="center", va=va, rotation=90, color="white")
    fit(ax.set_ylim, drawn)
    ax.axhline(0, color="black", linewidth=0.8)
    if limit < math.inf:
        ax.yaxis.set_major_formatter(PercentFormatter())
    return _legend(figure)


def revenue_per_item(items: pd.DataFrame, weeks: pd.Series, title: str) -> Figure:
    """Revenue (new + returning) of each item per week, one line per item."""
    figure = _figure(title, 10.0, 5.0)
    ax = _weekly_axes(figure, weeks, "revenue")
    revenue = (items["new_customers_revenue"] + items["returning_customers_revenue"]).astype(float)
    ranked = revenue.groupby(items["item_name"]).sum().sort_values(ascending=False)
    top = list(ranked.index[:MAX_ITEMS])
    names = items["item_name"].where(items["item_name"].isin(top), "other items")
    table = revenue.groupby([items["period_id"], names]).sum().unstack(fill_value=0.0)
    table = table.reindex(list(weeks), fill_value=0.0)
    ax.set_prop_cycle(color=colormaps["tab20"].colors)  # up to 13 lines, none alike
    for name in [name for name in [*top, "other items"] if name in table]:
        ax.plot(range(len(weeks)), table[name], marker="o", label=name)
    fit(ax.set_ylim, table.to_numpy().ravel())
    return _legend(figure)


def customers_per_item(items: pd.DataFrame, week_id: str) -> Figure:
    """The last week, per item: new and returning customers (left), refunds (right)."""
    figure = _figure(f"{week_id} per item: new vs returning customers, refunds", 10.0, 5.0)
    week = items[items["period_id"] == week_id].sort_values("item_name", ascending=False)
    if week.empty:
        figure.text(0.5, 0.5, f"{week_id}: no orders", ha="center", va="center")
        return figure
    customers, refunds = figure.subplots(1, 2, sharey=True, width_ratios=[3, 1])
    left = pd.Series(0, index=week.index)
    for column in ["new_customers_count", "returning_customers_count"]:
        color, label = COLORS[column], LABELS[column]
        customers.barh(week["item_name"], week[column], left=left, color=color, label=label)
        left += week[column]
    fit(customers.set_xlim, left)
    customers.set_xlabel("customers")
    refunds.barh(week["item_name"], week["customers_refunded"], color=COLORS["customers_refunded"])
    fit(refunds.set_xlim, week["customers_refunded"])
    refunds.set_xlabel(LABELS["customers_refunded"])
    return _legend(figure)

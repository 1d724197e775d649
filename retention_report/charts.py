"""The report's charts, drawn with matplotlib's object API on the Agg canvas.

``matplotlib.figure.Figure`` without pyplot: no GUI backend, no global figure state, so
rendering works on a headless Airflow worker and in several threads at once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter, StrMethodFormatter

NEW, RETURNING, REFUND = "#4c72b0", "#55a868", "#c44e52"
# Items drawn one by one in the per-item charts; the rest is summed as "other items".
MAX_ITEMS = 12
# Week over week changes beyond this (percent) are drawn cut, with their value written.
WOW_LIMIT = 150.0
# Nothing in a PNG that changes from run to run: the same mart gives the same bytes.
PNG_METADATA = {"Software": None}


def _figure(width: float = 9.0, height: float = 4.5) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", metadata=PNG_METADATA)
    return path


def customers_per_week(totals: pd.DataFrame, path: Path) -> Path:
    """New and returning customers per week (stacked), summed over items."""
    figure, ax = _figure()
    weeks = totals["period_id"]
    new = totals["new_customers_count"]
    returning = totals["returning_customers_count"]
    ax.bar(weeks, new, color=NEW, label="new customers")
    ax.bar(weeks, returning, bottom=new, color=RETURNING, label="returning customers")
    ax.set_title("New vs returning customers per week (sum over items)")
    ax.set_ylabel("customers")
    ax.legend(loc="upper left")
    ax.tick_params(axis="x", labelrotation=45)
    return _save(figure, path)


def revenue_per_week(totals: pd.DataFrame, path: Path) -> Path:
    """Revenue of new and returning customers per week (stacked, shipped lines)."""
    figure, ax = _figure()
    weeks = totals["period_id"]
    new = totals["new_customers_revenue"].astype("float64")
    returning = totals["returning_customers_revenue"].astype("float64")
    ax.bar(weeks, new, color=NEW, label="new customers")
    ax.bar(weeks, returning, bottom=new, color=RETURNING, label="returning customers")
    ax.set_title("Revenue of new vs returning customers per week (shipped lines)")
    ax.set_ylabel("revenue")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.legend(loc="upper left")
    ax.tick_params(axis="x", labelrotation=45)
    return _save(figure, path)


def refunds_per_week(totals: pd.DataFrame, path: Path) -> Path:
    """Refunded lines and customers with a refund per week (side by side)."""
    figure, ax = _figure()
    positions = range(len(totals))
    width = 0.4
    ax.bar(
        [p - width / 2 for p in positions],
        totals["customers_refunded"],
        width,
        color=REFUND,
        label="refunded lines",
    )
    ax.bar(
        [p + width / 2 for p in positions],
        totals["refunded_customer_count"],
        width,
        color="#dd8452",
        label="customers with a refund (sum over items)",
    )
    ax.set_xticks(list(positions), totals["period_id"], rotation=45)
    ax.set_title("Refunds per week")
    ax.set_ylabel("count")
    ax.legend(loc="upper left")
    return _save(figure, path)


def week_over_week_change(changes: pd.DataFrame, path: Path) -> Path:
    """Percent change against the week before, per measure (grouped bars)."""
    figure, ax = _figure()
    measures = [column for column in changes.columns if column != "period_id"]
    colors = ["#8172b3", NEW, RETURNING, REFUND]
    width = 0.8 / len(measures)
    positions = range(len(changes))
    for index, (measure, color) in enumerate(zip(measures, colors, strict=True)):
        offset = (index - (len(measures) - 1) / 2) * width
        values = changes[measure].fillna(0.0)
        xs = [p + offset for p in positions]
        ax.bar(xs, values.clip(-WOW_LIMIT, WOW_LIMIT), width, color=color, label=measure)
        # A week after a near-empty one (a report's first, partial week) changes by
        # thousands of percent: such bars stop at the limit and carry their value.
        for x, value in zip(xs, values, strict=True):
            if abs(value) > WOW_LIMIT:
                ax.annotate(
                    f"{value:+,.0f}%",
                    (x, WOW_LIMIT if value > 0 else -WOW_LIMIT),
                    ha="center",
                    va="bottom" if value > 0 else "top",
                    fontsize="x-small",
                    rotation=90,
                )
    ax.set_ylim(-WOW_LIMIT * 1.1, WOW_LIMIT * 1.6)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), changes["period_id"], rotation=45)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_title("Week over week change (no bar: first week, or nothing the week before)")
    ax.legend(loc="upper right", fontsize="small", ncols=2)
    return _save(figure, path)


def _top_items(items: pd.DataFrame, value: pd.Series) -> list[str]:
    ranked = value.groupby(items["item_name"]).sum().sort_values(ascending=False)
    return list(ranked.index[:MAX_ITEMS])


def revenue_per_item(items: pd.DataFrame, weeks: list[str], path: Path) -> Path:
    """Revenue (new + returning) of each item per week, one line per item."""
    figure, ax = _figure(10.0, 5.0)
    revenue = (items["new_customers_revenue"] + items["returning_customers_revenue"]).astype(
        "float64"
    )
    top = _top_items(items, revenue)
    names = items["item_name"].where(items["item_name"].isin(top), "other items")
    table = (
        revenue.groupby([items["period_id"], names])
        .sum()
        .unstack(fill_value=0.0)
        .reindex(weeks, fill_value=0.0)
    )
    ax.set_prop_cycle(color=colormaps["tab20"].colors)  # up to 13 lines, none alike
    for name in [*top, "other items"]:
        if name in table:
            ax.plot(weeks, table[name], marker="o", label=name)
    ax.set_title("Revenue per item and week (shipped lines)")
    ax.set_ylabel("revenue")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return _save(figure, path)


def customers_per_item(items: pd.DataFrame, week_id: str, path: Path) -> Path:
    """The last week, per item: new and returning customers (left), refunds (right)."""
    figure = Figure(figsize=(10.0, 5.0), dpi=100, layout="constrained")
    week = items[items["period_id"] == week_id].sort_values("item_name", ascending=False)
    if week.empty:
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, f"{week_id}: no orders", ha="center", va="center")
        ax.set_axis_off()
        return _save(figure, path)
    customers, refunds = figure.subplots(1, 2, sharey=True, width_ratios=[3, 1])
    names = week["item_name"]
    new = week["new_customers_count"]
    customers.barh(names, new, color=NEW, label="new customers")
    customers.barh(
        names, week["returning_customers_count"], left=new, color=RETURNING, label="returning"
    )
    customers.set_xlabel("customers")
    figure.legend(loc="outside lower center", ncols=2, fontsize="small")
    refunds.barh(names, week["customers_refunded"], color=REFUND)
    refunds.set_xlabel("refunded lines")
    figure.suptitle(f"{week_id} per item: new vs returning customers, refunds")
    return _save(figure, path)

"""Expected mart values computed independently: from the CSV extracts (csv module only),
or from whatever staging holds (``expected_marts``), following SPEC section 3 literally."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from support.mart_tables import query


@dataclass(frozen=True)
class OrderLine:
    uniq_id: str
    day: date
    customer_id: int
    item_id: int
    payment_amount: Decimal
    status: str


def order_lines(fixtures_dir: Path) -> dict[str, OrderLine]:
    """Every order line of the report and the increments, de-duplicated on uniq_id."""
    files = [fixtures_dir / "report" / "user_order_log.csv"]
    files += sorted((fixtures_dir / "increments").glob("*/user_order_log_inc.csv"))
    lines: dict[str, OrderLine] = {}
    for path in files:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                lines[row["uniq_id"]] = OrderLine(
                    uniq_id=row["uniq_id"],
                    day=datetime.fromisoformat(row["date_time"]).date(),
                    customer_id=int(row["customer_id"]),
                    item_id=int(row["item_id"]),
                    payment_amount=Decimal(row["payment_amount"]),
                    status=row.get("status") or "shipped",
                )
    return lines


def signed_sums_per_day(lines: dict[str, OrderLine]) -> dict[int, tuple[int, Decimal]]:
    """date_id -> (line count, sum of payment_amount with refunds negative)."""
    result: dict[int, tuple[int, Decimal]] = {}
    for line in lines.values():
        key = int(line.day.strftime("%Y%m%d"))
        count, total = result.get(key, (0, Decimal(0)))
        sign = -1 if line.status == "refunded" else 1
        result[key] = (count + 1, total + sign * line.payment_amount)
    return result


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def retention(lines: dict[str, OrderLine]) -> dict[tuple[str, int], tuple]:
    """(period_id, item_id) -> (period_start, period_end, new, returning, refunded customers,
    new revenue, returning revenue, refunded lines), following SPEC section 3 literally."""
    shipped_per_customer_week: dict[tuple[str, int], int] = defaultdict(int)
    for line in lines.values():
        if line.status == "shipped":
            shipped_per_customer_week[(iso_week(line.day), line.customer_id)] += 1

    cells: dict[tuple[str, int], dict] = {}
    for line in lines.values():
        week = iso_week(line.day)
        monday = line.day - timedelta(days=line.day.isoweekday() - 1)
        cell = cells.setdefault(
            (week, line.item_id),
            {
                "start": monday,
                "new": set(),
                "returning": set(),
                "refunders": set(),
                "new_revenue": Decimal(0),
                "returning_revenue": Decimal(0),
                "refunded_lines": 0,
            },
        )
        if line.status == "refunded":
            cell["refunders"].add(line.customer_id)
            cell["refunded_lines"] += 1
            continue
        shipped = shipped_per_customer_week[(week, line.customer_id)]
        kind = "new" if shipped == 1 else "returning"
        cell[kind].add(line.customer_id)
        cell[f"{kind}_revenue"] += line.payment_amount
    return {
        key: (
            cell["start"],
            cell["start"] + timedelta(days=6),
            len(cell["new"]),
            len(cell["returning"]),
            len(cell["refunders"]),
            cell["new_revenue"],
            cell["returning_revenue"],
            cell["refunded_lines"],
        )
        for key, cell in cells.items()
    }


def expected_marts(settings: dict[str, str], built_weeks: set[date]) -> dict[str, list[tuple]]:
    """Every mart as the spec defines it on the database's final staging.

    ``f_sales``: every staging line, signed; dimensions: each key's latest line (time,
    then ``uniq_id``); retention: the weeks starting on ``built_weeks`` only (a week is
    built on its Monday or on request), empty weeks contributing no rows.
    The row shapes are those of ``support.mart_tables.actual_marts``.
    """
    rows = query(
        settings,
        "select uniq_id, date_time, city_id, city_name, customer_id, first_name, last_name,"
        " item_id, item_name, quantity, payment_amount, status from staging.user_order_log",
    )
    f_sales = sorted(
        (
            int(moment.strftime("%Y%m%d")),
            item_id,
            customer_id,
            city_id,
            quantity,
            -amount if status == "refunded" else amount,
            status,
            uniq_id,
        )
        for (
            uniq_id,
            moment,
            city_id,
            _,
            customer_id,
            _,
            _,
            item_id,
            _,
            quantity,
            amount,
            status,
        ) in rows
    )
    latest = sorted(rows, key=lambda row: (row[1], row[0]))  # ordered_at, then uniq_id

    def dimension(key: int, attributes: list[int]) -> list[tuple]:
        by_key = {row[key]: tuple(row[i] for i in [key, *attributes]) for row in latest}
        return [by_key[k] for k in sorted(by_key)]

    lines = {
        row[0]: OrderLine(row[0], row[1].date(), row[4], row[7], row[10], row[11]) for row in rows
    }
    weeks = {f"{m.isocalendar()[0]}-W{m.isocalendar()[1]:02d}" for m in built_weeks}
    cells = retention(lines)
    return {
        "f_sales": f_sales,
        "d_city": dimension(2, [3]),
        "d_customer": dimension(4, [5, 6, 2]),
        "d_item": dimension(7, [8]),
        "f_customer_retention": sorted(
            ("weekly", week, item, *cell) for (week, item), cell in cells.items() if week in weeks
        ),
    }

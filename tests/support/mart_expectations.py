"""Expected mart values computed independently from the CSV extracts (csv module only)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path


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

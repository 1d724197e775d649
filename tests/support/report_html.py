"""Reading the retention report's HTML tables back (stdlib ``html.parser``), and the mart's
rows in the same text form."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from retention_report.data import LABELS
from support.mart_tables import query

COLUMN_OF_LABEL = {label: column for column, label in LABELS.items()}

MEASURES = (
    "new_customers_count",
    "returning_customers_count",
    "refunded_customer_count",
    "customers_refunded",
    "new_customers_revenue",
    "returning_customers_revenue",
)


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self._table = values.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(values.get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def report_tables(path: Path) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    """Each table of the page by id, as rows of {column: cell text}; and the img sources.

    Headers are read back to the mart's column names through ``LABELS``: a header that is
    not a readable label (a raw column name) is a KeyError.
    """
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    tables = {
        name: [
            dict(zip([COLUMN_OF_LABEL[h] for h in rows[0]], row, strict=True)) for row in rows[1:]
        ]
        for name, rows in parser.tables.items()
    }
    return tables, parser.images


def mart_rows(settings: dict[str, str], week_ids: list[str]) -> list[dict[str, str]]:
    """The mart's rows of those weeks, as the page prints them (revenue with 2 decimals)."""
    rows = query(
        settings,
        "select r.period_id, r.period_start, r.period_end, r.item_id, i.item_name, "
        + ", ".join(f"r.{column}" for column in MEASURES)
        + " from mart.f_customer_retention as r join mart.d_item as i using (item_id)"
        " where r.period_id = any(%s) order by r.period_start, r.item_id",
        (week_ids,),
    )
    header = ["period_id", "period_start", "period_end", "item_id", "item_name", *MEASURES]
    return [
        {
            name: f"{value:.2f}" if isinstance(value, Decimal) else str(value)
            for name, value in zip(header, row, strict=True)
        }
        for row in rows
    ]

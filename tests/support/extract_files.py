"""Editing extract files and reading staging back, for the loader's tests."""

from __future__ import annotations

from pathlib import Path

from ingestion.loader import SPECS

#: The columns of a new-format order file, in file order.
ORDER_FIELDS = SPECS["user_order_log"].header(with_optional=True)


def set_field(path: Path, line: int, column: str, value: str) -> None:
    """Replace one field of an order file (``line`` 1 = the header)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    fields = lines[line - 1].split(",")
    fields[ORDER_FIELDS.index(column)] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")


def fetch_rows(conn, text: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on an open connection, leaving no transaction open."""
    with conn.cursor() as cur:
        cur.execute(text, params)
        rows = cur.fetchall()
    conn.rollback()
    return rows

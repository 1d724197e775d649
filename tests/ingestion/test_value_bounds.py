"""Every value the loader accepts fits the mart column it feeds.

mart.f_sales keeps the legacy types for existing consumers (tests/dbt/legacy_marts.sql):
ids int4, quantity bigint, payment_amount numeric(10,2). Staging is wider (numeric(14,2)),
so without a bound an amount of 150000000.00 loads and then overflows the mart in the
middle of the dbt build. The loader must refuse it, naming day, file, line and reason.
"""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion.loader import SPECS, BadInputError, load_increment
from ingestion.migrate import migrate
from support.extract_files import set_field
from support.mart_tables import execute, query

DAY = date(2024, 10, 2)
LEGACY_DDL = Path(__file__).resolve().parents[1] / "dbt" / "legacy_marts.sql"
# Order-file columns and the legacy mart.f_sales column each one feeds.
FEEDS_F_SALES = ("city_id", "customer_id", "item_id", "quantity", "payment_amount")


@pytest.fixture
def conn(pg_conn):
    migrate(pg_conn)
    return pg_conn


def increment_copy(fixtures_dir: Path, tmp_path: Path) -> dict[str, Path | None]:
    folder = tmp_path / "increment"
    shutil.copytree(fixtures_dir / "increments" / DAY.isoformat(), folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    files: dict[str, Path | None] = {
        name: folder / f"{name}_inc.csv"
        for name in ("user_order_log", "user_activity_log", "price_log")
    }
    files["customer_research"] = None  # the real increment of that day has none (404)
    return files


def staging_orders(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("select * from staging.user_order_log order by uniq_id")
        rows = [row[:-1] for row in cur.fetchall()]  # without loaded_at
    conn.rollback()
    return rows


def test_order_bounds_are_the_legacy_mart_types(make_database) -> None:
    """The limits in SPECS come from the legacy tables themselves, not from memory."""
    settings = make_database()
    execute(settings, LEGACY_DDL.read_text(encoding="utf-8"))
    types = dict(
        (name, (data_type, precision, scale))
        for name, data_type, precision, scale in query(
            settings,
            "select column_name, data_type, numeric_precision, numeric_scale"
            " from information_schema.columns"
            " where table_schema = 'mart' and table_name = 'f_sales'",
        )
    )
    columns = {column.name: column for column in SPECS["user_order_log"].columns}
    for name in FEEDS_F_SALES:
        data_type, precision, scale = types[name]
        column = columns[name]
        if data_type in ("integer", "bigint"):
            assert column.sql_type == data_type, name
        else:
            assert data_type == "numeric", name
            largest = Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale)
            # refunds are negated in the mart, so the bound holds both ways
            assert largest == Decimal("99999999.99"), name
            assert f"value <= {largest}" in [condition for condition, _ in column.checks], name


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (
            "payment_amount",
            "150000000.00",
            "payment_amount 150000000.00 is above 99999999.99, the largest allowed"
            " (mart.f_sales.payment_amount numeric(10,2))",
        ),
        ("payment_amount", "100000000", "payment_amount 100000000 is above 99999999.99"),
        ("quantity", "0", "quantity 0 is below 1"),
        ("customer_id", "2147483648", "customer_id 2147483648 is out of range"),
        ("item_id", "-2147483649", "item_id -2147483649 is out of range"),
        ("city_id", "99999999999", "city_id 99999999999 is out of range"),
    ],
)
def test_a_value_no_mart_can_hold_is_refused_with_day_file_and_line(
    conn, fixtures_dir: Path, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    load_increment(conn, DAY, increment_copy(fixtures_dir, tmp_path / "good"), "good")
    before = staging_orders(conn)
    files = increment_copy(fixtures_dir, tmp_path / "bad")
    orders = files["user_order_log"]
    assert orders is not None
    set_field(orders, 6, column, value)

    with pytest.raises(BadInputError) as caught:
        load_increment(conn, DAY, files, "bad")

    error = caught.value
    assert (error.day, error.file, error.line, error.column) == (
        "2024-10-02",
        orders.name,
        6,
        column,
    )
    assert str(error).startswith(
        f"bad input: {orders.name} of 2024-10-02, line 6, column {column}: {reason}"
    )
    assert staging_orders(conn) == before


def test_the_largest_values_a_mart_holds_are_loaded(
    conn, fixtures_dir: Path, tmp_path: Path
) -> None:
    files = increment_copy(fixtures_dir, tmp_path)
    orders = files["user_order_log"]
    assert orders is not None
    set_field(orders, 2, "payment_amount", "99999999.99")
    set_field(orders, 3, "customer_id", "2147483647")
    load_increment(conn, DAY, files, "edge")
    amounts = query_conn(
        conn, "select max(payment_amount), max(customer_id) from staging.user_order_log"
    )
    assert amounts == [(Decimal("99999999.99"), 2147483647)]


def query_conn(conn, text: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(text)
        rows = cur.fetchall()
    conn.rollback()
    return rows

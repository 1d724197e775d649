"""Customer history (SCD type 2): the dbt snapshot ``mart.d_customer_history``.

Each day is loaded with the real loader and built with the CLI's day build (the same
selector the DAG's sales group renders), as ``python -m ingestion run`` does.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pytest

from ingestion import dbt
from ingestion.loader import load_increment
from ingestion.migrate import migrate
from ingestion.warehouse import connection
from support.mart_tables import query

pytestmark = pytest.mark.slow  # four dbt builds (make e2e)

HEADER = [
    "id", "uniq_id", "date_time", "city_id", "city_name", "customer_id", "first_name",
    "last_name", "item_id", "item_name", "quantity", "payment_amount", "status",
]  # fmt: skip
CITIES = {1: "Москва", 2: "Ростов"}
HISTORY = """
    select customer_id, first_name, last_name, city_id, last_ordered_at
    from mart.d_customer_history
    order by customer_id, valid_from
"""
OPEN_AND_CLOSED = """
    select customer_id, valid_to is null, valid_from
    from mart.d_customer_history
    order by customer_id, valid_from
"""


def _load_day(settings: dict[str, str], folder: Path, day: date, lines: list[tuple]) -> None:
    """Load one increment: lines of (uniq_id, hour, customer_id, first, last, city_id)."""
    folder.mkdir()
    path = folder / "user_order_log.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for number, (uniq_id, hour, customer, first, last, city) in enumerate(lines, 1):
            moment = datetime(day.year, day.month, day.day, hour).isoformat()
            writer.writerow(
                [number, uniq_id, moment, city, CITIES[city], customer, first, last]
                + [1, "Молоко", 1, "10.00", "shipped"]
            )
    with connection(settings) as conn:
        load_increment(conn, day, {"user_order_log": path}, f"increment-{day}")
    dbt.build_periods([day])


def test_a_changed_name_and_city_close_one_version_and_open_the_next(
    make_database, use_database, tmp_path: Path
) -> None:
    settings = make_database()
    use_database(settings)
    with connection(settings) as conn:
        migrate(conn)

    _load_day(settings, tmp_path / "d1", date(2024, 10, 7), [
        ("a-1", 9, 1, "Анна", "Иванова", 1),
        ("b-1", 10, 2, "Борис", "Петров", 1),
    ])  # fmt: skip
    # Anna marries and moves; Boris orders again unchanged (no new version)
    _load_day(settings, tmp_path / "d2", date(2024, 10, 8), [
        ("a-2", 14, 1, "Анна", "Смирнова", 2),
        ("b-2", 11, 2, "Борис", "Петров", 1),
    ])  # fmt: skip
    expected = [
        (1, "Анна", "Иванова", 1, datetime(2024, 10, 7, 9)),  # closed
        (1, "Анна", "Смирнова", 2, datetime(2024, 10, 8, 14)),  # open
        (2, "Борис", "Петров", 1, datetime(2024, 10, 7, 10)),
    ]
    assert query(settings, HISTORY) == expected
    anna_closed, anna_open, boris = query(settings, OPEN_AND_CLOSED)
    assert [anna_closed[1], anna_open[1], boris[1]] == [False, True, True]
    # the closed version ends where the open one starts (the second day's build)
    assert query(
        settings,
        "select valid_to from mart.d_customer_history where valid_to is not null",
    ) == [(anna_open[2],)]
    assert anna_closed[2] == boris[2] < anna_open[2]

    # rebuilding a day already built adds no version
    dbt.build_periods([date(2024, 10, 8)])
    assert query(settings, HISTORY) == expected

    # Boris moves on a third day: his first version closes where the new one starts
    _load_day(settings, tmp_path / "d3", date(2024, 10, 9), [
        ("b-3", 8, 2, "Борис", "Петров", 2),
    ])  # fmt: skip
    history = query(settings, HISTORY)
    assert history[:2] == expected[:2]
    assert history[2:] == [
        (2, "Борис", "Петров", 1, datetime(2024, 10, 7, 10)),
        (2, "Борис", "Петров", 2, datetime(2024, 10, 9, 8)),
    ]

    # a new extract of the second day without Anna's line takes her move back: her
    # earlier attributes come back as a new, open version (the builds' history is kept)
    _load_day(settings, tmp_path / "d2-again", date(2024, 10, 8), [
        ("b-2", 11, 2, "Борис", "Петров", 1),
    ])  # fmt: skip
    assert query(settings, HISTORY)[:3] == expected[:2] + [expected[0]]
    assert [row[:2] for row in query(settings, OPEN_AND_CLOSED)[:3]] == [
        (1, False),
        (1, False),
        (1, True),
    ]
    # the open versions are exactly d_customer
    current = query(
        settings,
        "select customer_id, first_name, last_name, city_id from mart.d_customer_history"
        " where valid_to is null order by customer_id",
    )
    assert current == query(
        settings,
        "select customer_id, first_name, last_name, city_id from mart.d_customer"
        " order by customer_id",
    )

"""Deterministic synthetic extracts with every quirk of the real report API.

The real files (``shared/fixtures/course_api``) repeat order lines with only the row ``id``
differing, lack the ``status`` column before a cut-over day, keep refunds' amounts
positive, send ``price_log`` without a header and carry Cyrillic names: so do these.
Everything derives from ``(seed, day)``, so the same shape gives byte-identical files in
any order of days; rows are made a day at a time (numpy) and streamed in blocks.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

#: Items and prices exactly as in the real ``price_log.csv``; ``item_id`` is the position.
ITEMS: tuple[tuple[str, int], ...] = (
    ("Молоко 1%", 100),
    ("Молоко 3%", 120),
    ("Молоко 5%", 150),
    ("Устройство для нагревания табака Трубка Мира", 500),
    ("Сахар песок", 50),
    ("Яблоко молодильное", 400),
    ("Яблоко", 140),
    ("Средство для мытья посуды", 200),
    ("Лампочка LED", 300),
    ("Ручка шариковая", 45),
    ("Томаты", 50),
    ("Хлеб ржаной", 20),
)
#: ``city_id`` 0-2 match the real extracts; the others widen the city dimension a little.
CITIES: tuple[str, ...] = ("Москва", "Ростов", "Ярославль", "Казань", "Тверь")
# Names from the real extracts: male and female first names, male and female last names.
NAMES = """
Александр Алексей Евгений Иван Олег Петр Сергей Константин Геннадий Эдуард
Ольга Снежанна Надежда Анна Александра Екатерина Елизавета Оксана Евгения Светлана
Смирнов Иванов Михайлов Кузнецов Васильев Соколов Сидоров Новиков Петров Попов
Великая Федорова Егорова Волкова Алексеева Павлова Морозова Козлова Орлова Лебедева
"""
MALE_FIRST, FEMALE_FIRST, MALE_LAST, FEMALE_LAST = map(
    np.array, map(str.split, NAMES.split("\n")[1:5])
)
ORDER_COLUMNS = (
    "id,uniq_id,date_time,city_id,city_name,customer_id,first_name,last_name,"
    "item_id,item_name,quantity,payment_amount"
)
ACTIVITY_COLUMNS = "id,uniq_id,date_time,action_id,customer_id,quantity"
RESEARCH_COLUMNS = "date_id,category_id,geo_id,sales_qty,sales_amt"
FILE_NAMES = ("user_order_log", "user_activity_log", "customer_research", "price_log")
# A share of the lines comes from a pool of regulars, so every week has returning customers.
REGULAR_CUSTOMERS, REGULAR_SHARE, OTHER_CITY_SHARE = 300, 0.3, 0.1
DUPLICATE_SHARE, MAX_EXTRA_COPIES = 0.15, 4  # lines repeated 1..4 times, only the id differs
REFUND_SHARE = (0.03, 0.12)  # of a day's lines, from status_since on
#: How far back a correction reaches: always into an earlier ISO week.
CORRECTION_LAG = timedelta(days=8)
ROWS_PER_BLOCK = 20_000


@dataclass(frozen=True)
class SyntheticShape:
    """``orders_per_day``: distinct order lines (``uniq_id``) a day; ``corrections``: how
    many lines of the day ``CORRECTION_LAG`` earlier an increment day sends again, re-dated,
    with another customer, item, amount and status (SPEC section 2)."""

    seed: int = 42
    orders_per_day: int = 1000
    customers: int = 10_000
    status_since: date = date(2024, 10, 2)
    corrections: Mapping[date, int] = field(default_factory=dict)


def stable_hex(*parts: object) -> str:
    """A 32-hex identifier derived from its parts; used for ``uniq_id`` and opaque ids."""
    return hashlib.md5(":".join(str(part) for part in parts).encode()).hexdigest()


def _rng(*parts: object) -> np.random.Generator:
    """One independent random stream per (seed, day, purpose), so days never interact."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


@lru_cache(maxsize=8)
def _people(seed: int, customers: int) -> tuple:
    """Per seed: each customer's first and last name and home city, and the regulars."""
    rng = _rng(seed, "people")
    female = rng.random(customers) < 0.5
    first, last = rng.integers(0, 10, customers), rng.integers(0, 10, customers)
    first_names = np.where(female, FEMALE_FIRST[first], MALE_FIRST[first]).tolist()
    last_names = np.where(female, FEMALE_LAST[last], MALE_LAST[last]).tolist()
    home_city = rng.integers(0, len(CITIES), customers)
    regulars = rng.permutation(customers)[: max(1, min(REGULAR_CUSTOMERS, customers))]
    return first_names, last_names, home_city, regulars


def _lines(shape: SyntheticShape, source_day: date, day: date, rows: Iterable) -> list[str]:
    """Order lines without their row ``id``, from (line, customer, city, item, quantity,
    status) each; ``uniq_id`` derives from the line's number on ``source_day``."""
    first, last, _, _ = _people(shape.seed, shape.customers)
    source, stamp = source_day.isoformat(), f"{day}T00:00:00"
    return [
        f"{stable_hex(shape.seed, source, 'order', line)},{stamp},{city},"
        f"{CITIES[city]},{customer},{first[customer]},{last[customer]},{item},{ITEMS[item][0]},"
        f"{quantity},{quantity * ITEMS[item][1]}{status}"
        for line, customer, city, item, quantity, status in rows
    ]


def _order_lines(shape: SyntheticShape, day: date, with_status: bool) -> list[str]:
    """The day's distinct order lines, each without its row ``id``."""
    n, rng = shape.orders_per_day, _rng(shape.seed, day, "orders")
    _, _, home_city, regulars = _people(shape.seed, shape.customers)
    is_regular = rng.random(n) < REGULAR_SHARE
    regular_pick = regulars[rng.integers(0, len(regulars), n)]
    customer = np.where(is_regular, regular_pick, rng.integers(0, shape.customers, n))
    # Like the real source, a customer sometimes orders in another city than usual.
    moved = rng.random(n) < OTHER_CITY_SHARE
    city = np.where(moved, rng.integers(0, len(CITIES), n), home_city[customer])
    item, quantity = rng.integers(0, len(ITEMS), n), rng.integers(1, 6, n)
    status = [",shipped" if with_status else ""] * n
    if with_status and day >= shape.status_since:
        low, high = int(np.ceil(REFUND_SHARE[0] * n)), int(np.floor(REFUND_SHARE[1] * n))
        refunded = min(max(round(rng.uniform(*REFUND_SHARE) * n), low), max(high, low))
        for line in rng.choice(n, size=min(refunded, n), replace=False).tolist():
            status[line] = ",refunded"
    columns = (a.tolist() for a in (customer, city, item, quantity))
    return _lines(shape, day, day, zip(range(n), *columns, status, strict=True))


def _correction_lines(shape: SyntheticShape, day: date, with_status: bool) -> list[str]:
    """Lines of ``day - CORRECTION_LAG`` sent again in ``day``'s increment, each with its
    ``uniq_id`` kept and ``day``'s date, a new customer (name, home city), item and status."""
    count = dict(shape.corrections).get(day, 0)
    if count <= 0:
        return []
    rng, home_city = _rng(shape.seed, day, "corrections"), _people(shape.seed, shape.customers)[2]
    picks = rng.choice(shape.orders_per_day, size=min(count, shape.orders_per_day), replace=False)
    rows = []
    for line in picks.tolist():
        customer = int(rng.integers(0, shape.customers))
        item, quantity = int(rng.integers(0, len(ITEMS))), int(rng.integers(1, 6))
        refunded = with_status and day >= shape.status_since and rng.random() < 0.5
        status = (",refunded" if refunded else ",shipped") if with_status else ""
        rows.append((line, customer, int(home_city[customer]), item, quantity, status))
    return _lines(shape, day - CORRECTION_LAG, day, rows)


def _order_rows(
    shape: SyntheticShape, day: date, with_status: bool, increment: bool
) -> Iterator[str]:
    """Every line once (and an increment's corrections), some repeated, all shuffled."""
    lines = _order_lines(shape, day, with_status)
    if increment:
        lines += _correction_lines(shape, day, with_status)
    rng = _rng(shape.seed, day, "duplicates")
    repeated = np.flatnonzero(rng.random(len(lines)) < DUPLICATE_SHARE)
    extra = rng.integers(1, MAX_EXTRA_COPIES + 1, repeated.size)
    rows = np.concatenate([np.arange(len(lines)), np.repeat(repeated, extra)])
    return (lines[row] for row in rows[rng.permutation(rows.size)].tolist())


def _activity_rows(shape: SyntheticShape, day: date) -> Iterator[str]:
    """A sparse activity log: roughly one action per hundred orders, like the real one."""
    rng = _rng(shape.seed, day, "activity")
    n = int(rng.integers(max(1, shape.orders_per_day // 150), shape.orders_per_day // 75 + 2))
    columns = [rng.integers(0, high, n).tolist() for high in (4, shape.customers, 25)]
    for line, values in enumerate(zip(*columns, strict=True)):
        uniq_id = stable_hex(shape.seed, day, "activity", line)
        yield ",".join(map(str, (uniq_id, f"{day}T00:00:00", *values)))


def _research_rows(shape: SyntheticShape, day: date) -> Iterator[str]:
    """Ten categories in three regions, priced like the real extract (384 a unit)."""
    rng = _rng(shape.seed, day, "research")
    for category, geo in itertools.product(range(1001, 1011), (1, 2, 3)):
        quantity = int(rng.integers(0, 10))
        yield f"{day}T00:00:00,{category},{geo},{quantity},{quantity * 384}"


def _file_lines(
    shape: SyntheticShape, name: str, days: list[date], increment: bool
) -> Iterator[str]:
    if name == "price_log":  # no header; the real report and increments look the same
        yield from (f"{item},{price}\n" for item, price in ITEMS)
        return
    with_status = any(day >= shape.status_since for day in days)
    header, rows = {
        "customer_research": (RESEARCH_COLUMNS, _research_rows),
        "user_activity_log": (ACTIVITY_COLUMNS, _activity_rows),
        "user_order_log": (
            ORDER_COLUMNS + (",status" if with_status else ""),
            lambda shape, day: _order_rows(shape, day, with_status, increment),
        ),
    }[name]
    yield header + "\n"
    row_ids = itertools.count(1)  # a row number in the file, running on across days
    for day in days:
        for row in rows(shape, day):
            yield f"{row}\n" if name == "customer_research" else f"{next(row_ids)},{row}\n"


def iter_file(
    shape: SyntheticShape, name: str, days: Iterable[date], *, increment: bool = False
) -> Iterator[bytes]:
    """The CSV file ``name`` (without ``_inc``) of ``days`` as UTF-8 blocks; ``increment``:
    one day's increment file, which carries that day's corrections."""
    if name not in FILE_NAMES:
        raise ValueError(f"unknown report file {name!r}; expected one of {FILE_NAMES}")
    lines = _file_lines(shape, name, sorted(days), increment)
    blocks = iter(lambda: "".join(itertools.islice(lines, ROWS_PER_BLOCK)), "")
    return (block.encode() for block in blocks)


def file_bytes(
    shape: SyntheticShape, name: str, days: Iterable[date], *, increment: bool = False
) -> bytes:
    """The whole file at once; convenient for small files and tests."""
    return b"".join(iter_file(shape, name, days, increment=increment))

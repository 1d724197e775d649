"""Deterministic synthetic extracts with every quirk of the real report API.

The real source (see ``shared/fixtures/course_api``) serves CSV files whose oddities the
pipeline must survive: order lines repeated with only the row ``id`` differing, an old
format without the ``status`` column before a cut-over day, refunds whose
``payment_amount`` is still positive, a headerless ``price_log`` and Cyrillic names. The
local report API serves files generated here so that tests and demos exercise exactly
those quirks without network access.

Everything is derived from ``(seed, day)``: the same seed and configuration always give
byte-identical files, whichever order the days are asked for in. Rows are produced in
blocks (one day at a time, vectorised with numpy) so a report of hundreds of thousands
of orders per day streams without building whole files in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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

# Names from the real extracts, split by gender so that first and last names agree.
_MALE_FIRST = (
    "Александр", "Алексей", "Евгений", "Иван", "Олег",
    "Петр", "Сергей", "Константин", "Геннадий", "Эдуард",
)  # fmt: skip
_FEMALE_FIRST = (
    "Ольга", "Снежанна", "Надежда", "Анна", "Александра",
    "Екатерина", "Елизавета", "Оксана", "Евгения", "Светлана",
)  # fmt: skip
_MALE_LAST = (
    "Смирнов", "Иванов", "Михайлов", "Кузнецов", "Васильев",
    "Соколов", "Сидоров", "Новиков", "Петров", "Попов",
)  # fmt: skip
_FEMALE_LAST = (
    "Великая", "Федорова", "Егорова", "Волкова", "Алексеева",
    "Павлова", "Морозова", "Козлова", "Орлова", "Лебедева",
)  # fmt: skip

ORDER_COLUMNS = (
    "id,uniq_id,date_time,city_id,city_name,customer_id,first_name,last_name,"
    "item_id,item_name,quantity,payment_amount"
)
ACTIVITY_COLUMNS = "id,uniq_id,date_time,action_id,customer_id,quantity"
RESEARCH_COLUMNS = "date_id,category_id,geo_id,sales_qty,sales_amt"
FILE_NAMES = ("user_order_log", "user_activity_log", "customer_research", "price_log")

# customer_research: ten categories in three regions, priced like the real extract.
_RESEARCH_CATEGORIES = range(1001, 1011)
_RESEARCH_GEOS = (1, 2, 3)
_RESEARCH_UNIT_PRICE = 384

_ROWS_PER_BLOCK = 20_000


@dataclass(frozen=True)
class SyntheticShape:
    """What the generated data looks like; the local API config carries one of these.

    ``orders_per_day`` counts distinct order lines (``uniq_id``); the file has more rows
    because ``duplicate_share`` of the lines are repeated 1..``max_extra_copies`` times.
    A ``regular_share`` of the lines belongs to a small pool of regular customers
    (``regular_customers``) so that every week has returning as well as new customers.
    """

    seed: int = 42
    orders_per_day: int = 1000
    customers: int = 10_000
    regular_customers: int = 300
    regular_share: float = 0.3
    other_city_share: float = 0.1
    duplicate_share: float = 0.15
    max_extra_copies: int = 4
    refund_share_min: float = 0.03
    refund_share_max: float = 0.12
    status_since: date = date(2024, 10, 2)
    # Corrections (SPEC section 2): the increment of each listed day also re-sends this
    # many order lines of the day a week and a day earlier (always an earlier ISO week),
    # re-dated to the increment's day, with another customer, item, amount and status.
    corrections: tuple[tuple[date, int], ...] = ()


#: How far back a correction reaches: always into an earlier ISO week.
CORRECTION_LAG = timedelta(days=8)


def timestamp(day: date) -> str:
    """Format a day the way the source writes timestamps: ``2024-10-02T00:00:00``."""
    return f"{day.isoformat()}T00:00:00"


def stable_hex(*parts: object) -> str:
    """A 32-hex identifier derived from its parts; used for ``uniq_id`` and opaque ids."""
    return hashlib.md5(":".join(str(part) for part in parts).encode()).hexdigest()


def _rng(shape: SyntheticShape, day: date, stream: str) -> np.random.Generator:
    """One independent random stream per (seed, day, purpose), so days never interact."""
    digest = hashlib.sha256(f"{shape.seed}:{day.isoformat()}:{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


@dataclass(frozen=True)
class _Population:
    """Per-seed customers: a fixed name and home city per ``customer_id``."""

    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    home_city: np.ndarray
    regulars: np.ndarray


@lru_cache(maxsize=8)
def _population(seed: int, customers: int, regular_customers: int) -> _Population:
    rng = np.random.default_rng(
        int.from_bytes(hashlib.sha256(f"{seed}:people".encode()).digest()[:16], "big")
    )
    female = rng.random(customers) < 0.5
    first_pick = rng.integers(0, len(_MALE_FIRST), customers)
    last_pick = rng.integers(0, len(_MALE_LAST), customers)
    first_names = tuple(
        (_FEMALE_FIRST if is_female else _MALE_FIRST)[pick]
        for is_female, pick in zip(female.tolist(), first_pick.tolist(), strict=True)
    )
    last_names = tuple(
        (_FEMALE_LAST if is_female else _MALE_LAST)[pick]
        for is_female, pick in zip(female.tolist(), last_pick.tolist(), strict=True)
    )
    home_city = rng.integers(0, len(CITIES), customers)
    regulars = rng.permutation(customers)[: max(1, min(regular_customers, customers))]
    return _Population(first_names, last_names, home_city, regulars)


def has_status_column(shape: SyntheticShape, days: Iterable[date]) -> bool:
    """A file is in the new format when any of its days is on or after ``status_since``."""
    return any(day >= shape.status_since for day in days)


def _order_lines(shape: SyntheticShape, day: date, with_status: bool) -> list[str]:
    """The day's distinct order lines, each formatted without the leading row ``id``."""
    n = shape.orders_per_day
    rng = _rng(shape, day, "orders")
    people = _population(shape.seed, shape.customers, shape.regular_customers)

    is_regular = rng.random(n) < shape.regular_share
    regular_pick = people.regulars[rng.integers(0, len(people.regulars), n)]
    anyone_pick = rng.integers(0, shape.customers, n)
    customer = np.where(is_regular, regular_pick, anyone_pick)
    # Like the real source, a customer sometimes orders in another city than usual.
    city = np.where(
        rng.random(n) < shape.other_city_share,
        rng.integers(0, len(CITIES), n),
        people.home_city[customer],
    )
    item = rng.integers(0, len(ITEMS), n)
    quantity = rng.integers(1, 6, n)
    prices = np.array([price for _, price in ITEMS])
    amount = quantity * prices[item]

    status = [""] * n
    if with_status and day >= shape.status_since:
        status = ["shipped"] * n
        share = rng.uniform(shape.refund_share_min, shape.refund_share_max)
        low = int(np.ceil(shape.refund_share_min * n))
        high = int(np.floor(shape.refund_share_max * n))
        refunded = min(max(round(share * n), low), max(high, low))
        for line in rng.choice(n, size=min(refunded, n), replace=False).tolist():
            status[line] = "refunded"
    elif with_status:
        status = ["shipped"] * n

    stamp = timestamp(day)
    seed = shape.seed
    day_text = day.isoformat()
    tail = [f",{value}" if with_status else "" for value in status]
    return [
        f"{stable_hex(seed, day_text, 'order', line)},{stamp},{c},{CITIES[c]},{cust},"
        f"{people.first_names[cust]},{people.last_names[cust]},{i},{ITEMS[i][0]},{q},{a}{t}"
        for line, c, cust, i, q, a, t in zip(
            range(n),
            city.tolist(),
            customer.tolist(),
            item.tolist(),
            quantity.tolist(),
            amount.tolist(),
            tail,
            strict=True,
        )
    ]


def _correction_lines(shape: SyntheticShape, day: date, with_status: bool) -> list[str]:
    """Lines of ``day - CORRECTION_LAG`` sent again in ``day``'s increment, changed.

    Each keeps its ``uniq_id`` and gets ``day``'s date and a new customer (with that
    customer's name and home city), item, quantity, amount and status: a correction
    that moves the line into another day and ISO week and reassigns it.
    """
    count = dict(shape.corrections).get(day, 0)
    if count <= 0:
        return []
    rng = _rng(shape, day, "corrections")
    people = _population(shape.seed, shape.customers, shape.regular_customers)
    source_day = (day - CORRECTION_LAG).isoformat()
    picks = rng.choice(shape.orders_per_day, size=min(count, shape.orders_per_day), replace=False)
    stamp = timestamp(day)
    lines = []
    for line in picks.tolist():
        customer = int(rng.integers(0, shape.customers))
        city = int(people.home_city[customer])
        item = int(rng.integers(0, len(ITEMS)))
        quantity = int(rng.integers(1, 6))
        refunded = with_status and day >= shape.status_since and rng.random() < 0.5
        tail = (",refunded" if refunded else ",shipped") if with_status else ""
        lines.append(
            f"{stable_hex(shape.seed, source_day, 'order', line)},{stamp},{city},{CITIES[city]},"
            f"{customer},{people.first_names[customer]},{people.last_names[customer]},{item},"
            f"{ITEMS[item][0]},{quantity},{quantity * ITEMS[item][1]}{tail}"
        )
    return lines


def _row_order(shape: SyntheticShape, day: date, lines: int) -> np.ndarray:
    """Which line each file row shows: every line once, some repeated, all shuffled."""
    rng = _rng(shape, day, "duplicates")
    repeated = np.flatnonzero(rng.random(lines) < shape.duplicate_share)
    extra = rng.integers(1, shape.max_extra_copies + 1, repeated.size)
    rows = np.concatenate([np.arange(lines), np.repeat(repeated, extra)])
    return rows[rng.permutation(rows.size)]


def _order_rows(
    shape: SyntheticShape, day: date, with_status: bool, increment: bool
) -> Iterator[str]:
    lines = _order_lines(shape, day, with_status)
    if increment:
        lines += _correction_lines(shape, day, with_status)
    for line in _row_order(shape, day, len(lines)).tolist():
        yield lines[line]


def _activity_rows(shape: SyntheticShape, day: date) -> Iterator[str]:
    """A sparse activity log: roughly one action per hundred orders, like the real one."""
    rng = _rng(shape, day, "activity")
    count = int(rng.integers(max(1, shape.orders_per_day // 150), shape.orders_per_day // 75 + 2))
    actions = rng.integers(0, 4, count).tolist()
    customers = rng.integers(0, shape.customers, count).tolist()
    quantities = rng.integers(0, 25, count).tolist()
    stamp = timestamp(day)
    for line in range(count):
        uniq_id = stable_hex(shape.seed, day.isoformat(), "activity", line)
        yield f"{uniq_id},{stamp},{actions[line]},{customers[line]},{quantities[line]}"


def _research_rows(shape: SyntheticShape, day: date) -> Iterator[str]:
    rng = _rng(shape, day, "research")
    stamp = timestamp(day)
    for category in _RESEARCH_CATEGORIES:
        for geo in _RESEARCH_GEOS:
            qty = int(rng.integers(0, 10))
            yield f"{stamp},{category},{geo},{qty},{qty * _RESEARCH_UNIT_PRICE}"


def _numbered(rows: Iterable[str], first_id: int) -> Iterator[str]:
    for row_id, row in enumerate(rows, start=first_id):
        yield f"{row_id},{row}\n"


def _blocks(lines: Iterable[str]) -> Iterator[bytes]:
    """Group text lines into byte blocks large enough to keep socket writes cheap."""
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= _ROWS_PER_BLOCK:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def _file_lines(
    shape: SyntheticShape, name: str, days: list[date], increment: bool
) -> Iterator[str]:
    if name == "price_log":
        # No header, one price per item: the real report and increments look the same.
        yield from (f"{item},{price}\n" for item, price in ITEMS)
        return
    if name == "customer_research":
        yield RESEARCH_COLUMNS + "\n"
        for day in days:
            yield from (row + "\n" for row in _research_rows(shape, day))
        return
    # The row id runs on across days: it is only a row number in the file.
    next_id = 1
    if name == "user_activity_log":
        yield ACTIVITY_COLUMNS + "\n"
        for day in days:
            rows = list(_numbered(_activity_rows(shape, day), next_id))
            next_id += len(rows)
            yield from rows
        return
    with_status = has_status_column(shape, days)
    yield ORDER_COLUMNS + (",status\n" if with_status else "\n")
    for day in days:
        for row in _order_rows(shape, day, with_status, increment):
            yield f"{next_id},{row}\n"
            next_id += 1


def iter_file(
    shape: SyntheticShape, name: str, days: Iterable[date], *, increment: bool = False
) -> Iterator[bytes]:
    """Stream the CSV file ``name`` (without ``_inc``) covering ``days``, as UTF-8 blocks.

    ``increment``: the file of one day's increment, which carries that day's corrections.
    """
    if name not in FILE_NAMES:
        raise ValueError(f"unknown report file {name!r}; expected one of {FILE_NAMES}")
    return _blocks(_file_lines(shape, name, sorted(days), increment))


def file_bytes(
    shape: SyntheticShape, name: str, days: Iterable[date], *, increment: bool = False
) -> bytes:
    """The whole file at once; convenient for small files and tests."""
    return b"".join(iter_file(shape, name, days, increment=increment))

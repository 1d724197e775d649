"""Load report API extracts (CSV files) into the ``staging`` schema.

Two entry points, one per kind of batch: :func:`load_increment` for one day and
:func:`load_report` for the full report's day range. Both work in two phases:

1. **Validate every file before touching the database.** Header, field count, types,
   ``status`` values and every row's date are checked; the first problem raises
   :class:`BadInputError` naming the day, the file, the line and the reason. Nothing is
   dropped silently: the only rows removed are exact repeats of an order line (the source
   sends each one several times, identical but for the file's row number ``id``); two rows
   with the same key and different values are bad input, because we could not say which
   one is true.
2. **Replace the period in one transaction.** Each file is streamed with ``COPY`` into a
   temporary table; then that period's rows (and rows elsewhere whose key came back in
   this batch, i.e. a key that moved days) are deleted, the new rows inserted and one
   ``staging.load_audit`` row per file written. A single commit at the end means any
   failure leaves staging exactly as it was, and a rerun of the same batch leaves it
   identical. Order lines and activity rows record the day of the batch that wrote them
   (``source_day``): a row from a newer batch (a later increment's correction) is never
   replaced by an older batch, so the order of loads does not change the result; the
   days a correction moved lines out of are returned for the marts to rebuild.

A file given as ``None`` is one the API answered 404 for: a warning names the day and
the file, and that table's rows for the period are left untouched (an absent file is no
evidence that the day's rows are gone). A file that is there but holds no rows (a header
only, or 0 bytes) is the source saying the table has no rows for the period: the period's
rows are replaced by nothing. A 0-byte file of a table that has a header is accepted too
(the SPEC allows it) but logged as a warning, since it is also what a truncated upload
looks like.

Every value must fit not only staging but also the mart column it feeds (see
:class:`Column` ``maximum``): a value the loader accepts must never fail the dbt build.

Validation uses the ``csv`` module plus checks on each column's *distinct* values: order
extracts repeat the same cities, items, amounts and timestamps over and over, so checking
uniques is much cheaper than checking 200k rows one by one, and ``csv`` gives exact line
numbers (quoted line breaks included) where pandas would not report short rows at all.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ingestion.dates import CALENDAR_END, CALENDAR_START

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("user_order_log", "user_activity_log", "customer_research", "price_log")
STATUSES = frozenset({"shipped", "refunded"})
DEFAULT_STATUS = "shipped"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

_INTEGER = re.compile(r"-?\d{1,19}")
_INTEGER_LINES = re.compile(r"(?:-?\d{1,19}\n)*-?\d{1,19}")
_AMOUNT = re.compile(r"-?\d{1,12}(?:\.\d{1,2})?")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_INT4_MAX = 2**31 - 1
_INT8_MAX = 2**63 - 1
# The largest value of a numeric(10,2) column (legacy mart.f_sales.payment_amount).
MART_AMOUNT_MAX = Decimal("99999999.99")


class BadInputError(ValueError):
    """A source file that cannot be loaded as it is; nothing was written to staging.

    ``day`` is the increment's day (``2024-10-02``) or the report's range
    (``2024-09-08..2024-09-30``); ``line`` is the physical line in the file (1 = first
    line), or None when the problem is the file as a whole.
    """

    def __init__(self, day: str, file: Path, line: int | None, reason: str) -> None:
        self.day = day
        self.file = file
        self.line = line
        self.reason = reason
        where = f"line {line}" if line is not None else "whole file"
        super().__init__(f"bad input for day {day}: {file}, {where}: {reason}")


# --- what each file looks like -------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One field of a source file and how it is checked.

    ``kind`` is one of ``row_number`` (the file's ``id``: checked, never loaded), ``key``
    (non-empty text), ``text``, ``int`` (int4), ``bigint``, ``amount`` (numeric(14,2)),
    ``timestamp`` (``YYYY-MM-DDTHH:MM:SS``, must fall in the batch's days) and ``status``.

    ``minimum`` and ``maximum`` narrow a number further: to the business rule (a quantity
    of at least 1) and to the narrowest column the value ends up in, staging or mart
    (``limited_by`` names that column for the error message). The staging dbt tests in
    ``_report_api__models.yml`` check the same bounds, so a row written to staging by
    other means fails there before any mart is touched.
    """

    name: str
    kind: str
    minimum: int | Decimal | None = None
    maximum: int | Decimal | None = None
    limited_by: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A source file and the staging table it replaces rows of."""

    name: str
    columns: tuple[Column, ...]
    has_header: bool
    key: tuple[str, ...]
    # Column holding the row's timestamp; None for price_log, dated by the batch instead.
    date_column: str | None
    # A trailing column older extracts lack, and the value its absence means.
    optional_column: Column | None = None
    optional_default: str | None = None

    def header(self, with_optional: bool) -> list[str]:
        names = [column.name for column in self.columns]
        if with_optional and self.optional_column is not None:
            names.append(self.optional_column.name)
        return names

    def staging_columns(self) -> list[str]:
        """Columns written to staging, in the order rows are streamed to COPY."""
        names = [c.name for c in self.columns if c.kind != "row_number"]
        if self.optional_column is not None:
            names.append(self.optional_column.name)
        if self.date_column is None:
            names.insert(0, "price_date")
        return names


SPECS: dict[str, TableSpec] = {
    "user_order_log": TableSpec(
        name="user_order_log",
        columns=(
            Column("id", "row_number"),
            Column("uniq_id", "key"),
            Column("date_time", "timestamp"),
            # Every column below feeds mart.f_sales or a dimension; the legacy marts fix
            # their types (tests/dbt/legacy_marts.sql): ids int4 (kind "int"), quantity
            # bigint, payment_amount numeric(10,2). Names have no width limit: the legacy
            # varchar columns become text on upgrade (macro upgrade_legacy_marts).
            Column("city_id", "int"),
            Column("city_name", "text"),
            Column("customer_id", "int"),
            Column("first_name", "text"),
            Column("last_name", "text"),
            Column("item_id", "int"),
            Column("item_name", "text"),
            Column("quantity", "bigint", minimum=1),
            # Positive even on refunded rows: the mart applies the sign, so the bound is
            # the same both ways. numeric(10,2) is kept in mart.f_sales for existing
            # consumers, so its maximum, not staging's numeric(14,2), is the limit.
            Column(
                "payment_amount",
                "amount",
                minimum=0,
                maximum=MART_AMOUNT_MAX,
                limited_by="mart.f_sales.payment_amount numeric(10,2)",
            ),
        ),
        has_header=True,
        key=("uniq_id",),
        date_column="date_time",
        optional_column=Column("status", "status"),
        optional_default=DEFAULT_STATUS,
    ),
    "user_activity_log": TableSpec(
        name="user_activity_log",
        columns=(
            Column("id", "row_number"),
            Column("uniq_id", "key"),
            Column("date_time", "timestamp"),
            Column("action_id", "int"),
            Column("customer_id", "int"),
            Column("quantity", "bigint", minimum=0),
        ),
        has_header=True,
        key=("uniq_id",),
        date_column="date_time",
    ),
    "customer_research": TableSpec(
        name="customer_research",
        columns=(
            Column("date_id", "timestamp"),
            Column("category_id", "int"),
            Column("geo_id", "int"),
            Column("sales_qty", "bigint", minimum=0),
            Column("sales_amt", "amount", minimum=0),
        ),
        has_header=True,
        key=("date_id", "category_id", "geo_id"),
        date_column="date_id",
    ),
    "price_log": TableSpec(
        name="price_log",
        columns=(Column("item_name", "key"), Column("price", "amount", minimum=0)),
        has_header=False,
        key=("item_name",),
        date_column=None,
    ),
}


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLoad:
    """What one file did to its staging table."""

    table: str
    file: Path
    rows_read: int
    duplicates_dropped: int
    rows_loaded: int
    # Existing rows deleted first: the period's rows plus rows whose key moved days.
    rows_replaced: int = 0
    # Rows of this file not loaded because staging holds their key from a newer batch
    # (a later correction wins over a reload of an older day).
    rows_superseded: int = 0
    # Days outside the batch's period that lost rows to it (a correction re-dated them).
    moved_from_days: tuple[date, ...] = ()


@dataclass
class LoadSummary:
    """The outcome of one batch; ``str()`` is the human summary the CLI prints."""

    batch_id: str
    start_day: date
    end_day: date
    tables: dict[str, TableLoad] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def period(self) -> str:
        return _period_label(self.start_day, self.end_day)

    @property
    def moved_from_days(self) -> list[date]:
        """Days outside this batch whose order lines it moved or replaced (corrections).

        The marts of these days, and of their ISO weeks, no longer match staging until
        they are rebuilt along with the batch's own days.
        """
        orders = self.tables.get("user_order_log")
        return list(orders.moved_from_days) if orders else []

    @property
    def rebuild_days(self) -> list[date]:
        """Every day whose marts this load may have changed: its period and moved-from days."""
        days = {
            self.start_day + timedelta(days=offset)
            for offset in range((self.end_day - self.start_day).days + 1)
        }
        return sorted(days.union(self.moved_from_days))

    def format(self) -> str:
        lines = [f"batch {self.batch_id}, {self.period}:"]
        for name in TABLES:
            if name in self.tables:
                t = self.tables[name]
                lines.append(
                    f"  {name:<18} {t.rows_read:>8} read, {t.duplicates_dropped:>7} repeats"
                    f" dropped, {t.rows_loaded:>8} loaded ({t.rows_replaced} replaced)"
                )
                if t.rows_superseded:
                    lines.append(
                        f"  {'':<18} {t.rows_superseded} rows kept from newer batches"
                        " (a later correction wins)"
                    )
                if t.moved_from_days:
                    days = ", ".join(day.isoformat() for day in t.moved_from_days)
                    lines.append(f"  {'':<18} rows moved here from {days}")
            elif name in self.missing:
                lines.append(f"  {name:<18} missing (404): existing rows for the period kept")
        return "\n".join(lines)

    def one_line(self) -> str:
        loaded = ", ".join(f"{name} {load.rows_loaded}" for name, load in self.tables.items())
        missing = f"; missing: {', '.join(self.missing)}" if self.missing else ""
        return f"batch {self.batch_id}, {self.period}: loaded {loaded or 'nothing'}{missing}"

    def __str__(self) -> str:
        return self.format()


# --- public API -----------------------------------------------------------------------


def load_increment(
    conn: Connection, day: date, files: Mapping[str, Path | None], batch_id: str
) -> LoadSummary:
    """Replace staging's rows for ``day`` with the increment's files, in one transaction.

    ``files`` maps logical table names (:data:`TABLES`) to local CSV paths; ``None`` (or
    a table left out) means the API had no such file, and that table is left untouched.
    price_log rows are dated ``day``.
    """
    return _load(conn, day, day, files, batch_id)


def load_report(
    conn: Connection,
    start_day: date,
    end_day: date,
    files: Mapping[str, Path | None],
    batch_id: str,
) -> LoadSummary:
    """Replace staging's rows for ``start_day..end_day`` with the full report's files.

    Same rules as :func:`load_increment`; price_log rows are dated ``end_day`` (the
    report's ``end_date``), the day those prices were current.
    """
    return _load(conn, start_day, end_day, files, batch_id)


def record_not_found(conn: Connection, day: date, report_id: str) -> None:
    """Record in ``staging.load_audit`` that the API has no increment for ``day``.

    Staging is left as it is; the row says the day was processed (``status`` views and
    the rebuild planner's notion of which weeks are complete read it).
    """
    with conn.cursor() as cur:
        for name in TABLES:
            _audit(cur, report_id, name, day, day, None, "not_found", None)
    conn.commit()


# --- validation -----------------------------------------------------------------------


@dataclass
class ParsedFile:
    """A validated, de-duplicated file, ready to stream to COPY."""

    spec: TableSpec
    path: Path
    rows_read: int
    records: list[tuple[str, ...]]  # staging_columns() order, one per distinct key

    @property
    def duplicates_dropped(self) -> int:
        return self.rows_read - len(self.records)


def parse_file(spec: TableSpec, path: Path, start_day: date, end_day: date) -> ParsedFile:
    """Read and validate one source file; raise :class:`BadInputError` on the first problem.

    Any other exception while reading the file is a loader bug, but it still reaches the
    user as a :class:`BadInputError` naming the day and the file (the original exception
    is chained for the traceback): a bare message such as ``zip() argument 2 is shorter
    than argument 1`` would not say which of a batch's files to look at.
    """
    try:
        return _parse_file(spec, path, start_day, end_day)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(
            _period_label(start_day, end_day),
            path,
            None,
            f"the loader failed while checking this file ({type(exc).__name__}: {exc});"
            " this is a loader bug, please report it with the file",
        ) from exc


def _parse_file(spec: TableSpec, path: Path, start_day: date, end_day: date) -> ParsedFile:
    period = _period_label(start_day, end_day)

    def bad(line: int | None, reason: str) -> BadInputError:
        return BadInputError(period, path, line, reason)

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise bad(None, "file does not exist") from None
    except OSError as exc:
        raise bad(None, f"file cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad(raw[: exc.start].count(b"\n") + 1, "not valid UTF-8") from None

    if not text.strip("\r\n"):
        # No rows for the period (SPEC): a 0-byte file means zero rows, as a header-only
        # file does; only the header-less price_log is expected to look like this.
        if spec.has_header:
            log.warning(
                "%s: %s is empty (%d bytes, no header): read as zero %s rows for %s",
                period,
                path,
                len(raw),
                spec.name,
                period,
            )
        return ParsedFile(spec=spec, path=path, rows_read=0, records=[])

    if "\x00" in text:
        # PostgreSQL text cannot hold NUL; say where it is rather than fail inside COPY.
        raise bad(text.count("\n", 0, text.index("\x00")) + 1, "contains a NUL character")

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns = list(spec.columns)
    try:
        if spec.has_header:
            header = next(reader, None)
            if header is None:
                raise bad(1, "file is empty (expected a header row)")
            if header == spec.header(with_optional=True) and spec.optional_column:
                columns.append(spec.optional_column)
            elif header != spec.header(with_optional=False):
                expected = ",".join(spec.header(with_optional=False))
                if spec.optional_column:
                    expected += f"[,{spec.optional_column.name}]"
                raise bad(1, f"header is {','.join(header)!r}, expected {expected!r}")
        rows, line_of = _read_rows(reader, text, len(columns), bad)
    except csv.Error as exc:
        raise bad(reader.line_num, f"malformed CSV: {exc}") from None

    _check_columns(rows, line_of, columns, start_day, end_day, bad)

    keep = [i for i, column in enumerate(columns) if column.kind != "row_number"]
    names = [columns[i].name for i in keep]
    key_positions = [names.index(name) for name in spec.key]
    records = _distinct_records(rows, line_of, keep, names, key_positions, bad)
    if spec.optional_column is not None and len(columns) == len(spec.columns):
        # Older extract without the optional column: every row means the default.
        records = [(*record, spec.optional_default or "") for record in records]
    if spec.date_column is None:
        records = [(end_day.isoformat(), *record) for record in records]
    return ParsedFile(spec=spec, path=path, rows_read=len(rows), records=records)


def _read_rows(
    reader: Any,
    text: str,
    width: int,
    bad: Callable[[int | None, str], BadInputError],
) -> tuple[list[list[str]], Callable[[int], int]]:
    """All data rows, and a function from row index to the line the row starts on.

    Wrong field counts are bad input. Blank lines are tolerated only at the end of the
    file (a trailing newline or two); a blank line between rows is a truncated row.
    ``reader`` is a csv reader (its type is private to ``_csv``).

    Fast path: without quotes or lone carriage returns every row is exactly one line, so
    ``list(reader)`` (C speed) suffices and a row's line is arithmetic. Otherwise rows are
    read one by one, tracking ``reader.line_num`` so quoted line breaks keep lines exact.
    """
    first_line = reader.line_num + 1
    if '"' not in text and text.count("\r") == text.count("\r\n"):
        rows: list[list[str]] = list(reader)
        starts: list[int] | None = None
    else:
        rows, starts = [], []
        previous_end = reader.line_num
        for row in reader:
            rows.append(row)
            starts.append(previous_end + 1)
            previous_end = reader.line_num

    def line_of(index: int) -> int:
        return first_line + index if starts is None else starts[index]

    while rows and not rows[-1]:
        rows.pop()
    widths = set(map(len, rows))
    if widths - {width}:
        index = next(i for i, row in enumerate(rows) if len(row) != width)
        if not rows[index]:
            raise bad(line_of(index), "blank line between rows (truncated file?)")
        raise bad(
            line_of(index),
            f"expected {width} fields, found {len(rows[index])} (truncated or garbled row)",
        )
    return rows, line_of


def _check_columns(
    rows: list[list[str]],
    line_of: Callable[[int], int],
    columns: Sequence[Column],
    start_day: date,
    end_day: date,
    bad: Callable[[int | None, str], BadInputError],
) -> None:
    """Check every column's distinct values; report the earliest bad line in the file."""
    if not rows:
        return  # a header-only file: zero rows for the period
    first_problem: tuple[int, str] | None = None
    for column, values in zip(columns, zip(*rows, strict=True), strict=True):
        # Cheap whole-column checks first, for the columns whose values are all distinct
        # (one Python call per value would dominate the load of a 200k-row day).
        if column.kind == "text":
            continue  # anything goes; NUL characters were rejected for the whole file
        if column.kind == "key" and all(values):
            continue
        if column.kind == "row_number" and _INTEGER_LINES.fullmatch("\n".join(values)):
            continue
        problems: dict[str, str] = {}
        for value in set(values):
            reason = _value_problem(column, value, start_day, end_day)
            if reason is not None:
                problems[value] = reason
        if not problems:
            continue
        index = next(i for i, value in enumerate(values) if value in problems)
        if first_problem is None or index < first_problem[0]:
            first_problem = (index, problems[values[index]])
    if first_problem is not None:
        index, reason = first_problem
        raise bad(line_of(index), reason)


def _value_problem(column: Column, value: str, start_day: date, end_day: date) -> str | None:
    """Why ``value`` is not acceptable in ``column``, or None when it is."""
    name, kind = column.name, column.kind
    if kind == "text":
        return None
    if kind == "key":
        return None if value.strip() else f"{name} is empty"
    if kind == "status":
        return None if value in STATUSES else f"status {value!r} is not one of shipped, refunded"
    if kind in ("row_number", "int", "bigint"):
        if not _INTEGER.fullmatch(value):
            return f"{name} {value!r} is not an integer"
        number = int(value)
        limit = _INT4_MAX if kind == "int" else _INT8_MAX
        if not -limit <= number <= limit:
            return f"{name} {value} is out of range"
        return _bound_problem(column, value, number)
    if kind == "amount":
        if not _AMOUNT.fullmatch(value):
            return f"{name} {value!r} is not an amount (digits, up to 2 decimals)"
        return _bound_problem(column, value, Decimal(value))
    if kind == "timestamp":
        try:
            if not _TIMESTAMP.fullmatch(value):
                raise ValueError
            moment = datetime.strptime(value, TIMESTAMP_FORMAT)
        except ValueError:
            return f"{name} {value!r} is not a timestamp YYYY-MM-DDTHH:MM:SS"
        if not start_day <= moment.date() <= end_day:
            return f"{name} {value} is outside {_period_description(start_day, end_day)}"
        if not CALENDAR_START <= moment.date() <= CALENDAR_END:
            return (
                f"{name} {value} is outside the marts' calendar {CALENDAR_START.isoformat()}.."
                f"{CALENDAR_END.isoformat()} (dbt vars calendar_start / calendar_end)"
            )
        return None
    raise AssertionError(f"unknown column kind {kind!r}")


def _bound_problem(column: Column, value: str, number: int | Decimal) -> str | None:
    """Why ``number`` is outside the column's ``minimum``/``maximum``, or None."""
    if column.minimum is not None and number < column.minimum:
        return f"{column.name} {value} is below {column.minimum}"
    if column.maximum is not None and number > column.maximum:
        limit = f" ({column.limited_by})" if column.limited_by else ""
        return f"{column.name} {value} is above {column.maximum}, the largest allowed{limit}"
    return None


def _distinct_records(
    rows: list[list[str]],
    line_of: Callable[[int], int],
    keep: list[int],
    names: list[str],
    key_positions: list[int],
    bad: Callable[[int | None, str], BadInputError],
) -> list[tuple[str, ...]]:
    """One record per key; repeats must be identical apart from the dropped columns.

    Exact repeats are removed by ``dict.fromkeys`` (C speed, first occurrence kept, file
    order preserved); only when two distinct records share a key does the slow path run,
    to name the line of the conflicting repeat.
    """
    project = itemgetter(*keep) if len(keep) > 1 else (lambda row: (row[keep[0]],))
    records: list[tuple[str, ...]] = list(dict.fromkeys(map(project, rows)))
    key_of = itemgetter(*key_positions) if len(key_positions) > 1 else itemgetter(key_positions[0])
    if len(set(map(key_of, records))) == len(records):
        return records
    first_seen: dict[object, tuple[str, ...]] = {}
    for index, row in enumerate(rows):
        record = project(row)
        kept = first_seen.setdefault(key_of(record), record)
        if kept != record:
            column = next(n for n, a, b in zip(names, kept, record, strict=True) if a != b)
            position = names.index(column)
            key = ",".join(record[i] for i in key_positions)
            raise bad(
                line_of(index),
                f"key {key} repeats an earlier row with a different {column}"
                f" ({kept[position]!r} vs {record[position]!r})",
            )
    raise AssertionError("a key conflict was detected but not located")


# --- loading --------------------------------------------------------------------------


def _load(
    conn: Connection,
    start_day: date,
    end_day: date,
    files: Mapping[str, Path | None],
    batch_id: str,
) -> LoadSummary:
    if start_day > end_day:
        raise ValueError(f"start_day {start_day} is after end_day {end_day}")
    if not batch_id:
        raise ValueError("batch_id must not be empty")
    unknown = sorted(set(files) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; expected some of {list(TABLES)}")
    if conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
        # We commit (or roll back) as one unit; a caller's open transaction would be
        # committed or discarded with it.
        raise RuntimeError("load needs a connection with no open transaction")

    period = _period_label(start_day, end_day)
    parsed: list[ParsedFile] = []
    missing: list[str] = []
    for name in TABLES:
        path = files.get(name)
        if path is None:
            missing.append(name)
            continue
        parsed.append(parse_file(SPECS[name], Path(path), start_day, end_day))

    summary = LoadSummary(batch_id=batch_id, start_day=start_day, end_day=end_day)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('staging.load_audit')")
            row = cur.fetchone()
            if row is None or row[0] is None:
                raise RuntimeError(
                    "staging schema is not migrated: run `python -m ingestion migrate` first"
                )
            # Serialise loads of the same tables (readers are not blocked): two loads of
            # one day at once would otherwise collide on the keys they both insert.
            for item in parsed:
                cur.execute(
                    sql.SQL("lock table {} in share row exclusive mode").format(
                        sql.Identifier("staging", item.spec.name)
                    )
                )
            for item in parsed:
                summary.tables[item.spec.name] = _replace_period(
                    cur, item, start_day, end_day, batch_id
                )
            for name in missing:
                log.warning(
                    "%s: no %s file (the API answered 404); staging.%s rows for %s left untouched",
                    period,
                    name,
                    name,
                    period,
                )
                _audit(cur, batch_id, name, start_day, end_day, None, "missing", None)
                summary.missing.append(name)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    log.info("%s", summary.one_line())
    return summary


def _replace_period(
    cur: Cursor, item: ParsedFile, start_day: date, end_day: date, batch_id: str
) -> TableLoad:
    """COPY one file into a temp table, then swap the period's rows for it.

    Tables keyed without their date (order lines, activity) can see a key move between
    days: there each row records ``source_day``, the batch's own day (``end_day``), and
    a row from a newer batch is never replaced by an older one, in or outside the
    period. So staging ends the same whatever order the batches are loaded in.
    """
    spec = item.spec
    target = sql.Identifier("staging", spec.name)
    temp = sql.Identifier(f"incoming_{spec.name}")
    columns = spec.staging_columns()
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)

    # The file's columns only, typed as in staging (load metadata is added on insert).
    cur.execute(
        sql.SQL(
            "create temporary table {} on commit drop as select {} from {} with no data"
        ).format(temp, column_list, target)
    )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(item.records)
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("copy {} ({}) from stdin with (format csv)")
        .format(temp, column_list)
        .as_string(cur),
        buffer,
    )

    if spec.date_column is None:
        cur.execute(
            sql.SQL("delete from {} where price_date between %s and %s").format(target),
            (start_day, end_day),
        )
        replaced = cur.rowcount
    elif spec.date_column in spec.key:
        cur.execute(
            sql.SQL("delete from {} where {} >= %s and {} < %s").format(
                target, sql.Identifier(spec.date_column), sql.Identifier(spec.date_column)
            ),
            (start_day, end_day + timedelta(days=1)),
        )
        replaced = cur.rowcount
    else:
        return _replace_movable(cur, item, start_day, end_day, batch_id, temp, column_list)

    cur.execute(
        sql.SQL(
            "insert into {target} ({columns}, batch_id, loaded_at)"
            " select {columns}, %s, now() from {temp}"
        ).format(target=target, columns=column_list, temp=temp),
        (batch_id,),
    )
    return _loaded(cur, item, batch_id, start_day, end_day, cur.rowcount, replaced)


def _replace_movable(
    cur: Cursor,
    item: ParsedFile,
    start_day: date,
    end_day: date,
    batch_id: str,
    temp: sql.Identifier,
    column_list: sql.Composable,
) -> TableLoad:
    """Replace a period of a table whose key does not hold the date (rows can move days).

    1. the period's rows that no newer batch wrote are deleted;
    2. rows on other days whose key comes back in this file, again unless newer, are
       deleted too (the line moved; their days are returned so they can be rebuilt);
    3. the file's rows are inserted, except keys a newer batch holds (kept, counted).
    """
    spec = item.spec
    target = sql.Identifier("staging", spec.name)
    moment = sql.Identifier(spec.date_column or "")
    source_day = end_day
    cur.execute(
        sql.SQL(
            "delete from {target} where {moment} >= %s and {moment} < %s and source_day <= %s"
        ).format(target=target, moment=moment),
        (start_day, end_day + timedelta(days=1), source_day),
    )
    replaced = cur.rowcount

    key_match = sql.SQL(" and ").join(
        sql.SQL("existing.{0} = incoming.{0}").format(sql.Identifier(k)) for k in spec.key
    )
    cur.execute(
        sql.SQL(
            "with moved as ("
            " delete from {target} as existing using {temp} as incoming"
            " where {key_match} and existing.source_day <= %s"
            " returning existing.{moment}::date as day)"
            " select day, count(*) from moved group by day order by day"
        ).format(target=target, temp=temp, key_match=key_match, moment=moment),
        (source_day,),
    )
    moved = cur.fetchall()
    moved_from_days = tuple(day for day, _ in moved)
    replaced += sum(count for _, count in moved)
    if moved:
        log.warning(
            "staging.%s: %d rows of %s moved into %s (same key, this batch is newer)",
            spec.name,
            sum(count for _, count in moved),
            ", ".join(day.isoformat() for day in moved_from_days),
            _period_label(start_day, end_day),
        )

    newer = sql.SQL(" and ").join(
        sql.SQL("kept.{0} = incoming.{0}").format(sql.Identifier(k)) for k in spec.key
    )
    cur.execute(
        sql.SQL(
            "insert into {target} ({columns}, source_day, batch_id, loaded_at)"
            " select {columns}, %s, %s, now() from {temp} as incoming"
            " where not exists (select from {target} as kept where {newer})"
        ).format(target=target, columns=column_list, temp=temp, newer=newer),
        (source_day, batch_id),
    )
    loaded = cur.rowcount
    superseded = len(item.records) - loaded
    if superseded:
        log.warning(
            "staging.%s: %d rows of %s kept as a newer batch corrected them",
            spec.name,
            superseded,
            _period_label(start_day, end_day),
        )
    return _loaded(
        cur,
        item,
        batch_id,
        start_day,
        end_day,
        loaded,
        replaced,
        rows_superseded=superseded,
        moved_from_days=moved_from_days,
    )


def _loaded(
    cur: Cursor,
    item: ParsedFile,
    batch_id: str,
    start_day: date,
    end_day: date,
    rows_loaded: int,
    rows_replaced: int,
    **more: Any,
) -> TableLoad:
    """The file's :class:`TableLoad`, also written to ``staging.load_audit``."""
    load = TableLoad(
        table=item.spec.name,
        file=item.path,
        rows_read=item.rows_read,
        duplicates_dropped=item.duplicates_dropped,
        rows_loaded=rows_loaded,
        rows_replaced=rows_replaced,
        **more,
    )
    _audit(cur, batch_id, item.spec.name, start_day, end_day, item.path, "loaded", load)
    return load


def _audit(
    cur: Cursor,
    batch_id: str,
    table: str,
    start_day: date,
    end_day: date,
    path: Path | None,
    outcome: str,
    load: TableLoad | None,
) -> None:
    cur.execute(
        "insert into staging.load_audit (batch_id, table_name, start_day, end_day, file_name,"
        " outcome, rows_read, duplicates_dropped, rows_loaded, rows_replaced, loaded_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
        (
            batch_id,
            table,
            start_day,
            end_day,
            path.name if path is not None else None,
            outcome,
            load.rows_read if load else None,
            load.duplicates_dropped if load else None,
            load.rows_loaded if load else None,
            load.rows_replaced if load else None,
        ),
    )


def _period_label(start_day: date, end_day: date) -> str:
    if start_day == end_day:
        return start_day.isoformat()
    return f"{start_day.isoformat()}..{end_day.isoformat()}"


def _period_description(start_day: date, end_day: date) -> str:
    if start_day == end_day:
        return f"the day {start_day.isoformat()}"
    return f"the report's days {start_day.isoformat()}..{end_day.isoformat()}"

"""Load report API extracts (CSV files) into the ``staging`` schema.

Two entry points, one per kind of batch: :func:`load_increment` for one day and
:func:`load_report` for the full report's day range. Both run in ONE transaction, in two
phases, and a single commit at the end means any failure leaves staging exactly as it
was (a rerun of the same batch leaves it identical):

1. **Validate every file before any staging table is touched** (:func:`stage_file`).
   The header is checked in Python (it picks the variant: with or without ``status``).
   The rest of the file is streamed from disk, as it is, with ``COPY ... FROM STDIN``
   into a temporary table whose column types and check constraints encode the rules
   (:func:`_column_rules`): integers must parse and fit int4/int8, amounts have at most
   2 decimals, timestamps match ``YYYY-MM-DDTHH:MM:SS`` exactly, fall in the batch's days
   and in the marts' calendar, ``status`` is shipped/refunded, keys are not empty, the
   bounds of :class:`Column` hold. PostgreSQL checks while it copies; its error (with its
   ``line N, column X``) is turned into :class:`BadInputError` naming the day, the file,
   the physical line and the reason, in the loader's long-standing words
   (:func:`_copy_problem`). Then exact repeats (rows identical but for the file's row
   number ``id``; the source sends order lines several times) are folded by one
   ``group by``, and a key with two different records is refused (:func:`_check_columns`,
   one query; the error names the line of the first contradicting row, found by the
   ``_row`` identity column that numbers rows in file order). Nothing is dropped
   silently: we could not say which of two contradicting rows is true.
2. **Replace the period.** That period's rows (and rows elsewhere whose key came back in
   this batch, i.e. a key that moved days) are deleted, the staged rows inserted in index
   order and one ``staging.load_audit`` row per file written. Order lines and activity
   rows record the day of the batch that wrote them (``source_day``): a row from a newer
   batch (a later increment's correction) is never replaced by an older batch, so the
   order of loads does not change the result; the days a correction moved lines out of
   are returned for the marts to rebuild. A batch bigger than what its table holds
   besides the batch's period (a first load, the full report) is inserted with the
   table's indexes dropped, then rebuilt in the same transaction: one sorted build per
   index instead of scattered inserts into five indexes (:data:`BULK_MIN_ROWS`).

Memory stays flat whatever the file size: the file goes to COPY in 1 MiB blocks and no
row is held in Python (de-duplication and checks are SQL on the server). On the error
path only, the file is read again, streamed, with the ``csv`` module to find the record
COPY refused, its physical line (a quoted line break counts as a line, as it always has;
COPY's own count differs there) and the exact value.

Layouts handled as before: a UTF-8 BOM; CRLF, LF or CR line endings, even mixed within a
file (COPY cannot read mixed endings, so such a file is re-read through the ``csv``
module: slower, still streamed); quoted fields with commas or line breaks; trailing blank
lines (a blank line between rows is a truncated file); a quoted empty field, like an
unquoted one, loads as NULL; a NUL character or invalid UTF-8 is refused with its line.
Where PostgreSQL's parsers are more lenient than the old Python checks, the value that
lands is still the same number: an integer with spaces around it or a leading ``+``
loads; ``50`` and ``50.00`` in two repeats of one line are the same amount (an exact
repeat, not a conflict); a field with text after its closing quote (``"ab"c``) is read
as ``abc`` instead of being refused as malformed.

A file given as ``None`` is one the API answered 404 for: a warning names the day and
the file, and that table's rows for the period are left untouched (an absent file is no
evidence that the day's rows are gone). A file that is there but holds no rows (a header
only, or 0 bytes) is the source saying the table has no rows for the period: the period's
rows are replaced by nothing. A 0-byte file of a table that has a header is accepted too
(the SPEC allows it) but logged as a warning, since it is also what a truncated upload
looks like.

Every value must fit not only staging but also the mart column it feeds (see
:class:`Column` ``maximum``): a value the loader accepts must never fail the dbt build.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ingestion import locks
from ingestion.dates import CALENDAR_END, CALENDAR_START

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("user_order_log", "user_activity_log", "customer_research", "price_log")
STATUSES = frozenset({"shipped", "refunded"})
DEFAULT_STATUS = "shipped"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

# ASCII digits only, as PostgreSQL reads numbers (\d would also take "٣" or "１")
_INTEGER = re.compile(r"-?\d{1,19}", re.ASCII)
_AMOUNT = re.compile(r"-?\d{1,12}(?:\.\d{1,2})?", re.ASCII)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_INT4_MAX = 2**31 - 1
_INT8_MAX = 2**63 - 1
# The largest value of a numeric(10,2) column (legacy mart.f_sales.payment_amount).
MART_AMOUNT_MAX = Decimal("99999999.99")
# A batch of at least this many rows, larger than what its staging table holds besides
# the batch's own period (a first load, the full report), is inserted with the table's
# indexes dropped and then rebuilt: one sorted build per index instead of a million
# scattered index inserts (about twice as fast for 727,000 lines, docs/benchmarks.md).
BULK_MIN_ROWS = 100_000


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
    def rows_loaded(self) -> int:
        return sum(load.rows_loaded for load in self.tables.values())

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


# --- validation: COPY into a checked temporary table ----------------------------------

#: Bytes handed to COPY per read: large enough that Python's share is negligible, small
#: enough that memory stays flat whatever the file size.
COPY_CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_NEWLINES = b"\r\n"
# COPY's error context: 'COPY incoming_user_order_log, line 5, column quantity: "x"'.
_COPY_CONTEXT = re.compile(r"\bline (\d+)(?:, column ([^:]+))?")
# PostgreSQL cannot read a file whose unquoted line endings change (CRLF here, LF there);
# the csv module can, so such a file is re-read through it (see _CsvNormalizer).
_MIXED_LINE_ENDINGS = re.compile(r"(unquoted|literal) (carriage return|newline) found in data")
_INT_MIN = {"row_number": -(2**63), "int": -(2**31), "bigint": -(2**63)}


@dataclass
class StagedFile:
    """A file COPYed into a checked temporary table, one row per distinct record.

    ``table`` (a temporary table, dropped at commit) has the file's columns minus the
    row number ``id``, as text for timestamps and typed otherwise, plus ``_row``: the
    1-based number of the record in the file's data rows where it first appears.
    """

    spec: TableSpec
    path: Path
    rows_read: int
    rows_distinct: int
    table: str
    # The file's columns in file order (the optional column included when present).
    file_columns: tuple[Column, ...]
    header_lines: int

    @property
    def duplicates_dropped(self) -> int:
        return self.rows_read - self.rows_distinct

    def row_columns(self) -> list[Column]:
        """The columns of ``table`` (all but the row number), optional column included."""
        names = [c for c in self.file_columns if c.kind != "row_number"]
        if self.spec.optional_column is not None and self.spec.optional_column not in names:
            names.append(self.spec.optional_column)
        return names


def stage_file(
    cur: Cursor, spec: TableSpec, path: Path, start_day: date, end_day: date
) -> StagedFile:
    """Validate one file by COPYing it into a checked temporary table; de-duplicate it.

    Raises :class:`BadInputError` on the first problem, naming the day, the file, the
    line and the reason. The caller's transaction is then aborted: roll it back.

    Any other exception while checking the file is a loader bug, but it still reaches the
    user as a :class:`BadInputError` naming the day and the file (the original exception
    is chained for the traceback): a bare message such as ``zip() argument 2 is shorter
    than argument 1`` would not say which of a batch's files to look at. Connection
    failures are not bad input and pass through unchanged.
    """
    try:
        return _stage_file(cur, spec, path, start_day, end_day)
    except (BadInputError, psycopg2.OperationalError, psycopg2.InterfaceError):
        raise
    except Exception as exc:
        raise BadInputError(
            _period_label(start_day, end_day),
            path,
            None,
            f"the loader failed while checking this file ({type(exc).__name__}: {exc});"
            " this is a loader bug, please report it with the file",
        ) from exc


def _stage_file(
    cur: Cursor, spec: TableSpec, path: Path, start_day: date, end_day: date
) -> StagedFile:
    period = _period_label(start_day, end_day)

    def bad(line: int | None, reason: str) -> BadInputError:
        return BadInputError(period, path, line, reason)

    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise bad(None, "file does not exist") from None
    except OSError as exc:
        raise bad(None, f"file cannot be read: {exc.strerror or exc}") from None
    with handle:
        columns, header_lines = _read_header(spec, path, handle, bad)
        staged = _create_incoming(cur, spec, path, columns, header_lines, start_day, end_day)
        if columns:
            staged.rows_read = _copy_rows(cur, staged, handle, start_day, end_day, bad)
        else:
            # No rows for the period (SPEC): a 0-byte file means zero rows, as a
            # header-only file does; only the header-less price_log is expected to look
            # like this.
            if spec.has_header:
                log.warning(
                    "%s: %s is empty (%d bytes, no header): read as zero %s rows for %s",
                    period,
                    path,
                    path.stat().st_size,
                    spec.name,
                    period,
                )
            staged.file_columns = tuple(spec.columns)
    _distinct_records(cur, staged)
    _check_columns(cur, staged, start_day, end_day, bad)
    return staged


def _read_header(
    spec: TableSpec,
    path: Path,
    handle: BinaryIO,
    bad: Callable[[int | None, str], BadInputError],
) -> tuple[list[Column], int]:
    """Check the header; leave ``handle`` at the first data row.

    Returns the file's columns (empty for a file with no rows at all: 0 bytes or only
    line breaks) and the number of header lines (0 or 1).
    """
    start = len(_BOM) if handle.read(len(_BOM)) == _BOM else 0
    handle.seek(start)
    if _only_newlines(handle):
        return [], 0
    if not spec.has_header:
        return list(spec.columns), 0
    # The first line ends at the first CR, LF or CRLF, as the csv module sees it.
    head = handle.read(64 * 1024)
    ends = [i for i in (head.find(b"\r"), head.find(b"\n")) if i >= 0]
    end = min(ends) if ends else len(head)
    after = end + (2 if head[end : end + 2] == b"\r\n" else 1)
    handle.seek(start + min(after, len(head)))
    first = head[:end]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        _raise_encoding_problem(path, bad)
        raise
    if "\x00" in text:
        _raise_encoding_problem(path, bad)
    header = next(csv.reader([text]), [])
    columns = list(spec.columns)
    if header == spec.header(with_optional=True) and spec.optional_column:
        columns.append(spec.optional_column)
    elif header != spec.header(with_optional=False):
        expected = ",".join(spec.header(with_optional=False))
        if spec.optional_column:
            expected += f"[,{spec.optional_column.name}]"
        raise bad(1, f"header is {','.join(header)!r}, expected {expected!r}")
    return columns, 1


def _only_newlines(handle: BinaryIO) -> bool:
    """Whether the rest of ``handle`` is line breaks only; rewinds to where it was."""
    position = handle.tell()
    try:
        while chunk := handle.read(COPY_CHUNK_BYTES):
            if chunk.strip(_NEWLINES):
                return False
        return True
    finally:
        handle.seek(position)


def _create_incoming(
    cur: Cursor,
    spec: TableSpec,
    path: Path,
    columns: list[Column],
    header_lines: int,
    start_day: date,
    end_day: date,
) -> StagedFile:
    """The temporary table the file is COPYed into; its constraints encode the rules.

    Constraint names start with the column's position in the file, so PostgreSQL (which
    checks a row's constraints in name order) reports a row's first bad field first.
    """
    staged = StagedFile(
        spec=spec,
        path=path,
        rows_read=0,
        rows_distinct=0,
        table=f"distinct_{spec.name}",
        file_columns=tuple(columns),
        header_lines=header_lines,
    )
    definitions = [sql.SQL("_row bigint generated always as identity")]
    all_columns = list(spec.columns)
    if spec.optional_column is not None:
        all_columns.append(spec.optional_column)
    for position, column in enumerate(all_columns, start=1):
        type_name, checks = _column_rules(column, start_day, end_day)
        definition = sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(type_name))
        if column is spec.optional_column and spec.optional_default is not None:
            definition += sql.SQL(" default {}").format(sql.Literal(spec.optional_default))
        for number, check in enumerate(checks, start=1):
            definition += sql.SQL(" constraint {} check (({}) is true)").format(
                sql.Identifier(f"c{position:02d}_{number}_{column.name}"), check
            )
        definitions.append(definition)
    cur.execute(
        sql.SQL("create temporary table {} ({}) on commit drop").format(
            sql.Identifier(f"incoming_{spec.name}"), sql.SQL(", ").join(definitions)
        )
    )
    return staged


def _column_rules(column: Column, start_day: date, end_day: date) -> tuple[str, list[sql.SQL]]:
    """The temporary column's type and its checks, in the order they are reported.

    Integers and amounts are parsed by PostgreSQL's own types (an unparsable value or an
    integer out of the type's range fails COPY, with line and column); timestamps stay
    text so that only the source's exact format ``YYYY-MM-DDTHH:MM:SS`` passes. The
    reasons in error messages come from :func:`_value_problem` on the file's value, so
    they read the same whichever check caught the value.
    """
    name = sql.Identifier(column.name)

    def check(template: str, *args: object) -> sql.SQL:
        return sql.SQL(template).format(name, *(sql.Literal(a) for a in args))

    checks: list[sql.SQL] = []
    kind = column.kind
    if kind == "text":
        return "text", checks
    if kind == "key":
        return "text", [check("btrim({}, E' \\t\\n\\r\\f\\v') <> ''")]
    if kind == "status":
        return "text", [check("{} in ('shipped', 'refunded')")]
    if kind == "timestamp":
        bounds = [
            (start_day, end_day + timedelta(days=1)),
            (CALENDAR_START, CALENDAR_END + timedelta(days=1)),
        ]
        checks = [
            # exactly the source's format and a real moment: the value must read back
            # unchanged (24:00:00, a 60th second, a space for the T, a zone or fraction
            # do not; text the cast cannot read fails COPY, reported the same way)
            check("to_char({0}::timestamp, 'YYYY-MM-DD\"T\"HH24:MI:SS') = {0}"),
            *(
                check(
                    '{0} collate "C" >= {1} and {0} collate "C" < {2}',
                    f"{low.isoformat()}T00:00:00",
                    f"{high.isoformat()}T00:00:00",
                )
                for low, high in bounds
            ),
        ]
        return "text", checks
    if kind in ("row_number", "int", "bigint"):
        type_name = "integer" if kind == "int" else "bigint"
        # the type refuses everything beyond its range but its most negative value
        checks = [check("{} > {}", _INT_MIN[kind])]
    elif kind == "amount":
        type_name = "numeric"
        checks = [check("scale({0}) <= 2 and abs({0}) < 1000000000000")]
    else:
        raise AssertionError(f"unknown column kind {kind!r}")
    if column.minimum is not None:
        checks.append(check("{} >= {}", column.minimum))
    if column.maximum is not None:
        checks.append(check("{} <= {}", column.maximum))
    return type_name, checks


def _copy_rows(
    cur: Cursor,
    staged: StagedFile,
    handle: BinaryIO,
    start_day: date,
    end_day: date,
    bad: Callable[[int | None, str], BadInputError],
) -> int:
    """COPY the data rows from ``handle`` (after the header) into the incoming table.

    Returns the number of rows read. The file is streamed as it is, in
    :data:`COPY_CHUNK_BYTES` blocks; only trailing line breaks are held back (a file may
    end with blank lines). A file whose line endings change mid-file, which COPY cannot
    read, is re-read through the csv module instead (slower, still streamed).
    """
    names = [column.name for column in staged.file_columns]
    column_list = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    statement = (
        sql.SQL("copy {} ({}) from stdin with (format csv, encoding 'UTF8', force_null ({}))")
        .format(sql.Identifier(f"incoming_{staged.spec.name}"), column_list, column_list)
        .as_string(cur)
    )
    cur.execute("savepoint copy_file")
    try:
        cur.copy_expert(statement, _DataRows(handle), size=COPY_CHUNK_BYTES)
    except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
        if exc.pgcode == "22P04" and _MIXED_LINE_ENDINGS.search(str(exc)):
            cur.execute("rollback to savepoint copy_file")
            _raise_encoding_problem(staged.path, bad)
            try:
                with _CsvNormalizer(staged.path, staged.header_lines) as rows:
                    cur.copy_expert(statement, rows, size=COPY_CHUNK_BYTES)
            except (psycopg2.DataError, psycopg2.IntegrityError) as again:
                raise _copy_problem(again, staged, start_day, end_day, bad) from None
        else:
            raise _copy_problem(exc, staged, start_day, end_day, bad) from None
    rows = cur.rowcount
    cur.execute("release savepoint copy_file")
    return rows


class _DataRows:
    """A file's bytes for COPY, minus trailing line breaks (blank lines at the end)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._held = b""

    def read(self, size: int = COPY_CHUNK_BYTES) -> bytes:
        while chunk := self._handle.read(size):
            data = self._held + chunk
            body = data.rstrip(_NEWLINES)
            self._held = data[len(body) :]
            if body:
                return body
        return b""  # what is still held is the file's trailing line breaks


class _CsvNormalizer:
    """A file's data rows re-written by the csv module with LF line endings, for COPY.

    Only for files PostgreSQL cannot read as they are (line endings that change within
    the file). Streams: a few thousand rows at a time. Trailing blank lines are dropped;
    quoted empty fields and unquoted ones both reach COPY as empty (NULL), as in the
    direct path (``force_null``).
    """

    def __init__(self, path: Path, header_lines: int) -> None:
        self._text = path.open(encoding="utf-8-sig", newline="")
        self._reader = csv.reader(self._text, strict=True)
        for _ in range(header_lines):
            next(self._reader, None)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self._blank_rows = 0

    def __enter__(self) -> _CsvNormalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._text.close()

    def read(self, size: int = COPY_CHUNK_BYTES) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        for row in self._reader:
            if not row:
                self._blank_rows += 1
                continue
            self._buffer.write("\n" * self._blank_rows)
            self._blank_rows = 0
            self._writer.writerow(row)
            if self._buffer.tell() >= size:
                break
        return self._buffer.getvalue().encode("utf-8")


def _distinct_records(cur: Cursor, staged: StagedFile) -> None:
    """Fold exact repeats (rows identical but for ``id``) into the staged table."""
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in staged.row_columns())
    cur.execute(
        sql.SQL(
            "create temporary table {distinct} on commit drop as"
            " select {names}, min(_row) as _row from {incoming} group by {names}"
        ).format(
            distinct=sql.Identifier(staged.table),
            names=names,
            incoming=sql.Identifier(f"incoming_{staged.spec.name}"),
        )
    )
    staged.rows_distinct = cur.rowcount
    cur.execute(sql.SQL("analyze {}").format(sql.Identifier(staged.table)))


def _check_columns(
    cur: Cursor,
    staged: StagedFile,
    start_day: date,
    end_day: date,
    bad: Callable[[int | None, str], BadInputError],
) -> None:
    """Set-based checks over the whole file, after COPY checked each value.

    A key may repeat only as an exact repeat: two distinct records with one key are
    refused, naming the line of the first row that contradicts an earlier one.
    """
    spec = staged.spec
    table = sql.Identifier(staged.table)
    key = sql.SQL(", ").join(sql.Identifier(k) for k in spec.key)
    cur.execute(
        sql.SQL("select 1 from {} group by {} having count(*) > 1 limit 1").format(table, key)
    )
    if cur.fetchone() is None:
        return
    # Per key, records in order of first appearance: the second one's first row is
    # where the file first contradicts itself for that key.
    cur.execute(
        sql.SQL(
            "with ranked as (select *, row_number() over (partition by {key} order by _row)"
            " as rank from {table})"
            " select second._row, first._row from ranked as second join ranked as first"
            " using ({key}) where second.rank = 2 and first.rank = 1"
            " order by second._row limit 1"
        ).format(key=key, table=table)
    )
    row, kept_row = cur.fetchone()
    found = _locate_records(staged, {row, kept_row}, bad)
    line, record = found[row].line, found[row].fields
    kept = found[kept_row].fields
    names = [c.name for c in staged.file_columns]
    columns = [c for c in staged.row_columns() if c.name in names]
    cur.execute(
        sql.SQL("select {} from {} where _row in (%s, %s) order by _row").format(
            sql.SQL(", ").join(sql.Identifier(c.name) for c in columns), table
        ),
        (kept_row, row),
    )
    typed_kept, typed_row = cur.fetchall()
    differing = next(
        (c for c, a, b in zip(columns, typed_kept, typed_row, strict=True) if a != b), None
    )
    assert differing is not None, "a key conflict was detected but not located"
    position = names.index(differing.name)
    key_text = ",".join(record[names.index(k)] for k in spec.key)
    raise bad(
        line,
        f"key {key_text} repeats an earlier row with a different {differing.name}"
        f" ({kept[position]!r} vs {record[position]!r})",
    )


# --- translating PostgreSQL's COPY errors ---------------------------------------------


def _copy_problem(
    exc: psycopg2.Error,
    staged: StagedFile,
    start_day: date,
    end_day: date,
    bad: Callable[[int | None, str], BadInputError],
) -> BadInputError:
    """The :class:`BadInputError` for a failed COPY: file line, field and reason.

    COPY's context names a line (``line N`` of the data it was sent) and usually the
    column. The record there is read again from the file with the csv module and
    checked by :func:`_record_problem`, which gives the physical line the record starts
    on (a quoted line break counts, as it always has) and the reason in the words the
    loader has always used. Should that record look fine (COPY's line count drifts from
    the csv module's on line breaks inside quoted fields in rare layouts), the whole
    file is checked row by row in the same way, streamed: slower, but only on this path.
    """
    if exc.pgcode in ("22021", "22P05"):  # invalid byte sequence, NUL included
        _raise_encoding_problem(staged.path, bad)
    pg_reason = (exc.diag.message_primary or str(exc)).strip()
    context = _COPY_CONTEXT.search(exc.diag.context or "")
    if context is not None:
        candidate = _record_at_copy_line(staged, int(context[1]), bad)
        if candidate is not None:
            reason = _record_problem(staged, candidate, start_day, end_day)
            if reason is not None:
                return bad(candidate.line, reason)
    blank: _Record | None = None
    for record in _scan_records(staged, bad):
        if not record.fields:
            blank = blank or record  # tolerated at the end of the file only
            continue
        if blank is not None:
            return bad(blank.line, "blank line between rows (truncated file?)")
        reason = _record_problem(staged, record, start_day, end_day)
        if reason is not None:
            return bad(record.line, reason)
    # PostgreSQL refused something the loader's own rules accept: say so, with its words.
    return bad(None, f"PostgreSQL refused the file: {pg_reason} ({exc.diag.context})")


def _record_problem(
    staged: StagedFile, record: _Record, start_day: date, end_day: date
) -> str | None:
    """Why one data record is bad input, or None."""
    width = len(staged.file_columns)
    if not record.fields:
        return "blank line between rows (truncated file?)"
    if len(record.fields) != width:
        return f"expected {width} fields, found {len(record.fields)} (truncated or garbled row)"
    for column, value in zip(staged.file_columns, record.fields, strict=True):
        reason = _value_problem(column, value, start_day, end_day)
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class _Record:
    number: int  # 1-based among the data rows (the staged table's ``_row``)
    line: int  # the physical line the record starts on (1 = the file's first line)
    copy_line: int  # the line COPY names for it (see _scan_records)
    fields: list[str]


def _scan_records(
    staged: StagedFile, bad: Callable[[int | None, str], BadInputError]
) -> Iterator[_Record]:
    """The file's data records again, read with the csv module; only on the error path.

    ``line`` counts lines as the csv module does (CR, LF and CRLF each end a line, in a
    quoted field too), which is what error messages have always named. ``copy_line``
    follows PostgreSQL's count in the data it was sent (header stripped): one per record
    plus one per line break inside a quoted field, where a break counts if it holds the
    character COPY watches: CR until the first record has ended, then LF for LF files and
    CR for CR and CRLF files (``CopyReadLineText``).
    """
    with staged.path.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        endings: list[str] = []  # line endings of the record being read

        def lines() -> Iterator[str]:
            for line in text:
                endings.append(line[len(line.rstrip("\r\n")) :])
                yield line

        reader = csv.reader(lines(), strict=True)
        watched = "\r"
        copy_line = 0
        try:
            for _ in range(staged.header_lines):
                next(reader, None)
            endings.clear()
            previous_end = reader.line_num
            for number, row in enumerate(reader, start=1):
                copy_line += 1 + sum(watched in ending for ending in endings[:-1])
                if number == 1 and endings:
                    watched = "\n" if endings[-1] == "\n" else "\r"
                endings.clear()
                yield _Record(number, previous_end + 1, copy_line, row)
                previous_end = reader.line_num
        except csv.Error as exc:
            raise bad(reader.line_num, f"malformed CSV: {exc}") from None


def _locate_records(
    staged: StagedFile, records: set[int], bad: Callable[[int | None, str], BadInputError]
) -> dict[int, _Record]:
    """The data records numbered ``records`` (the staged table's ``_row`` values)."""
    found: dict[int, _Record] = {}
    for record in _scan_records(staged, bad):
        if record.number in records:
            found[record.number] = record
            if len(found) == len(records):
                return found
    raise AssertionError(f"records {sorted(records - set(found))} not found in the file")


def _record_at_copy_line(
    staged: StagedFile, copy_line: int, bad: Callable[[int | None, str], BadInputError]
) -> _Record | None:
    """The record COPY's error context names by its ``line N``, if the counts agree."""
    for record in _scan_records(staged, bad):
        if record.copy_line >= copy_line:
            return record
    return None


def _raise_encoding_problem(path: Path, bad: Callable[[int | None, str], BadInputError]) -> None:
    """Raise the file's first encoding problem, if it has one: invalid UTF-8 anywhere
    first, then the first NUL character (PostgreSQL text cannot hold NUL). Streamed."""
    nul_line: int | None = None
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad(number, "not valid UTF-8") from None
            if nul_line is None and b"\x00" in raw:
                nul_line = number
    if nul_line is not None:
        raise bad(nul_line, "contains a NUL character")


# --- value rules (the reasons error messages give) ----------------------------------


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
            # Phase 1: every file is COPYed into its checked temporary table before any
            # staging table is touched; the first bad file aborts the transaction.
            # Server memory for the de-duplication's hash, not this process's.
            cur.execute("set local work_mem = '256MB'")
            staged: list[StagedFile] = []
            missing: list[str] = []
            for name in TABLES:
                path = files.get(name)
                if path is None:
                    missing.append(name)
                    continue
                staged.append(stage_file(cur, SPECS[name], Path(path), start_day, end_day))
            # Phase 2. Serialise loads of the same tables (readers are not blocked): two
            # loads of one day at once would otherwise collide on the keys they insert.
            # The advisory lock (per table, in TABLES order, up to the lock timeout) is
            # what a second load waits on, and fails clearly after; the table lock then
            # keeps out writers that are not loads.
            for item in staged:
                locks.xact_lock(
                    cur,
                    locks.staging_load_lock_key(TABLES.index(item.spec.name)),
                    f"load of staging.{item.spec.name}",
                )
            for item in staged:
                cur.execute(
                    sql.SQL("lock table {} in share row exclusive mode").format(
                        sql.Identifier("staging", item.spec.name)
                    )
                )
            for item in staged:
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
    except BaseException as exc:
        if not conn.closed:
            conn.rollback()
            raise
        # The warehouse ended the session (a restart, pg_terminate_backend, a network
        # cut): the transaction is gone with it, so nothing was written. Say which load,
        # keeping the type Airflow retries.
        if isinstance(exc, psycopg2.OperationalError):
            reason = " ".join(str(exc).split())
            raise psycopg2.OperationalError(
                f"{period} ({batch_id}): the warehouse connection was lost during the load, "
                f"which wrote nothing: {reason}"
            ) from exc
        raise
    log.info("%s", summary.one_line())
    return summary


def _replace_period(
    cur: Cursor, item: StagedFile, start_day: date, end_day: date, batch_id: str
) -> TableLoad:
    """Swap the period's rows in staging for the staged file's rows.

    Tables keyed without their date (order lines, activity) can see a key move between
    days: there each row records ``source_day``, the batch's own day (``end_day``), and
    a row from a newer batch is never replaced by an older one, in or outside the
    period. So staging ends the same whatever order the batches are loaded in.
    """
    spec = item.spec
    target = sql.Identifier("staging", spec.name)
    temp = sql.Identifier(item.table)
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in spec.staging_columns())
    values = _staging_values(item, end_day)

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
        return _replace_movable(cur, item, start_day, end_day, batch_id, column_list, values)

    with _indexes_rebuilt_if_bulk(cur, spec, item.rows_distinct):
        cur.execute(
            sql.SQL(
                "insert into {target} ({columns}, batch_id, loaded_at)"
                " select {values}, %s, now() from {temp} order by {order}"
            ).format(
                target=target,
                columns=column_list,
                values=values,
                temp=temp,
                order=_index_order(spec),
            ),
            (batch_id,),
        )
        loaded = cur.rowcount
    return _loaded(cur, item, batch_id, start_day, end_day, loaded, replaced)


def _replace_movable(
    cur: Cursor,
    item: StagedFile,
    start_day: date,
    end_day: date,
    batch_id: str,
    column_list: sql.Composable,
    values: sql.Composable,
) -> TableLoad:
    """Replace a period of a table whose key does not hold the date (rows can move days).

    1. the period's rows that no newer batch wrote are deleted;
    2. rows on other days whose key comes back in this file, again unless newer, are
       deleted too (the line moved; their days are returned so they can be rebuilt);
    3. the file's rows are inserted, except keys a newer batch holds (kept, counted).
    """
    spec = item.spec
    target = sql.Identifier("staging", spec.name)
    temp = sql.Identifier(item.table)
    moment = sql.Identifier(spec.date_column or "")
    source_day = end_day
    cur.execute(
        sql.SQL(
            "delete from {target} where {moment} >= %s and {moment} < %s and source_day <= %s"
        ).format(target=target, moment=moment),
        (start_day, end_day + timedelta(days=1), source_day),
    )
    replaced = cur.rowcount

    key_match = _keys_equal("existing", "incoming", spec.key)
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
    moved_rows = sum(count for _, count in moved)
    replaced += moved_rows
    if moved:
        log.warning(
            "staging.%s: %d rows of %s moved into %s (same key, this batch is newer)",
            spec.name,
            moved_rows,
            ", ".join(day.isoformat() for day in moved_from_days),
            _period_label(start_day, end_day),
        )

    newer = _keys_equal("kept", "incoming", spec.key)
    with _indexes_rebuilt_if_bulk(cur, spec, item.rows_distinct):
        cur.execute(
            sql.SQL(
                "insert into {target} ({columns}, source_day, batch_id, loaded_at)"
                " select {values}, %s, %s, now() from {temp} as incoming"
                " where not exists (select from {target} as kept where {newer})"
                " order by {order}"
            ).format(
                target=target,
                columns=column_list,
                values=values,
                temp=temp,
                newer=newer,
                order=_index_order(spec),
            ),
            (source_day, batch_id),
        )
        loaded = cur.rowcount
    superseded = item.rows_distinct - loaded
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


@contextmanager
def _indexes_rebuilt_if_bulk(cur: Cursor, spec: TableSpec, rows: int) -> Iterator[None]:
    """Drop the staging table's indexes around a bulk insert, then rebuild them.

    Only when the batch has at least :data:`BULK_MIN_ROWS` rows and the table holds
    fewer rows than that besides the batch (counted up to the batch's size, so the check
    costs at most one pass over as many rows as the insert writes). The drop and the
    rebuild are in the load's transaction: a failure restores the indexes with the rows,
    and other sessions never see the table without them (they wait for the load's lock,
    readers included, for the load's last seconds).
    """
    target = sql.Identifier("staging", spec.name)
    if rows < BULK_MIN_ROWS:
        yield
        return
    cur.execute(
        sql.SQL("select count(*) from (select from {} limit %s) as held").format(target), (rows,)
    )
    if cur.fetchone()[0] >= rows:
        yield
        return
    cur.execute(
        "select c.conname, pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid),"
        " i.indexrelid::regclass::text"
        " from pg_index as i left join pg_constraint as c on c.conindid = i.indexrelid"
        " and c.conrelid = i.indrelid and c.contype in ('p', 'u')"
        " where i.indrelid = %s::regclass order by i.indexrelid",
        (f"staging.{spec.name}",),
    )
    indexes = cur.fetchall()
    for constraint, _, _, index in indexes:
        if constraint:
            cur.execute(
                sql.SQL("alter table {} drop constraint {}").format(
                    target, sql.Identifier(constraint)
                )
            )
        else:
            cur.execute(sql.SQL("drop index {}").format(sql.SQL(index)))
    yield
    cur.execute("set local maintenance_work_mem = '256MB'")
    for constraint, definition, index_definition, _ in indexes:
        if constraint:
            cur.execute(
                sql.SQL("alter table {} add constraint {} {}").format(
                    target, sql.Identifier(constraint), sql.SQL(definition)
                )
            )
        else:
            cur.execute(index_definition)
    log.info(
        "staging.%s: %d rows inserted in bulk, %d indexes rebuilt", spec.name, rows, len(indexes)
    )


def _index_order(spec: TableSpec) -> sql.Composable:
    """The order rows are inserted in: staging's indexes all lead with the key or the
    date, so sorted rows append to a few index pages instead of touching pages all over
    each index (measured: about twice as fast for a day of a million lines)."""
    names = [spec.date_column] if spec.date_column and spec.date_column not in spec.key else []
    names += list(spec.key)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _staging_values(item: StagedFile, end_day: date) -> sql.Composable:
    """The select list turning the staged table's rows into staging's columns."""
    kinds = {c.name: c.kind for c in item.row_columns()}
    values: list[sql.Composable] = []
    for name in item.spec.staging_columns():
        if name not in kinds:  # price_date: price_log rows are dated by the batch
            values.append(sql.Literal(end_day))
        elif kinds[name] == "timestamp":
            values.append(sql.SQL("{}::timestamp").format(sql.Identifier(name)))
        else:
            values.append(sql.Identifier(name))
    return sql.SQL(", ").join(values)


def _keys_equal(left: str, right: str, key: tuple[str, ...]) -> sql.Composable:
    """``left.k = right.k and ...`` over the key's columns."""
    return sql.SQL(" and ").join(
        sql.SQL("{0}.{2} = {1}.{2}").format(
            sql.Identifier(left), sql.Identifier(right), sql.Identifier(column)
        )
        for column in key
    )


def _loaded(
    cur: Cursor,
    item: StagedFile,
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

"""Load report API extracts (CSV files) into the ``staging`` schema, one batch per transaction.

Each file is streamed with ``COPY`` into a temporary table whose column types and domain
CHECK constraints are the rules (:data:`SPECS`, each rule with its message beside it), so
PostgreSQL validates while it reads and its error names the line, the column and the value.
Exact repeats fold with ``select distinct``; a key repeated with other content trips
staging's own primary key and is then located for the message. The newest batch of a row
wins (``source_day``); a batch bigger than what its table holds is inserted with the table's
indexes dropped and rebuilt. Files with mixed line endings are refused, as COPY reads them.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

import psycopg2
from psycopg2 import errors, sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ingestion import locks
from ingestion.dates import CALENDAR_END, CALENDAR_START

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("user_order_log", "user_activity_log", "customer_research", "price_log")
# A batch of at least this many rows, larger than what its staging table holds besides the
# batch's own period (a first load, the full report), is inserted with the table's indexes
# dropped and then rebuilt: one sorted build per index instead of scattered index inserts.
BULK_MIN_ROWS = 100_000
COPY_CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_NEWLINES = b"\r\n"
# COPY's error context: 'COPY incoming_x, line 5, column quantity: "0"' (or ': null input').
_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+): (?:null input|"(.*)"))?', re.DOTALL)
# Codes of PostgreSQL's own input errors that are not a rule of ours.
_OUT_OF_RANGE = "22003"
_BAD_ENCODING = ("22021", "22P05")
_BAD_CSV = "22P04"


class BadInputError(ValueError):
    """A source file that cannot be loaded as it is; nothing was written to staging.

    ``day`` is the increment's day (``2024-10-02``) or the report's range
    (``2024-09-08..2024-09-30``), ``file`` the source file's name, ``line`` its physical line
    (1 = the first) and ``column`` the field's column, each None when it does not apply.
    """

    def __init__(
        self, day: str, file: str | Path, line: int | None, reason: str, column: str | None = None
    ) -> None:
        self.day, self.file, self.line, self.reason, self.column = (
            day,
            Path(file).name,
            line,
            reason,
            column,
        )
        where = "".join(
            [f", line {line}" if line is not None else "", f", column {column}" if column else ""]
        )
        super().__init__(f"bad input: {self.file} of {day}{where}: {reason}")


# --- what each file holds, and its rules ---------------------------------------------------

NOT_AN_INTEGER = "{column} {value!r} is not an integer"
NOT_AN_AMOUNT = "{column} {value!r} is not an amount (digits, up to 2 decimals)"
NOT_A_TIMESTAMP = "{column} {value!r} is not a timestamp YYYY-MM-DDTHH:MM:SS"
OUT_OF_RANGE = "{column} {value} is out of range"  # PostgreSQL's own type range


@dataclass(frozen=True)
class Column:
    """One column of a source file: the type PostgreSQL reads it as, and its rules.

    ``checks`` become CHECK constraints of the column's domain, as ``(SQL on value, message)``;
    ``invalid`` is the message for a field the type cannot read (or an empty one). Messages
    take ``{column}``, ``{value}`` and ``{period}``; ``{start}``/``{end}`` in a check are
    the batch's first day and the day after its last.
    """

    name: str
    sql_type: str = "text"
    invalid: str = ""
    checks: tuple[tuple[str, str], ...] = ()
    loaded: bool = True  # False for the file's row number ``id``
    default: str | None = None  # set for a column the file may lack: what its absence means


def integer(
    name: str, sql_type: str = "integer", minimum: int | None = None, loaded: bool = True
) -> Column:
    """A whole number: int4 for ids (the marts' legacy type), bigint for quantities."""
    checks = [("value is not null", NOT_AN_INTEGER)]
    if minimum is not None:
        checks.append((f"value >= {minimum}", f"{{column}} {{value}} is below {minimum}"))
    return Column(name, sql_type, NOT_AN_INTEGER, tuple(checks), loaded)


def amount(name: str, maximum: str | None = None, limited_by: str = "") -> Column:
    """Money, never negative (refunds are positive; the mart applies the sign); staging holds
    numeric(14,2), ``maximum`` narrows it to the mart column ``limited_by``."""
    checks = [
        ("value is not null and scale(value) <= 2 and abs(value) < 1e12", NOT_AN_AMOUNT),
        ("value >= 0", "{column} {value} is below 0"),
    ]
    if maximum is not None:
        message = f"{{column}} {{value}} is above {maximum}, the largest allowed ({limited_by})"
        checks.append((f"value <= {maximum}", message))
    return Column(name, "numeric", NOT_AN_AMOUNT, tuple(checks))


def moment(name: str) -> Column:
    """A timestamp exactly as the source writes it, inside the batch's days and the calendar."""
    calendar = f"{CALENDAR_START.isoformat()}..{CALENDAR_END.isoformat()}"
    return Column(
        name,
        invalid=NOT_A_TIMESTAMP,
        checks=(
            # the value must read back unchanged: no 24:00:00, space for T, zone or fraction
            ("""to_char(value::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') = value""", NOT_A_TIMESTAMP),
            ('value collate "C" >= {start} and value collate "C" < {end}', "{column} {value} is"
             " outside {period}"),
            (
                f"value collate \"C\" >= '{CALENDAR_START.isoformat()}'"
                f" and value collate \"C\" < '{(CALENDAR_END + timedelta(days=1)).isoformat()}'",
                f"{{column}} {{value}} is outside the marts' calendar {calendar}"
                " (dbt vars calendar_start / calendar_end)",
            ),
        ),
    )  # fmt: skip


def key(name: str) -> Column:
    return Column(name, checks=((r"btrim(value, E' \t\n\r\f\v') <> ''", "{column} is empty"),))


@dataclass(frozen=True)
class TableSpec:
    """A source file (its known columns, in the SPEC's order) and the staging table it feeds."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    date_column: str | None  # None for price_log, dated by the batch (``price_date``)
    has_header: bool = True

    def header(self, with_optional: bool = True) -> list[str]:
        return [c.name for c in self.columns if with_optional or c.default is None]

    @property
    def movable(self) -> bool:
        """Whether a key can move between days (its date is not part of it)."""
        return self.date_column is not None and self.date_column not in self.key


SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "user_order_log",
            (
                integer("id", "bigint", loaded=False),
                key("uniq_id"),
                moment("date_time"),
                # ids are int4, quantity bigint and the amount numeric(10,2) in the legacy
                # mart.f_sales (tests/dbt/legacy_marts.sql): every value must fit the mart
                integer("city_id"),
                Column("city_name"),
                integer("customer_id"),
                Column("first_name"),
                Column("last_name"),
                integer("item_id"),
                Column("item_name"),
                integer("quantity", "bigint", minimum=1),
                amount(
                    "payment_amount", "99999999.99", "mart.f_sales.payment_amount numeric(10,2)"
                ),
                Column(
                    "status",
                    invalid="status {value!r} is not one of shipped, refunded",
                    checks=(
                        (
                            "value in ('shipped', 'refunded')",
                            "status {value!r} is not one of shipped, refunded",
                        ),
                    ),
                    default="shipped",  # older extracts have no status column
                ),
            ),
            key=("uniq_id",),
            date_column="date_time",
        ),
        TableSpec(
            "user_activity_log",
            (
                integer("id", "bigint", loaded=False),
                key("uniq_id"),
                moment("date_time"),
                integer("action_id"),
                integer("customer_id"),
                integer("quantity", "bigint", minimum=0),
            ),
            key=("uniq_id",),
            date_column="date_time",
        ),
        TableSpec(
            "customer_research",
            (
                moment("date_id"),
                integer("category_id"),
                integer("geo_id"),
                integer("sales_qty", "bigint", minimum=0),
                amount("sales_amt"),
            ),
            key=("date_id", "category_id", "geo_id"),
            date_column="date_id",
        ),
        TableSpec(
            "price_log",
            (key("item_name"), amount("price")),
            key=("item_name",),
            date_column=None,
            has_header=False,
        ),
    )
}


# --- results ---------------------------------------------------------------------------------


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
    # Rows of this file not loaded because staging holds their key from a newer batch.
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
        """Days outside this batch whose order lines it moved (their marts need a rebuild)."""
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


# --- public API -------------------------------------------------------------------------------


def load_increment(
    conn: Connection, day: date, files: Mapping[str, Path | None], batch_id: str
) -> LoadSummary:
    """Replace staging's rows for ``day`` with the increment's files, in one transaction.

    ``files`` maps table names (:data:`TABLES`) to local CSV paths named as the source names
    them; ``None`` (or a table left out) is a 404: that table's rows are left untouched.
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

    Same rules as :func:`load_increment`; price_log rows are dated ``end_day``.
    """
    return _load(conn, start_day, end_day, files, batch_id)


def record_not_found(conn: Connection, day: date, report_id: str) -> None:
    """Record in ``staging.load_audit`` that the API has no increment for ``day``."""
    with conn.cursor() as cur:
        for name in TABLES:
            _audit(cur, report_id, name, day, day, None, "not_found", None)
    conn.commit()


# --- phase 1: COPY each file into its checked temporary table ---------------------------------


@dataclass
class StagedFile:
    """A file COPYed into the temporary table ``incoming_<table>``."""

    spec: TableSpec
    path: Path
    day: str  # the batch's period, as errors name it
    columns: list[Column | None]  # the file's columns in file order; None: unknown, ignored
    rows_read: int = 0
    quoted: bool = False  # the file has a quote: a quoted line break may shift line numbers

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(f"incoming_{self.spec.name}")

    @property
    def names(self) -> list[str]:
        """The temporary table's columns COPY fills, in file order."""
        return [c.name if c else f"_unknown_{i}" for i, c in enumerate(self.columns)]

    def bad(self, line: int | None, reason: str, column: str | None = None) -> BadInputError:
        return BadInputError(self.day, self.path, line, reason, column)


def stage_file(
    cur: Cursor, spec: TableSpec, path: Path, start_day: date, end_day: date
) -> StagedFile:
    """COPY one file into its checked temporary table; :class:`BadInputError` on bad input.

    Any other failure while checking the file is a loader bug, but the user still gets a
    :class:`BadInputError` naming the day and the file (connection failures pass through).
    """
    period = _period_label(start_day, end_day)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadInputError(period, path, None, f"file cannot be read: {exc.strerror}") from None
    try:
        with handle:
            return _stage(cur, spec, path, handle, start_day, end_day)
    except (BadInputError, psycopg2.OperationalError, psycopg2.InterfaceError):
        raise
    except Exception as exc:
        raise BadInputError(
            period,
            path,
            None,
            f"the loader failed while checking this file ({type(exc).__name__}: {exc});"
            " this is a loader bug, please report it with the file",
        ) from exc


def _stage(
    cur: Cursor, spec: TableSpec, path: Path, handle: BinaryIO, start_day: date, end_day: date
) -> StagedFile:
    period = _period_label(start_day, end_day)
    head = handle.read(1 << 16)
    start = len(_BOM) if head.startswith(_BOM) else 0
    empty = not head[start:].strip(_NEWLINES) and not handle.read(1)
    staged = StagedFile(spec, path, period, list(spec.columns))
    if empty:
        if spec.has_header:  # what a truncated upload looks like too
            log.warning(
                "%s of %s is empty (%d bytes, no header): read as zero %s rows",
                path.name,
                period,
                path.stat().st_size,
                spec.name,
            )
    elif spec.has_header:
        staged.columns = _header_columns(staged, head[start:])
    _create_incoming(cur, staged, start_day, end_day)
    if not empty:
        handle.seek(start)
        _copy(cur, staged, handle)
    return staged


def _header_columns(staged: StagedFile, head: bytes) -> list[Column | None]:
    """The file's columns by header name: unknown ones ignored, missing required refused."""
    first = re.split(b"[\r\n]", head, maxsplit=1)[0]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise staged.bad(1, "not valid UTF-8") from None
    if "\x00" in text:
        raise staged.bad(1, "contains a NUL character")
    names = next(csv.reader([text]), [])
    known = {column.name: column for column in staged.spec.columns}
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise staged.bad(1, f"the header names column {twice[0]} twice", twice[0])
    for column in staged.spec.columns:
        if column.default is None and column.name not in names:
            raise staged.bad(1, f"the header has no column {column.name}", column.name)
    unknown = [name for name in names if name not in known]
    if unknown:
        log.warning(
            "%s of %s: ignoring column %s, unknown to the project",
            staged.path.name,
            staged.day,
            ", ".join(repr(name) for name in unknown),
        )
    return [known.get(name) for name in names]


def _create_incoming(cur: Cursor, staged: StagedFile, start_day: date, end_day: date) -> None:
    """The temporary table: one domain per checked column (its rules), file order; a column
    the file lacks takes its default, an unknown one is plain text and never read."""
    bounds = {
        "start": sql.Literal(f"{start_day.isoformat()}T00:00:00"),
        "end": sql.Literal(f"{(end_day + timedelta(days=1)).isoformat()}T00:00:00"),
    }
    present = {column.name for column in staged.columns if column is not None}
    absent = [c for c in staged.spec.columns if c.name not in present]
    definitions = []
    names = [*staged.names, *(c.name for c in absent)]
    for name, column in zip(names, [*staged.columns, *absent], strict=True):
        if column is None:
            definitions.append(sql.SQL("{} text").format(sql.Identifier(name)))
            continue
        type_name: sql.Composable = sql.SQL(column.sql_type)
        if column.checks:
            type_name = _domain(staged.spec, column)
            checks = [
                sql.SQL("constraint {} check (({}) is true)").format(
                    sql.Identifier(str(number)), sql.SQL(condition).format(**bounds)
                )
                for number, (condition, _) in enumerate(column.checks, start=1)
            ]
            cur.execute(
                sql.SQL("create domain {} as {} {}").format(
                    type_name, sql.SQL(column.sql_type), sql.SQL(" ").join(checks)
                )
            )
        definition = sql.SQL("{} {}").format(sql.Identifier(column.name), type_name)
        if column.default is not None:
            definition += sql.SQL(" default {}").format(sql.Literal(column.default))
        definitions.append(definition)
    cur.execute(
        sql.SQL("create temporary table {} ({}) on commit drop").format(
            staged.table, sql.SQL(", ").join(definitions)
        )
    )


def _domain(spec: TableSpec, column: Column) -> sql.Identifier:
    return sql.Identifier("pg_temp", f"{spec.name}.{column.name}")


def _copy(cur: Cursor, staged: StagedFile, handle: BinaryIO) -> None:
    columns = sql.SQL(", ").join(map(sql.Identifier, staged.names))
    statement = sql.SQL(
        "copy {} ({}) from stdin with (format csv, header {}, encoding 'UTF8', force_null ({}))"
    ).format(staged.table, columns, sql.SQL(str(staged.spec.has_header).lower()), columns)
    rows = _DataRows(handle)
    try:
        cur.copy_expert(statement.as_string(cur), rows, size=COPY_CHUNK_BYTES)
    except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
        staged.quoted = rows.quoted
        raise _copy_problem(staged, exc) from None
    staged.rows_read, staged.quoted = cur.rowcount, rows.quoted


class _DataRows:
    """A file's bytes for COPY, minus trailing line breaks (blank lines at the end)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._held = b""
        self.quoted = False

    def read(self, size: int = COPY_CHUNK_BYTES) -> bytes:
        while chunk := self._handle.read(size):
            self.quoted = self.quoted or b'"' in chunk
            data = self._held + chunk
            body = data.rstrip(_NEWLINES)
            self._held = data[len(body) :]
            if body:
                return body
        return b""  # what is still held is the file's trailing line breaks


def _copy_problem(staged: StagedFile, exc: psycopg2.Error) -> BadInputError:
    """COPY's error as :class:`BadInputError`: its line, column and value, in our words."""
    message = exc.diag.message_primary or str(exc)
    context = _CONTEXT.search(exc.diag.context or "")
    if context is None:
        return staged.bad(None, f"PostgreSQL refused the file: {message}")
    line, name, value = int(context[1]), context[2], context[3] or ""
    width = len(staged.columns)
    if exc.pgcode in _BAD_ENCODING:
        reason = "contains a NUL character" if "0x00" in message else "not valid UTF-8"
    elif exc.pgcode == _BAD_CSV and message.startswith("missing data for column"):
        found = staged.names.index(message.split('"')[1])
        reason = f"expected {width} fields, found {found} (truncated or garbled row)"
    elif exc.pgcode == _BAD_CSV and message.startswith("extra data"):
        line, text = _record(staged, copy_line=line, read=True)
        found = len(next(csv.reader([text]), []))
        return staged.bad(line, f"expected {width} fields, found {found}")
    elif exc.pgcode == _BAD_CSV and ("newline" in message or "carriage return" in message):
        reason = "line endings change within the file (CRLF, LF or CR): save it with one kind"
    elif exc.pgcode == _BAD_CSV:
        reason = f"malformed CSV: {message.replace(' CSV', '')}"
    elif name == staged.names[0] and context[3] is None and not _record(staged, line, read=True)[1]:
        reason, name = "blank line between rows (truncated file?)", None  # one empty field
    elif name:
        column = next(c for c in staged.columns if c and c.name == name)
        if exc.pgcode == "23514":
            template = column.checks[int(exc.diag.constraint_name) - 1][1]
        else:
            template = OUT_OF_RANGE if exc.pgcode == _OUT_OF_RANGE else column.invalid
        reason = template.format(column=name, value=value, period=_period_words(staged.day))
    else:
        reason = f"PostgreSQL refused the file: {message}"
    return staged.bad(_record(staged, copy_line=line)[0], reason, name)


def _record(
    staged: StagedFile, copy_line: int | None = None, number: int | None = None, read: bool = False
) -> tuple[int, str]:
    """(first physical line, text) of the record COPY numbers ``copy_line``, or of the
    ``number``-th data record.

    Without a quote in the file, a record is a line and COPY's numbers are the file's. Else
    the file is read again (the error path only): COPY counts a line break in a quoted field
    only if it holds the character it ends lines with (LF in LF files, CR in CR and CRLF
    files, CR before the first line ended), while a physical line ends at any CR, LF or CRLF.
    """
    header = 1 if staged.spec.has_header else 0
    if not (staged.quoted or read):
        return (copy_line if number is None else number + header), ""
    with staged.path.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        records = copied = physical = first = 0
        watched, record, in_quote = "\r", "", False
        for line in text:
            physical += 1
            if not in_quote:
                records, copied, first, record = records + 1, copied + 1, physical, ""
            record += line
            ending = line[len(line.rstrip("\r\n")) :]
            in_quote ^= line.count('"') % 2 == 1
            if in_quote:
                copied += watched in ending
                continue
            if records == 1:
                watched = "\n" if ending == "\n" else "\r"
            if copied >= (copy_line or 0) if number is None else records == number + header:
                return first, record.rstrip("\r\n")
    return copy_line or 0, ""


# --- phase 2: replace the period -------------------------------------------------------------


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
        # We commit (or roll back) as one unit; a caller's open transaction would go with it.
        raise RuntimeError("load needs a connection with no open transaction")

    period = _period_label(start_day, end_day)
    summary = LoadSummary(batch_id=batch_id, start_day=start_day, end_day=end_day)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('staging.load_audit')")
            if cur.fetchone()[0] is None:
                raise RuntimeError(
                    "staging schema is not migrated: run `python -m ingestion migrate` first"
                )
            cur.execute("set local work_mem = '256MB'")  # the server's, for the sorts
            staged = [
                stage_file(cur, SPECS[name], Path(path), start_day, end_day)
                for name in TABLES
                if (path := files.get(name)) is not None
            ]
            _lock_tables(cur, [item.spec.name for item in staged])
            for item in staged:
                summary.tables[item.spec.name] = _replace_period(
                    cur, item, start_day, end_day, batch_id
                )
            for name in TABLES:
                if files.get(name) is None:
                    log.warning(
                        "%s: no %s file (the API answered 404); staging.%s rows left untouched",
                        period,
                        name,
                        name,
                    )
                    _audit(cur, batch_id, name, start_day, end_day, None, "missing", None)
                    summary.missing.append(name)
            for item in staged:  # the domains outlive the transaction otherwise
                cur.execute(sql.SQL("drop table {}").format(item.table))
                domains = [_domain(item.spec, c) for c in item.spec.columns if c.checks]
                cur.execute(sql.SQL("drop domain {}").format(sql.SQL(", ").join(domains)))
        conn.commit()
    except BaseException as exc:
        if not conn.closed:
            conn.rollback()
            raise
        # The warehouse ended the session: the transaction is gone with it, so nothing was
        # written. Say which load, keeping the type Airflow retries.
        if isinstance(exc, psycopg2.OperationalError):
            reason = " ".join(str(exc).split())
            raise psycopg2.OperationalError(
                f"{period} ({batch_id}): the warehouse connection was lost during the load, "
                f"which wrote nothing: {reason}"
            ) from exc
        raise
    log.info("%s", summary.one_line())
    return summary


def _lock_tables(cur: Cursor, tables: list[str]) -> None:
    """Serialise loads of a table (readers are not blocked), waiting up to the lock timeout.

    Tables are locked in :data:`TABLES` order, so two loads never wait for each other
    crosswise.
    """
    timeout = locks.lock_timeout_s()
    cur.execute("select current_setting('lock_timeout')")
    previous = cur.fetchone()[0]
    cur.execute(
        "select set_config('lock_timeout', %s, true)", (f"{max(1, round(timeout * 1000))}ms",)
    )
    for name in tables:
        try:
            cur.execute(
                sql.SQL("lock table {} in share row exclusive mode").format(
                    sql.Identifier("staging", name)
                )
            )
        except errors.LockNotAvailable as error:
            raise locks.LockTimeout(
                f"another load of staging.{name} is running; waited {timeout:g} s"
            ) from error
    cur.execute("select set_config('lock_timeout', %s, true)", (previous,))


def _replace_period(
    cur: Cursor, item: StagedFile, start_day: date, end_day: date, batch_id: str
) -> TableLoad:
    """Swap the period's rows in staging for the file's distinct rows.

    Where a key can move between days (order lines, activity) every row records
    ``source_day``, the batch's day (``end_day``), and a row from a newer batch is never
    replaced by an older one, in or outside the period: staging ends the same whatever
    order the batches are loaded in.
    """
    spec = item.spec
    target = sql.Identifier("staging", spec.name)
    day = sql.Identifier(spec.date_column or "price_date")
    newer_only = sql.SQL(" and source_day <= %(day)s" if spec.movable else "")
    params = {"start": start_day, "end": end_day + timedelta(days=1), "day": end_day}
    cur.execute(
        sql.SQL("delete from {t} where {d} >= %(start)s and {d} < %(end)s{newer}").format(
            t=target, d=day, newer=newer_only
        ),
        params,
    )
    replaced = cur.rowcount
    moved: dict[date, int] = {}
    newer = 0
    keys = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    if spec.movable:
        # Rows elsewhere whose key came back: older ones moved here, newer ones stay (they
        # are set aside and put back after the insert, so a conflicting repeat in the file
        # still meets the primary key).
        cur.execute(
            sql.SQL(
                "create temporary table held on commit drop as select * from {t} with no data;"
                " with gone as (delete from {t} where ({k}) in (select {k} from {i})"
                " returning *) insert into held select * from gone;"
                " select {d}::date, source_day > %(day)s, count(*) from held group by 1, 2"
                " order by 1"
            ).format(t=target, k=keys, i=item.table, d=day),
            params,
        )
        for moved_day, is_newer, count in cur.fetchall():
            if is_newer:
                newer += count
            else:
                moved[moved_day] = count
        replaced += sum(moved.values())
        if moved:
            log.warning(
                "staging.%s: %d rows of %s moved into %s (same key, this batch is newer)",
                spec.name,
                sum(moved.values()),
                ", ".join(map(date.isoformat, moved)),
                item.day,
            )

    loaded = [c for c in spec.columns if c.loaded]
    names = [sql.Identifier(c.name) for c in loaded]
    values = [
        sql.SQL("{}::timestamp").format(sql.Identifier(c.name)) if c.name == spec.date_column
        else sql.Identifier(c.name)
        for c in loaded
    ]  # fmt: skip
    if spec.date_column is None:
        names.insert(0, sql.Identifier("price_date"))
        values.insert(0, sql.SQL("%(day)s::date"))
    if spec.movable:
        names.append(sql.Identifier("source_day"))
        values.append(sql.SQL("%(day)s::date"))
    order = [spec.date_column] if spec.movable else []
    cur.execute("savepoint insert_rows")
    try:
        with _indexes_rebuilt_if_bulk(cur, spec, item.rows_read):
            cur.execute(
                sql.SQL(
                    "insert into {t} ({names}, batch_id, loaded_at)"
                    " select distinct {values}, %(batch)s, now() from {i} order by {order}"
                ).format(
                    t=target,
                    names=sql.SQL(", ").join(names),
                    values=sql.SQL(", ").join(values),
                    i=item.table,
                    order=sql.SQL(", ").join(map(sql.Identifier, [*order, *spec.key])),
                ),
                {**params, "batch": batch_id},
            )
            distinct = cur.rowcount
    except errors.UniqueViolation:
        cur.execute("rollback to savepoint insert_rows")
        raise _conflict(cur, item) from None
    if newer:
        log.warning(
            "staging.%s: %d rows of %s kept as a newer batch corrected them",
            spec.name,
            newer,
            item.day,
        )
        cur.execute(
            sql.SQL(
                "delete from {t} where ({k}) in (select {k} from held where source_day > %(day)s);"
                " insert into {t} select * from held where source_day > %(day)s"
            ).format(t=target, k=keys),
            params,
        )
    if spec.movable:
        cur.execute("drop table held")
    load = TableLoad(
        table=spec.name,
        file=item.path,
        rows_read=item.rows_read,
        duplicates_dropped=item.rows_read - distinct,
        rows_loaded=distinct - newer,
        rows_replaced=replaced,
        rows_superseded=newer,
        moved_from_days=tuple(moved),
    )
    _audit(cur, batch_id, spec.name, start_day, end_day, item.path, "loaded", load)
    return load


def _conflict(cur: Cursor, item: StagedFile) -> BadInputError:
    """The first row (in file order) whose key an earlier row holds with other content."""
    spec = item.spec
    loaded = [c.name for c in spec.columns if c.loaded]

    def columns(alias: str, cast: str = "") -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}" + cast).format(sql.Identifier(alias), sql.Identifier(c)) for c in loaded
        )

    cur.execute(
        sql.SQL(
            "with numbered as (select row_number() over (order by ctid) as n, * from {i}),"
            " firsts as (select distinct on ({k}) * from numbered order by {k}, n),"
            " conflict as (select later.n as later, firsts.n as first"
            "  from numbered as later join firsts using ({k})"
            "  where ({later}) is distinct from ({firsts}) order by later.n limit 1)"
            " select numbered.n, {typed}, {text} from numbered join conflict"
            " on numbered.n in (conflict.later, conflict.first) order by numbered.n"
        ).format(
            i=item.table,
            k=sql.SQL(", ").join(map(sql.Identifier, spec.key)),
            later=columns("later"),
            firsts=columns("firsts"),
            typed=columns("numbered"),
            text=columns("numbered", "::text"),
        )
    )
    (_, *kept), (number, *record) = cur.fetchall()
    width = len(loaded)
    column = next(i for i in range(width) if kept[i] != record[i])
    key_text = ",".join(record[width + loaded.index(k)] for k in spec.key)
    return item.bad(
        _record(item, number=number)[0],
        f"key {key_text} repeats an earlier row with a different {loaded[column]}"
        f" ({kept[width + column]!r} vs {record[width + column]!r})",
        loaded[column],
    )


@contextmanager
def _indexes_rebuilt_if_bulk(cur: Cursor, spec: TableSpec, rows: int) -> Iterator[None]:
    """Drop the staging table's indexes around a bulk insert, then rebuild them.

    Only for a batch of at least :data:`BULK_MIN_ROWS` rows when the table holds fewer rows
    than that besides it (counted up to the batch's size). All in the load's transaction:
    other sessions never see the table without its indexes.
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


def _period_words(label: str) -> str:
    """``the day 2024-10-02`` or ``the report's days 2024-09-08..2024-09-30``."""
    return f"the report's days {label}" if ".." in label else f"the day {label}"

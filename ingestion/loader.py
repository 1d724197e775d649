"""Load report API extracts (CSV files) into the ``staging`` schema, one batch per transaction.

The rules are PostgreSQL's: each file is streamed with ``COPY`` into a temporary table whose
column types and domain CHECK constraints encode them (:data:`SPECS`, each rule with its
message beside it), so the server validates while it reads and names line, column and value.
Exact repeats fold with ``select distinct``; a key repeated with other content trips
staging's own primary key and is only then located for the message. The newest batch of a
row wins (``source_day``). Files with mixed line endings are refused, as COPY reads them.
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
from ingestion.dates import CALENDAR_END, CALENDAR_START, days_between

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("user_order_log", "user_activity_log", "customer_research", "price_log")
Files = Mapping[str, Path | None]  # table name -> its downloaded file, None for a 404
# A batch at least this big, and bigger than what its table holds besides its period (a
# first load, the full report), is inserted with the table's indexes dropped and rebuilt.
BULK_MIN_ROWS = 100_000
COPY_CHUNK_BYTES = 1 << 20
_BOM, _NEWLINES = b"\xef\xbb\xbf", b"\r\n"
_COPY = "copy {} ({}) from stdin (format csv, header {}, encoding 'UTF8', force_null ({}))"
# COPY's error context: 'COPY incoming_x, line 5, column quantity: "0"' (or ': null input').
_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+): (?:null input|"(.*)"))?', re.DOTALL)


class BadInputError(ValueError):
    """A source file that cannot be loaded as it is; nothing was written to staging. ``day``
    is the batch's day or days (``2024-09-08..2024-09-30``), ``file`` the source's file name;
    ``line`` (physical, 1 = the first) and ``column`` are None where they do not apply."""

    def __init__(
        self, day: str, file: str | Path, line: int | None, reason: str, column: str | None = None
    ) -> None:
        self.day, self.line, self.reason, self.column = day, line, reason, column
        self.file = Path(file).name
        where = (f", line {line}" if line else "") + (f", column {column}" if column else "")
        super().__init__(f"bad input: {self.file} of {day}{where}: {reason}")


# --- what each file holds, and its rules -----------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a source file: the type PostgreSQL reads it as, and its rules, the
    CHECK constraints of its domain: ``(SQL on value, message)``, in order (a field the
    type cannot read fails the first). Messages take ``{column}``, ``{value}`` (as in the
    file) and ``{period}``; checks take ``{start}`` and ``{end}`` (the batch's days)."""

    name: str
    sql_type: str = "text"
    checks: tuple[tuple[str, str], ...] = ()
    loaded: bool = True  # False for the file's row number ``id``
    default: str | None = None  # for a column the file may lack: what its absence means


def integer(name: str, sql_type: str = "integer", minimum: int | None = None) -> Column:
    """A whole number: int4 for ids (the legacy marts' type), bigint for counts."""
    checks = [("value is not null", "{column} {value!r} is not an integer")]
    if minimum is not None:
        checks.append((f"value >= {minimum}", f"{{column}} {{value}} is below {minimum}"))
    return Column(name, sql_type, tuple(checks), loaded=name != "id")


def amount(name: str, maximum: str = "", limited_by: str = "") -> Column:
    """Money as staging's numeric(14,2) holds it, never negative (refunds are positive: the
    mart applies the sign); ``maximum`` narrows it to the mart column ``limited_by``."""
    not_amount = "{column} {value!r} is not an amount (digits, up to 2 decimals)"
    checks = [("value is not null and scale(value) <= 2 and abs(value) < 1e12", not_amount)]
    checks.append(("value >= 0", "{column} {value} is below 0"))
    if maximum:
        message = f"{{column}} {{value}} is above {maximum}, the largest allowed ({limited_by})"
        checks.append((f"value <= {maximum}", message))
    return Column(name, "numeric", tuple(checks))


def moment(name: str) -> Column:
    """A timestamp written exactly as the source writes it (read as text: it must read back
    unchanged, so no 24:00:00, zone or fraction), in the batch's days and the calendar."""
    exact = """to_char(value::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') = value"""
    first, last, text = CALENDAR_START, CALENDAR_END + timedelta(days=1), 'value collate "C"'
    calendar = (
        f"the marts' calendar {first}..{CALENDAR_END} (dbt vars calendar_start / calendar_end)"
    )
    return Column(
        name,
        checks=(
            (exact, "{column} {value!r} is not a timestamp YYYY-MM-DDTHH:MM:SS"),
            (f"{text} >= {{start}} and {text} < {{end}}", "{column} {value} is outside {period}"),
            (
                f"{text} >= '{first}' and {text} < '{last}'",
                f"{{column}} {{value}} is outside {calendar}",
            ),
        ),
    )


def key(name: str) -> Column:
    return Column(name, checks=((r"btrim(value, E' \t\n\r\f\v') <> ''", "{column} is empty"),))


STATUS = ("value in ('shipped', 'refunded')", "status {value!r} is not one of shipped, refunded")


@dataclass(frozen=True)
class TableSpec:
    """A source file (its known columns, in the SPEC's order) and the staging table it feeds."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    date_column: str | None  # None: price_log, dated by the batch (``price_date``)
    has_header: bool = True

    def header(self, with_optional: bool = True) -> list[str]:
        return [c.name for c in self.columns if with_optional or c.default is None]

    @property
    def movable(self) -> bool:
        """Whether a key can move between days (its date is not part of it)."""
        return self.date_column is not None and self.date_column not in self.key


# fmt: off
SPECS: dict[str, TableSpec] = {spec.name: spec for spec in (
    # Ids are int4, quantity bigint and the amount numeric(10,2) in the legacy mart.f_sales
    # (tests/dbt/legacy_marts.sql): every value must fit the mart too.
    TableSpec("user_order_log", (
        integer("id", "bigint"), key("uniq_id"), moment("date_time"),
        integer("city_id"), Column("city_name"),
        integer("customer_id"), Column("first_name"), Column("last_name"),
        integer("item_id"), Column("item_name"),
        integer("quantity", "bigint", minimum=1),
        amount("payment_amount", "99999999.99", "mart.f_sales.payment_amount numeric(10,2)"),
        # older extracts have no status column: every row is then shipped
        Column("status", checks=(STATUS,), default="shipped"),
    ), key=("uniq_id",), date_column="date_time"),
    TableSpec("user_activity_log", (
        integer("id", "bigint"), key("uniq_id"), moment("date_time"),
        integer("action_id"), integer("customer_id"), integer("quantity", "bigint", minimum=0),
    ), key=("uniq_id",), date_column="date_time"),
    TableSpec("customer_research", (
        moment("date_id"), integer("category_id"), integer("geo_id"),
        integer("sales_qty", "bigint", minimum=0), amount("sales_amt"),
    ), key=("date_id", "category_id", "geo_id"), date_column="date_id"),
    TableSpec("price_log", (key("item_name"), amount("price")), key=("item_name",),
              date_column=None, has_header=False),
)}
# fmt: on


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLoad:
    """What one file did to its staging table."""

    table: str
    file: Path
    rows_read: int
    duplicates_dropped: int
    rows_loaded: int
    rows_replaced: int = 0  # rows deleted: the period's, and those whose key moved here
    rows_superseded: int = 0  # rows not loaded: a newer batch holds their key
    moved_from_days: tuple[date, ...] = ()  # days a correction moved rows away from


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
        days = [self.start_day.isoformat(), self.end_day.isoformat()]
        return days[0] if self.start_day == self.end_day else "..".join(days)

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
        return sorted({*days_between(self.start_day, self.end_day), *self.moved_from_days})

    def format(self) -> str:
        lines, indent = [f"batch {self.batch_id}, {self.period}:"], " " * 20
        for name in TABLES:
            if name in self.missing:
                lines.append(f"  {name:<18} missing (404): existing rows for the period kept")
            if t := self.tables.get(name):
                lines.append(
                    f"  {name:<18} {t.rows_read:>8} read, {t.duplicates_dropped:>7} repeats"
                    f" dropped, {t.rows_loaded:>8} loaded ({t.rows_replaced} replaced)"
                )
            if t and t.rows_superseded:
                lines.append(f"{indent}{t.rows_superseded} rows kept from newer batches")
            if t and t.moved_from_days:
                lines.append(
                    f"{indent}rows moved here from {', '.join(map(str, t.moved_from_days))}"
                )
        return "\n".join(lines)

    def one_line(self) -> str:
        loaded = ", ".join(f"{name} {load.rows_loaded}" for name, load in self.tables.items())
        missing = f"; missing: {', '.join(self.missing)}" if self.missing else ""
        return f"batch {self.batch_id}, {self.period}: loaded {loaded or 'nothing'}{missing}"

    def __str__(self) -> str:
        return self.format()


# --- public API ----------------------------------------------------------------------------


def load_increment(conn: Connection, day: date, files: Files, batch_id: str) -> LoadSummary:
    """Replace staging's rows for ``day`` with the increment's files, in one transaction.

    ``files`` maps table names to local CSV files named as the source names them; ``None``
    (or a table left out) is a 404: that table is left untouched. price_log is dated ``day``.
    """
    return _load(conn, LoadSummary(batch_id, day, day), files)


def load_report(
    conn: Connection, start_day: date, end_day: date, files: Files, batch_id: str
) -> LoadSummary:
    """Replace staging's rows for ``start_day..end_day`` with the full report's files.

    Same rules as :func:`load_increment`; price_log rows are dated ``end_day``.
    """
    return _load(conn, LoadSummary(batch_id, start_day, end_day), files)


def record_not_found(conn: Connection, day: date, report_id: str) -> None:
    """Record in ``staging.load_audit`` that the API has no increment for ``day``."""
    batch = LoadSummary(report_id, day, day)
    with conn.cursor() as cur:
        for name in TABLES:
            _audit(cur, batch, name, "not_found")
    conn.commit()


# --- phase 1: COPY each file into its checked temporary table --------------------------------


@dataclass
class StagedFile:
    """A file COPYed into its temporary table, ``incoming_<table>``."""

    spec: TableSpec
    path: Path
    day: str  # the batch's period, as errors name it
    columns: list[Column | None]  # the file's columns in file order; None: unknown, ignored
    rows_read: int = 0
    quoted: bool = False  # the file holds a quote: COPY's line numbers may need a recount

    @property
    def table(self) -> str:
        return f"incoming_{self.spec.name}"

    @property
    def names(self) -> list[str]:  # the columns COPY fills
        return [c.name if c else f"_unknown_{i}" for i, c in enumerate(self.columns)]

    def bad(self, line: int | None, reason: str, column: str | None = None) -> BadInputError:
        return BadInputError(self.day, self.path, line, reason, column)

    def domain(self, column: Column) -> tuple[str, str]:
        return ("pg_temp", f"{self.spec.name}.{column.name}")


def _stage_file(cur: Cursor, spec: TableSpec, path: Path, batch: LoadSummary) -> StagedFile:
    """COPY one file into its checked temporary table; any failure but the connection's is
    a :class:`BadInputError` naming the day and the file (a loader bug says so)."""
    staged = StagedFile(spec, path, batch.period, list(spec.columns))
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
            start = len(_BOM) if head.startswith(_BOM) else 0
            empty = not head[start:].strip(_NEWLINES) and not handle.read(1)
            if empty and spec.has_header:  # what a truncated upload looks like, too
                size = path.stat().st_size
                log.warning(f"{path.name} of {batch.period} is empty ({size} bytes, no header)")
            elif spec.has_header:
                staged.columns = _header_columns(staged, head[start:])
            _create_incoming(cur, staged, batch)
            if not empty:
                handle.seek(start)
                header = sql.SQL(str(spec.has_header))
                copy = _sql(_COPY, staged.table, staged.names, header, staged.names)
                try:
                    cur.copy_expert(
                        copy.as_string(cur), _DataRows(handle, staged), COPY_CHUNK_BYTES
                    )
                except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
                    raise _copy_problem(staged, exc) from None
                staged.rows_read = cur.rowcount
    except OSError as exc:
        raise staged.bad(None, f"file cannot be read: {exc.strerror or exc}") from None
    except (BadInputError, psycopg2.OperationalError, psycopg2.InterfaceError):
        raise
    except Exception as exc:
        raise staged.bad(
            None,
            f"the loader failed while checking this file ({type(exc).__name__}: {exc});"
            " this is a loader bug, please report it with the file",
        ) from exc
    return staged


def _header_columns(staged: StagedFile, head: bytes) -> list[Column | None]:
    """The file's columns by header name: unknown ones ignored, missing required refused."""
    try:
        text = re.split(b"[\r\n]", head, maxsplit=1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise staged.bad(1, "not valid UTF-8") from None
    if "\x00" in text:
        raise staged.bad(1, "contains a NUL character")
    names = next(csv.reader([text]), [])
    known = {column.name: column for column in staged.spec.columns}
    if twice := [name for name in names if names.count(name) > 1]:
        raise staged.bad(1, f"the header names column {twice[0]} twice", twice[0])
    for column in staged.spec.columns:
        if column.default is None and column.name not in names:
            raise staged.bad(1, f"the header has no column {column.name}", column.name)
    if unknown := ", ".join(repr(name) for name in names if name not in known):
        log.warning(f"{staged.path.name} of {staged.day}: ignoring unknown column {unknown}")
    return [known.get(name) for name in names]


def _create_incoming(cur: Cursor, staged: StagedFile, batch: LoadSummary) -> None:
    """The temporary table, in file order: a domain per checked column holds its rules; a
    column the file lacks takes its default; an unknown one is text, never read."""
    start, end = batch.start_day, batch.end_day + timedelta(days=1)
    bounds = {"start": sql.Literal(f"{start}T00:00:00"), "end": sql.Literal(f"{end}T00:00:00")}
    present = [c.name for c in staged.columns if c is not None]
    absent = [c for c in staged.spec.columns if c.name not in present]
    definitions = []
    pairs = [*zip(staged.names, staged.columns, strict=True), *((c.name, c) for c in absent)]
    for name, column in pairs:
        if column is None or not column.checks:  # unknown columns are text, never read
            definitions.append(_sql("{} {}", name, sql.SQL(column.sql_type if column else "text")))
            continue
        checks = sql.SQL(" ").join(
            _sql("constraint {} check (({}) is true)", str(n), sql.SQL(check).format(**bounds))
            for n, (check, _) in enumerate(column.checks, start=1)
        )
        domain = staged.domain(column)
        cur.execute(_sql("create domain {} as {} {}", domain, sql.SQL(column.sql_type), checks))
        default = sql.Literal(column.default) if column.default else sql.SQL("null")
        definitions.append(_sql("{} {} default {}", name, domain, default))
    cur.execute(_sql("create temporary table {} ({}) on commit drop", staged.table, definitions))


class _DataRows:
    """A file's bytes for COPY, minus trailing line breaks (blank lines at the end); notes
    in ``staged`` whether the file holds a quote."""

    def __init__(self, handle: BinaryIO, staged: StagedFile) -> None:
        self._handle, self._held, self._staged = handle, b"", staged

    def read(self, size: int = COPY_CHUNK_BYTES) -> bytes:
        while chunk := self._handle.read(size):
            self._staged.quoted = self._staged.quoted or b'"' in chunk
            data = self._held + chunk
            body = data.rstrip(_NEWLINES)
            self._held = data[len(body) :]
            if body:
                return body
        return b""  # what is still held is the file's trailing line breaks


def _copy_problem(staged: StagedFile, exc: psycopg2.Error) -> BadInputError:
    """COPY's error as :class:`BadInputError`: its line, column and value, in our words."""
    message, code = exc.diag.message_primary or str(exc), exc.pgcode
    context = _CONTEXT.search(exc.diag.context or "")
    if context is None:
        return staged.bad(None, f"PostgreSQL refused the file: {message}")
    line, name, value, width = int(context[1]), context[2], context[3] or "", len(staged.names)
    column = next((c for c in staged.columns if c and c.name == name), None)
    if code in ("22021", "22P05"):
        reason = "contains a NUL character" if "0x00" in message else "not valid UTF-8"
    elif code == "22P04" and message.startswith("missing data for column"):
        found = staged.names.index(message.split('"')[1])
        reason = f"expected {width} fields, found {found} (truncated or garbled row)"
    elif code == "22P04" and message.startswith("extra data"):
        line, text = _record(staged, copy_line=line, read=True)
        return staged.bad(line, f"expected {width} fields, found {len(next(csv.reader([text])))}")
    elif code == "22P04" and ("newline" in message or "carriage return" in message):
        reason = "line endings change within the file (CRLF, LF or CR): save it with one kind"
    elif code == "22P04":
        reason = f"malformed CSV: {message.replace(' CSV', '')}"
    elif name == staged.names[0] and context[3] is None and not _record(staged, line, read=True)[1]:
        reason, name = "blank line between rows (truncated file?)", None  # one empty field
    elif column is not None:
        rule = int(exc.diag.constraint_name or 1) - 1  # the constraint is named by its number
        template = "{column} {value} is out of range" if code == "22003" else column.checks[rule][1]
        words = ("the report's days " if ".." in staged.day else "the day ") + staged.day
        reason = template.format(column=name, value=value, period=words)
    else:
        reason = f"PostgreSQL refused the file: {message}"
    return staged.bad(_record(staged, copy_line=line)[0], reason, name)


def _record(
    staged: StagedFile, copy_line: int = 0, number: int | None = None, read: bool = False
) -> tuple[int, str]:
    """(first physical line, text) of the record COPY numbers ``copy_line``, or of the
    ``number``-th data record: COPY's line number itself, unless a quote makes the file
    worth reading again. COPY counts a line break in a quoted field only if it holds the
    character it ends lines with (LF, or CR in CR and CRLF files and before the first line
    ended); a physical line ends at any CR, LF or CRLF."""
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
            if copied >= copy_line if number is None else records == number + header:
                return first, record.rstrip("\r\n")
    return copy_line, ""


# --- phase 2: replace the period -------------------------------------------------------------

# {t}: the staging table, {i}: the file's temporary table, {k}: the key, {d}: the date column
_DELETE_PERIOD = "delete from {t} where {d} >= %(start)s and {d} < %(end)s"
_SET_ASIDE = (
    "create temporary table held on commit drop as select * from {t} with no data;"
    " with gone as (delete from {t} where ({k}) in (select {k} from {i}) returning *)"
    " insert into held select * from gone;"
    " select {d}::date, source_day > %(day)s, count(*) from held group by 1, 2 order by 1"
)
_INSERT = (
    "insert into {t} ({columns}, batch_id, loaded_at)"
    " select distinct {values}, %(batch)s, now() from {i} order by {order}"
)
_PUT_BACK = (
    "delete from {t} where ({k}) in (select {k} from held where source_day > %(day)s);"
    " insert into {t} select * from held where source_day > %(day)s; drop table held"
)
_CONFLICT = (
    "with numbered as (select row_number() over (order by ctid) as n, * from {i}),"
    " firsts as (select distinct on ({k}) * from numbered order by {k}, n),"
    " conflict as (select later.n as later, firsts.n as first"
    "  from numbered as later join firsts using ({k})"
    "  where ({later}) is distinct from ({firsts}) order by later.n limit 1)"
    " select numbered.n, {typed}, {text} from numbered join conflict"
    " on numbered.n in (conflict.later, conflict.first) order by numbered.n"
)


def _load(conn: Connection, batch: LoadSummary, files: Files) -> LoadSummary:
    if batch.start_day > batch.end_day:
        raise ValueError(f"start_day {batch.start_day} is after end_day {batch.end_day}")
    if not batch.batch_id:
        raise ValueError("batch_id must not be empty")
    if unknown := sorted(set(files) - set(TABLES)):
        raise ValueError(f"unknown tables {unknown}; expected some of {list(TABLES)}")
    if conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
        # We commit (or roll back) as one unit; a caller's open transaction would go with it.
        raise RuntimeError("load needs a connection with no open transaction")
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('staging.load_audit') is null")
            if cur.fetchone()[0]:
                raise RuntimeError("staging is not migrated: run `python -m ingestion migrate`")
            cur.execute("set local work_mem = '256MB'")  # the server's, for the sorts
            staged = [
                _stage_file(cur, SPECS[name], Path(path), batch)
                for name in TABLES
                if (path := files.get(name)) is not None
            ]
            _lock_tables(cur, [item.spec.name for item in staged])
            for item in staged:
                batch.tables[item.spec.name] = _replace_period(cur, item, batch)
            batch.missing = [name for name in TABLES if files.get(name) is None]
            for name in batch.missing:
                log.warning(f"{batch.period}: no {name} file (404); its staging rows are kept")
                _audit(cur, batch, name, "missing")
            for item in staged:  # domains would outlive the transaction
                domains = [item.domain(c) for c in item.spec.columns if c.checks]
                cur.execute(_sql("drop table {}; drop domain {}", item.table, domains))
        conn.commit()
    except BaseException as exc:
        if not conn.closed:
            conn.rollback()
            raise
        # The warehouse ended the session: the transaction went with it, so nothing was
        # written. Say which load, keeping the type Airflow retries.
        if isinstance(exc, psycopg2.OperationalError):
            raise psycopg2.OperationalError(
                f"{batch.period} ({batch.batch_id}): the warehouse connection was lost during"
                f" the load, which wrote nothing: {' '.join(str(exc).split())}"
            ) from exc
        raise
    log.info("%s", batch.one_line())
    return batch


def _lock_tables(cur: Cursor, tables: list[str]) -> None:
    """One load of a table at a time (readers go on), waiting up to the lock timeout."""
    timeout = locks.lock_timeout_s()
    cur.execute("select current_setting('lock_timeout')")
    previous = cur.fetchone()[0]
    cur.execute("select set_config('lock_timeout', %s, true)", (f"{max(1, timeout * 1000):.0f}",))
    for name in tables:
        try:
            cur.execute(_sql("lock table {} in share row exclusive mode", ("staging", name)))
        except errors.LockNotAvailable as error:
            message = f"another load of staging.{name} is running; waited {timeout:g} s"
            raise locks.LockTimeout(message) from error
    cur.execute("select set_config('lock_timeout', %s, true)", (previous,))


def _replace_period(cur: Cursor, item: StagedFile, batch: LoadSummary) -> TableLoad:
    """Swap the period's rows in staging for the file's distinct rows. Where a key can move
    between days, a row from a newer batch (``source_day``) is never replaced by an older
    one: staging ends the same whatever order batches come in."""
    spec, day = item.spec, batch.end_day
    names = {"t": ("staging", spec.name), "i": item.table, "k": list(spec.key)}
    names["d"] = spec.date_column or "price_date"
    params = dict(start=batch.start_day, end=day + timedelta(1), day=day, batch=batch.batch_id)
    older = " and source_day <= %(day)s" if spec.movable else ""
    cur.execute(_sql(_DELETE_PERIOD + older, **names), params)
    replaced, moved, newer = cur.rowcount, {}, 0  # moved: rows per day they moved from
    if spec.movable:
        # Rows elsewhere whose key came back: older ones moved here; newer ones are set
        # aside and put back after the insert (so the file's rows still meet the key).
        cur.execute(_sql(_SET_ASIDE, **names), params)
        found = cur.fetchall()
        moved = {moved_day: count for moved_day, is_newer, count in found if not is_newer}
        newer = sum(count for _, is_newer, count in found if is_newer)
        replaced += sum(moved.values())
        if moved:
            days = ", ".join(map(str, moved))
            log.warning(f"staging.{spec.name}: {sum(moved.values())} rows moved from {days}")

    # the batch's day dates price_log's rows and the movable tables' source_day
    extra = ["source_day"] if spec.movable else [] if spec.date_column else ["price_date"]
    columns = [c.name for c in spec.columns if c.loaded]
    values = [_sql("{}::timestamp" if c == spec.date_column else "{}", c) for c in columns]
    columns, values = columns + extra, values + [sql.SQL("%(day)s::date")] * len(extra)
    order = [spec.date_column, *spec.key] if spec.movable else list(spec.key)
    cur.execute("savepoint insert_rows")
    try:
        with _indexes_rebuilt_if_bulk(cur, spec, item.rows_read):
            insert = _sql(_INSERT, columns=columns, values=values, order=order, **names)
            cur.execute(insert, params)
            distinct = cur.rowcount
    except errors.UniqueViolation:
        cur.execute("rollback to savepoint insert_rows")
        raise _conflict(cur, item) from None
    if spec.movable:
        cur.execute(_sql(_PUT_BACK, **names), params)
    if newer:
        log.warning(f"staging.{spec.name}: {newer} rows kept as a newer batch corrected them")
    read = item.rows_read
    load = TableLoad(
        spec.name, item.path, read, read - distinct, distinct - newer, replaced, newer, tuple(moved)
    )
    _audit(cur, batch, spec.name, "loaded", load)
    return load


def _conflict(cur: Cursor, item: StagedFile) -> BadInputError:
    """The first row, in file order, whose key an earlier row holds with other content."""
    columns = [c.name for c in item.spec.columns if c.loaded]

    def of(table: str, cast: str = "") -> list[sql.Composable]:
        return [_sql("{}.{}" + cast, table, column) for column in columns]

    parts = {"later": of("later"), "firsts": of("firsts"), "typed": of("numbered")}
    parts["text"] = of("numbered", "::text")
    cur.execute(_sql(_CONFLICT, i=item.table, k=list(item.spec.key), **parts))
    (_, *kept), (number, *record) = cur.fetchall()
    width = len(columns)
    differs = next(i for i in range(width) if kept[i] != record[i])
    key_text = ",".join(record[width + columns.index(k)] for k in item.spec.key)
    return item.bad(
        _record(item, number=number)[0],
        f"key {key_text} repeats an earlier row with a different {columns[differs]}"
        f" ({kept[width + differs]!r} vs {record[width + differs]!r})",
        columns[differs],
    )


# Each index of a staging table as the statements that drop it and build it again.
_INDEXES = """
select format('alter table %%s drop constraint %%I', conrelid::regclass, conname),
    format('alter table %%s add constraint %%I %%s', conrelid::regclass, conname,
        pg_get_constraintdef(oid))
from pg_constraint where conrelid = %(t)s::regclass and contype in ('p', 'u')
union all
select format('drop index %%s', indexrelid::regclass), pg_get_indexdef(indexrelid)
from pg_index where indrelid = %(t)s::regclass
    and not exists (select from pg_constraint where conindid = indexrelid)
"""


@contextmanager
def _indexes_rebuilt_if_bulk(cur: Cursor, spec: TableSpec, rows: int) -> Iterator[None]:
    """Drop the staging table's indexes around a bulk insert (see :data:`BULK_MIN_ROWS`),
    then rebuild them, in the load's transaction: no one sees the table without them."""
    target = ("staging", spec.name)
    if rows >= BULK_MIN_ROWS:
        cur.execute(_sql("select count(*) from (select from {} limit %s) as held", target), (rows,))
    if rows < BULK_MIN_ROWS or cur.fetchone()[0] >= rows:
        yield
        return
    cur.execute(_INDEXES, {"t": f"staging.{spec.name}"})
    indexes = cur.fetchall()
    for drop, _ in indexes:
        cur.execute(drop)
    yield
    cur.execute("set local maintenance_work_mem = '256MB'")
    for _, build in indexes:
        cur.execute(build)
    log.info(f"staging.{spec.name}: {rows} rows inserted in bulk, {len(indexes)} indexes rebuilt")


_COUNTS = ("rows_read", "duplicates_dropped", "rows_loaded", "rows_replaced")


def _audit(
    cur: Cursor, batch: LoadSummary, table: str, outcome: str, load: TableLoad | None = None
) -> None:
    counts = [getattr(load, name) if load else None for name in _COUNTS]
    cur.execute(
        "insert into staging.load_audit (batch_id, table_name, start_day, end_day, file_name,"
        " outcome, rows_read, duplicates_dropped, rows_loaded, rows_replaced, loaded_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
        (batch.batch_id, table, batch.start_day, batch.end_day, load and load.file.name, outcome)
        + tuple(counts),
    )


def _sql(template: str, *parts: object, **named: object) -> sql.Composed:
    """``template`` with its parts quoted: a str is an identifier, a tuple a qualified one,
    a list a comma-separated list; SQL passes as it is."""

    def quote(part: object) -> sql.Composable:
        if isinstance(part, sql.Composable):
            return part
        if isinstance(part, list):
            return sql.SQL(", ").join(map(quote, part))
        return sql.Identifier(*part) if isinstance(part, tuple) else sql.Identifier(str(part))

    return sql.SQL(template).format(*map(quote, parts), **{k: quote(v) for k, v in named.items()})

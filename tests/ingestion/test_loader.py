"""The staging loader against the real course extracts, on a real PostgreSQL.

Expected numbers are computed independently from the fixture CSVs with the ``csv``
module, never taken from the loader. Bad files are crafted from tmp_path copies.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import loader
from ingestion.loader import BadInputError, LoadSummary, load_increment, load_report
from ingestion.migrate import migrate
from support.extract_files import fetch_rows as query

REPORT_START, REPORT_END = date(2024, 9, 8), date(2024, 9, 30)
DAY_OLD_FORMAT, DAY_NEW_FORMAT = date(2024, 10, 1), date(2024, 10, 2)
STAGING_TABLES = ("user_order_log", "user_activity_log", "customer_research", "price_log")
ORDER_HEADER = (
    "id,uniq_id,date_time,city_id,city_name,customer_id,first_name,last_name,"
    "item_id,item_name,quantity,payment_amount"
)


@pytest.fixture
def conn(pg_conn):
    """A migrated, empty staging schema."""
    migrate(pg_conn)
    return pg_conn


def report_files(fixtures_dir: Path) -> dict[str, Path | None]:
    return {name: fixtures_dir / "report" / f"{name}.csv" for name in STAGING_TABLES}


def increment_files(fixtures_dir: Path, day: date) -> dict[str, Path | None]:
    folder = fixtures_dir / "increments" / day.isoformat()
    files: dict[str, Path | None] = {}
    for name in STAGING_TABLES:
        path = folder / f"{name}_inc.csv"
        files[name] = path if path.exists() else None
    return files


def distinct_rows(path: Path, key: tuple[str, ...] = ("uniq_id",)) -> dict[tuple, dict]:
    """The fixture's rows, one per key (the source repeats rows, identical but for id)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return {tuple(row[k] for k in key): row for row in csv.DictReader(handle)}


def amounts_per_day(rows: dict[tuple, dict]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows.values():
        sums[row["date_time"][:10]] += Decimal(row["payment_amount"])
    return dict(sums)


def snapshot(conn) -> dict[str, list[tuple]]:
    """Every staging table's rows, sorted, without ``loaded_at`` (a rerun's clock moves)."""
    result: dict[str, list[tuple]] = {}
    for table in STAGING_TABLES:
        columns = [
            name
            for (name,) in query(
                conn,
                "select column_name from information_schema.columns where table_schema ="
                " 'staging' and table_name = %s and column_name <> 'loaded_at'"
                " order by ordinal_position",
                (table,),
            )
        ]
        rows = query(conn, f"select {', '.join(columns)} from staging.{table}")
        result[table] = sorted(rows, key=repr)
    return result


def copy_increment(fixtures_dir: Path, day: date, tmp_path: Path) -> dict[str, Path | None]:
    """A writable copy of an increment, for crafting bad files."""
    folder = tmp_path / day.isoformat()
    shutil.copytree(fixtures_dir / "increments" / day.isoformat(), folder)
    files: dict[str, Path | None] = {}
    for name in STAGING_TABLES:
        path = folder / f"{name}_inc.csv"
        files[name] = path if path.exists() else None
    return files


def edit_line(path: Path, line: int, edit) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


# --- good loads -------------------------------------------------------------------------


def test_full_report_loads_one_row_per_distinct_key(conn, fixtures_dir: Path) -> None:
    summary = load_report(conn, REPORT_START, REPORT_END, report_files(fixtures_dir), "r-1")

    orders = distinct_rows(fixtures_dir / "report" / "user_order_log.csv")
    activity = distinct_rows(fixtures_dir / "report" / "user_activity_log.csv")
    research = distinct_rows(
        fixtures_dir / "report" / "customer_research.csv", ("date_id", "category_id", "geo_id")
    )
    with (fixtures_dir / "report" / "user_order_log.csv").open(encoding="utf-8") as handle:
        order_lines = sum(1 for _ in handle) - 1

    counts = {
        table: query(conn, f"select count(*) from staging.{table}")[0][0]
        for table in STAGING_TABLES
    }
    assert counts == {
        "user_order_log": len(orders),
        "user_activity_log": len(activity),
        "customer_research": len(research),
        "price_log": 12,
    }
    assert len(orders) < order_lines  # the fixture really does repeat rows
    loaded_sums = dict(
        query(
            conn,
            "select date_time::date::text, sum(payment_amount)"
            " from staging.user_order_log group by 1",
        )
    )
    assert loaded_sums == amounts_per_day(orders)
    assert query(conn, "select distinct status, batch_id from staging.user_order_log") == [
        ("shipped", "r-1")
    ]
    assert query(conn, "select distinct price_date from staging.price_log") == [(REPORT_END,)]
    # A Cyrillic name arrives intact.
    assert ("Москва",) in query(conn, "select distinct city_name from staging.user_order_log")

    order_load = summary.tables["user_order_log"]
    assert (order_load.rows_read, order_load.rows_loaded) == (order_lines, len(orders))
    assert order_load.duplicates_dropped == order_lines - len(orders)
    assert summary.missing == []
    audit = query(
        conn,
        "select table_name, outcome, rows_read, duplicates_dropped, rows_loaded, start_day,"
        " end_day from staging.load_audit where batch_id = 'r-1' and table_name ="
        " 'user_order_log'",
    )
    assert audit == [
        (
            "user_order_log",
            "loaded",
            order_lines,
            order_lines - len(orders),
            len(orders),
            REPORT_START,
            REPORT_END,
        )
    ]


def test_old_format_increment_is_all_shipped(conn, fixtures_dir: Path) -> None:
    load_increment(conn, DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1")
    orders = distinct_rows(fixtures_dir / "increments" / "2024-10-01" / "user_order_log_inc.csv")
    assert query(conn, "select status, count(*) from staging.user_order_log group by 1") == [
        ("shipped", len(orders))
    ]
    assert dict(
        query(
            conn,
            "select date_time::date::text, sum(payment_amount)"
            " from staging.user_order_log group by 1",
        )
    ) == amounts_per_day(orders)
    assert query(conn, "select distinct price_date from staging.price_log") == [(DAY_OLD_FORMAT,)]
    assert query(conn, "select count(*) from staging.customer_research") == [(30,)]


def test_new_format_increment_keeps_refunds_and_reports_the_missing_file(
    conn, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = increment_files(fixtures_dir, DAY_NEW_FORMAT)
    assert files["customer_research"] is None  # the API answered 404 for it
    with caplog.at_level(logging.WARNING, logger="ingestion.loader"):
        summary = load_increment(conn, DAY_NEW_FORMAT, files, "i-2")

    orders = distinct_rows(fixtures_dir / "increments" / "2024-10-02" / "user_order_log_inc.csv")
    expected_status: dict[str, int] = defaultdict(int)
    for row in orders.values():
        expected_status[row["status"]] += 1
    assert dict(
        query(conn, "select status, count(*) from staging.user_order_log group by 1")
    ) == dict(expected_status)
    assert expected_status["refunded"] > 0
    # Amounts stay positive on refunded rows, as the source sends them.
    assert query(
        conn, "select min(payment_amount) > 0 from staging.user_order_log where status = 'refunded'"
    ) == [(True,)]
    assert summary.missing == ["customer_research"]
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "2024-10-02" in warning and "customer_research" in warning
    assert query(
        conn,
        "select outcome, file_name from staging.load_audit where table_name = 'customer_research'",
    ) == [("missing", None)]
    text = str(summary)
    assert "customer_research" in text and "missing" in text and "user_order_log" in text


def test_missing_file_leaves_that_days_rows_intact(
    conn, fixtures_dir: Path, tmp_path: Path
) -> None:
    # Earlier, a customer_research file for 2024-10-02 was loaded...
    research = tmp_path / "customer_research_inc.csv"
    source = fixtures_dir / "increments" / "2024-10-01" / "customer_research_inc.csv"
    research.write_text(
        source.read_text(encoding="utf-8").replace("2024-10-01T", "2024-10-02T"), encoding="utf-8"
    )
    load_increment(conn, DAY_NEW_FORMAT, {"customer_research": research}, "earlier")
    before = query(conn, "select * from staging.customer_research order by 1, 2, 3")
    assert len(before) == 30

    # ...then the day is reloaded while the API answers 404 for that file.
    load_increment(conn, DAY_NEW_FORMAT, increment_files(fixtures_dir, DAY_NEW_FORMAT), "again")
    assert query(conn, "select * from staging.customer_research order by 1, 2, 3") == before


def test_reloading_a_day_leaves_staging_identical(conn, fixtures_dir: Path) -> None:
    load_report(conn, REPORT_START, REPORT_END, report_files(fixtures_dir), "r-1")
    load_increment(conn, DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1")
    load_increment(conn, DAY_NEW_FORMAT, increment_files(fixtures_dir, DAY_NEW_FORMAT), "i-2")
    first = snapshot(conn)

    summary = load_increment(
        conn, DAY_NEW_FORMAT, increment_files(fixtures_dir, DAY_NEW_FORMAT), "i-2"
    )
    assert snapshot(conn) == first
    load = summary.tables["user_order_log"]
    assert load.rows_replaced == load.rows_loaded  # the same rows, swapped for themselves

    load_report(conn, REPORT_START, REPORT_END, report_files(fixtures_dir), "r-1")
    assert snapshot(conn) == first


def _index_definitions(conn) -> list[tuple]:
    return query(
        conn,
        "select tablename, indexname, indexdef from pg_indexes where schemaname = 'staging'"
        " order by 1, 2",
    )


def test_bulk_loads_rebuild_the_indexes_and_land_the_same_rows(
    conn, fixtures_dir: Path, make_database, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """Batches bigger than their table take the drop-and-rebuild path (BULK_MIN_ROWS is
    lowered so the small fixtures do); staging and its indexes end as with row inserts."""
    from ingestion.warehouse import connect

    history = [
        (load_report, (REPORT_START, REPORT_END, report_files(fixtures_dir), "r-1")),
        (load_increment, (DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1")),
        (load_increment, (DAY_NEW_FORMAT, increment_files(fixtures_dir, DAY_NEW_FORMAT), "i-2")),
        (load_report, (REPORT_START, REPORT_END, report_files(fixtures_dir), "r-2")),
    ]
    for load, args in history:
        load(conn, *args)
    row_by_row, indexes = snapshot(conn), _index_definitions(conn)

    monkeypatch.setattr(loader, "BULK_MIN_ROWS", 1)
    bulk = connect(make_database())
    rebuilt: list[list[str]] = []
    try:
        migrate(bulk)
        for load, args in history:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="ingestion.loader"):
                load(bulk, *args)
            rebuilt.append(
                sorted(
                    r.getMessage().split(":")[0]
                    for r in caplog.records
                    if "indexes rebuilt" in r.getMessage()
                )
            )
        assert snapshot(bulk) == row_by_row
        assert _index_definitions(bulk) == indexes
    finally:
        bulk.close()
    # The first report fills every table in bulk; a day's increment is smaller than what
    # its tables hold besides that day; the report again is bigger than what the tables
    # hold besides its period, but for price_log (its days are the increments' too).
    assert rebuilt == [
        sorted(f"staging.{table}" for table in STAGING_TABLES),
        [],
        [],
        sorted(f"staging.{table}" for table in STAGING_TABLES if table != "price_log"),
    ]


def test_an_order_line_that_moved_days_is_not_doubled(
    conn, fixtures_dir: Path, tmp_path: Path
) -> None:
    load_increment(conn, DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1")
    moved = tmp_path / "user_order_log_inc.csv"
    uniq_id = query(conn, "select min(uniq_id) from staging.user_order_log")[0][0]
    moved.write_text(
        f"{ORDER_HEADER},status\n"
        f"1,{uniq_id},2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50,refunded\n",
        encoding="utf-8",
    )
    load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": moved}, "i-2")
    assert query(
        conn,
        "select date_time::date, status from staging.user_order_log where uniq_id = %s",
        (uniq_id,),
    ) == [(DAY_NEW_FORMAT, "refunded")]


def test_quoted_fields_and_crlf_line_endings(conn, tmp_path: Path) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_bytes(
        (
            f"{ORDER_HEADER}\r\n"
            '1,q1,2024-10-02T00:00:00,0,"Москва, центр",1,Анна,Лебедева,1,'
            '"Томаты\r\nкрупные",1,50\r\n'
            "2,q2,2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50.5\r\n"
        ).encode()
    )
    load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "q")
    assert query(
        conn,
        "select uniq_id, city_name, item_name, payment_amount"
        " from staging.user_order_log order by 1",
    ) == [
        ("q1", "Москва, центр", "Томаты\r\nкрупные", Decimal("50.00")),
        ("q2", "Москва", "Томаты", Decimal("50.50")),
    ]

    # A quoted line break still leaves the reported line numbers exact.
    path.write_bytes(path.read_bytes().replace(b",50.5\r\n", b",5x\r\n"))
    with pytest.raises(BadInputError, match="line 4, column payment_amount: payment_amount '5x'"):
        load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "q")


# --- bad input ----------------------------------------------------------------------------


def _wrong_header(line: str) -> str:
    return line.replace("payment_amount", "amount")


BAD_ORDER_FILES = [
    # (what is wrong, line to edit, edit, expected line and column, words of the reason)
    ("wrong header", 1, _wrong_header, 1, "payment_amount", "header has no column"),
    (
        "non-numeric amount",
        5,
        lambda line: line.rsplit(",", 2)[0] + ",12x,shipped",
        5,
        "payment_amount",
        "amount",
    ),
    (
        "unknown status",
        7,
        lambda line: line.rsplit(",", 1)[0] + ",lost",
        7,
        "status",
        "status 'lost'",
    ),
    ("truncated row", 9, lambda line: line.rsplit(",", 3)[0], 9, None, "expected 13 fields"),
    (
        "row dated outside the day",
        11,
        lambda line: line.replace("2024-10-02T00:00:00", "2024-10-03T00:00:00"),
        11,
        "date_time",
        "outside the day 2024-10-02",
    ),
    (
        "impossible timestamp",
        4,
        lambda line: line.replace("2024-10-02T00:00:00", "2024-10-02 00:00"),
        4,
        "date_time",
        "not a timestamp",
    ),
    (
        "negative quantity",
        3,
        lambda line: _replace_field(line, 10, "-1"),
        3,
        "quantity",
        "quantity -1",
    ),
]


def _replace_field(line: str, index: int, value: str) -> str:
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


@pytest.mark.parametrize(
    ("problem", "line", "edit", "reported_line", "column", "reason"),
    BAD_ORDER_FILES,
    ids=[case[0] for case in BAD_ORDER_FILES],
)
def test_bad_order_file_is_refused_and_staging_unchanged(
    conn, fixtures_dir: Path, tmp_path: Path, problem, line, edit, reported_line, column, reason
) -> None:
    load_increment(conn, DAY_NEW_FORMAT, increment_files(fixtures_dir, DAY_NEW_FORMAT), "good")
    before = snapshot(conn)
    files = copy_increment(fixtures_dir, DAY_NEW_FORMAT, tmp_path)
    bad_file = files["user_order_log"]
    assert bad_file is not None
    edit_line(bad_file, line, edit)

    with pytest.raises(BadInputError) as caught:
        load_increment(conn, DAY_NEW_FORMAT, files, "bad")

    error = caught.value
    message = str(error)
    assert (error.day, error.file, error.line) == ("2024-10-02", bad_file.name, reported_line)
    assert error.column == column
    # the source's file name and day, never the folder it was downloaded to
    assert message.startswith(f"bad input: {bad_file.name} of 2024-10-02, line {reported_line}")
    assert str(bad_file.parent) not in message
    assert (f", column {column}:" in message) == (column is not None) and reason in message
    assert snapshot(conn) == before
    assert query(conn, "select count(*) from staging.load_audit where batch_id = 'bad'") == [(0,)]


def test_conflicting_repeat_of_a_key_is_bad_input(conn, tmp_path: Path) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_text(
        f"{ORDER_HEADER}\n"
        "1,k1,2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50\n"
        "2,k1,2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50\n"
        "3,k1,2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,2,100\n",
        encoding="utf-8",
    )
    with pytest.raises(
        BadInputError, match=r"line 4, column quantity: key k1 repeats an earlier row.*quantity"
    ):
        load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "b")


def test_bad_price_log_and_report_range(conn, fixtures_dir: Path, tmp_path: Path) -> None:
    prices = tmp_path / "price_log.csv"
    prices.write_text("Молоко 1%,100\nitem_name,price\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"2024-09-08\.\.2024-09-30.*line 2.*price"):
        load_report(conn, REPORT_START, REPORT_END, {"price_log": prices}, "r")

    activity = tmp_path / "user_activity_log.csv"
    activity.write_text(
        "id,uniq_id,date_time,action_id,customer_id,quantity\n"
        "1,u1,2024-09-30T23:59:59,1,2,3\n"
        "2,u2,2024-10-01T00:00:00,1,2,3\n",
        encoding="utf-8",
    )
    with pytest.raises(BadInputError, match=r"line 3.*outside the report's days"):
        load_report(conn, REPORT_START, REPORT_END, {"user_activity_log": activity}, "r")


def test_failure_while_loading_leaves_staging_as_it_was(
    conn, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_increment(conn, DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1")
    before = snapshot(conn)

    # Every file is valid; the database step fails after the first table was replaced.
    real_replace = loader._replace_period
    calls: list[str] = []

    def failing_replace(cur, item, *args, **kwargs):
        calls.append(item.spec.name)
        if len(calls) == 2:
            raise RuntimeError("simulated failure on the second file")
        return real_replace(cur, item, *args, **kwargs)

    monkeypatch.setattr(loader, "_replace_period", failing_replace)
    files = increment_files(fixtures_dir, DAY_OLD_FORMAT)
    with pytest.raises(RuntimeError, match="second file"):
        load_increment(conn, DAY_OLD_FORMAT, files, "i-1-rerun")
    assert calls == ["user_order_log", "user_activity_log"]
    assert snapshot(conn) == before
    assert query(conn, "select count(*) from staging.load_audit where batch_id = 'i-1-rerun'") == [
        (0,)
    ]


def test_load_refuses_an_unmigrated_database(pg_conn, fixtures_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="not migrated"):
        load_increment(
            pg_conn, DAY_OLD_FORMAT, increment_files(fixtures_dir, DAY_OLD_FORMAT), "i-1"
        )


def test_summary_format_is_a_small_table() -> None:
    summary = LoadSummary(batch_id="i-9", start_day=DAY_NEW_FORMAT, end_day=DAY_NEW_FORMAT)
    summary.tables["user_order_log"] = loader.TableLoad(
        table="user_order_log",
        file=Path("user_order_log_inc.csv"),
        rows_read=919,
        duplicates_dropped=576,
        rows_loaded=343,
    )
    summary.missing.append("customer_research")
    lines = summary.format().splitlines()
    assert lines[0] == "batch i-9, 2024-10-02:"
    assert "919 read" in lines[1] and "576 repeats dropped" in lines[1] and "343 loaded" in lines[1]
    assert "customer_research" in lines[2] and "missing" in lines[2]


def test_rows_outside_the_marts_calendar_are_refused(conn, tmp_path: Path) -> None:
    """d_calendar ends 2030-12-31: a 2031 increment could never reach the marts."""
    path = tmp_path / "user_order_log.csv"
    path.write_text(
        "id,uniq_id,date_time,city_id,city_name,customer_id,first_name,last_name,"
        "item_id,item_name,quantity,payment_amount,status\n"
        "1,c1,2031-01-05T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50,shipped\n",
        encoding="utf-8",
    )
    with pytest.raises(
        BadInputError,
        match=r"user_order_log.csv of 2031-01-05, line 2, column date_time: date_time"
        r" 2031-01-05T00:00:00 is outside the marts' calendar 2020-01-01..2030-12-31",
    ):
        load_increment(conn, date(2031, 1, 5), {"user_order_log": path}, "future")
    assert query(conn, "select count(*) from staging.user_order_log") == [(0,)]


# --- file layouts COPY reads differently from the csv module ------------------------------

ROW = "{i},k{i},2024-10-02T00:00:00,0,Москва,1,Анна,Лебедева,1,Томаты,1,50"


QUOTED_CRLF = '"То\r\nматы"'


def _row(i: int, old: str = "", new: str = "") -> str:
    return ROW.format(i=i).replace(old, new) if old else ROW.format(i=i)


ODD_BAD_FILES = [
    # (what, file bytes, line, reason)
    # COPY reads one kind of line ending per file: a file that mixes them is refused
    (
        "CRLF header, LF rows (mixed endings)",
        f"{ORDER_HEADER}\r\n{_row(1)}\n{_row(2, ',50', ',5x')}\r\n".encode(),
        2,
        "line endings change within the file",
    ),
    (
        "LF rows, then a CRLF row (mixed endings)",
        f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)}\r\n{_row(3)}\n".encode(),
        3,
        "line endings change within the file",
    ),
    (
        "a bad amount after a quoted CRLF in a CRLF file",
        (
            f"{ORDER_HEADER}\r\n{_row(1, 'Томаты', QUOTED_CRLF)}\r\n{_row(2, ',50', ',5x')}\r\n"
        ).encode(),
        4,
        "payment_amount '5x'",
    ),
    (
        "blank line between rows",
        f"{ORDER_HEADER}\n{_row(1)}\n\n{_row(2)}\n".encode(),
        3,
        "blank line between rows",
    ),
    (
        "NUL character",
        f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)}\n{_row(3, 'Анна', 'А' + chr(0) + 'нна')}\n".encode(),
        4,
        "contains a NUL character",
    ),
    (
        "invalid UTF-8",
        f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)}\n".encode().replace("Москва".encode(), b"\xff", 2),
        2,
        "not valid UTF-8",
    ),
    (
        "a day that does not exist",
        f"{ORDER_HEADER}\n{_row(1, '2024-10-02T', '2024-02-30T')}\n".encode(),
        2,
        "not a timestamp",
    ),
    (
        "hour 24",
        f"{ORDER_HEADER}\n{_row(1, 'T00:00:00', 'T24:00:00')}\n".encode(),
        2,
        "not a timestamp",
    ),
    ("extra field", f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)},x\n".encode(), 3, "found 13"),
    (
        "unterminated quote",
        f'{ORDER_HEADER}\n{_row(1)}\n3,k3,2024-10-02T00:00:00,0,"Москва,1\n'.encode(),
        3,
        "malformed CSV",
    ),
    (
        "conflict after a quoted line break",
        (
            f"{ORDER_HEADER}\n{_row(1, 'Томаты', chr(34) + 'Томаты' + chr(10) + 'x' + chr(34))}\n"
            f"{_row(2)}\n{_row(2, ',1,50', ',2,50')}\n"
        ).encode(),
        5,
        "key k2 repeats an earlier row with a different quantity ('1' vs '2')",
    ),
    (
        "lone CR in a quoted field",
        f"{ORDER_HEADER}\n{_row(1, 'Томаты', chr(34) + 'То' + chr(13) + 'маты' + chr(34))}\n"
        f"{_row(2, ',50', ',5x')}\n".encode(),
        4,
        "payment_amount '5x'",
    ),
    (
        "CR line endings only",
        f"{ORDER_HEADER}\r{_row(1)}\r{_row(2, ',50', ',5x')}\r".encode(),
        3,
        "payment_amount '5x'",
    ),
    ("empty id", f"{ORDER_HEADER}\n{_row(1, '1,k1', ',k1')}\n".encode(), 2, "id '' is not"),
    ("blank key", f"{ORDER_HEADER}\n{_row(1, '1,k1', '1,  ')}\n".encode(), 2, "uniq_id is empty"),
]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [case[1:] for case in ODD_BAD_FILES],
    ids=[case[0] for case in ODD_BAD_FILES],
)
def test_odd_layouts_are_refused_at_the_exact_line(
    conn, tmp_path: Path, content: bytes, line: int, reason: str
) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as caught:
        load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "odd")
    assert (caught.value.line, caught.value.file) == (line, path.name)
    assert reason in caught.value.reason
    assert query(conn, "select count(*) from staging.user_order_log") == [(0,)]


ODD_GOOD_FILES = [
    ("BOM and rows", b"\xef\xbb\xbf" + f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)}\n".encode(), 2),
    ("trailing blank lines", f"{ORDER_HEADER}\n{_row(1)}\n{_row(2)}\n\n\r\n\n".encode(), 2),
    ("CR line endings", f"{ORDER_HEADER}\r{_row(1)}\r{_row(2)}".encode(), 2),
    ("exact repeats", f"{ORDER_HEADER}\n{_row(1)}\n{_row(1)}\n{_row(2)}\n".encode(), 2),
]


@pytest.mark.parametrize(
    ("content", "distinct"),
    [case[1:] for case in ODD_GOOD_FILES],
    ids=[case[0] for case in ODD_GOOD_FILES],
)
def test_odd_layouts_that_load(conn, tmp_path: Path, content: bytes, distinct: int) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_bytes(content)
    summary = load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "odd")
    assert summary.tables["user_order_log"].rows_loaded == distinct
    assert query(
        conn, "select uniq_id, city_name, status from staging.user_order_log order by 1"
    ) == [(f"k{i}", "Москва", "shipped") for i in range(1, distinct + 1)]


def test_quoted_and_unquoted_empty_fields_both_load_as_null(conn, tmp_path: Path) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_text(
        f"{ORDER_HEADER}\n{_row(1, 'Анна', chr(34) * 2)}\n{_row(2, 'Анна', '')}\n",
        encoding="utf-8",
    )
    load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "e")
    assert query(conn, "select count(*) from staging.user_order_log where first_name is null") == [
        (2,)
    ]


# --- columns by header name (SPEC section 2) ----------------------------------------------


def _reorder(path: Path, target: Path, order: list[str], extra: dict[str, str]) -> Path:
    """``path``'s rows with its columns in ``order``, plus constant ``extra`` columns."""
    with path.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, [*order, *extra], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**{name: row[name] for name in order}, **extra} for row in rows)
    return target


def test_columns_are_read_by_header_name_and_unknown_ones_ignored(
    conn, fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = increment_files(fixtures_dir, DAY_NEW_FORMAT)
    load_increment(conn, DAY_NEW_FORMAT, files, "i-2")
    as_sent = snapshot(conn)

    orders, activity = files["user_order_log"], files["user_activity_log"]
    assert orders is not None and activity is not None
    with orders.open(encoding="utf-8") as handle:
        order_columns = handle.readline().strip().split(",")
    shuffled = {
        **files,
        "user_order_log": _reorder(
            orders, tmp_path / orders.name, order_columns[::-1], {"promo_code": "x"}
        ),
        "user_activity_log": _reorder(
            activity,
            tmp_path / activity.name,
            ["quantity", "customer_id", "uniq_id", "date_time", "action_id", "id"],
            {},
        ),
    }
    with caplog.at_level(logging.WARNING, logger="ingestion.loader"):
        load_increment(conn, DAY_NEW_FORMAT, shuffled, "i-2")

    assert snapshot(conn) == as_sent
    unknown = [r.getMessage() for r in caplog.records if "promo_code" in r.getMessage()]
    assert unknown == ["user_order_log_inc.csv of 2024-10-02: ignoring unknown column 'promo_code'"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "promo" in r.getMessage())


@pytest.mark.parametrize(
    ("header", "column", "reason"),
    [
        (ORDER_HEADER.replace(",quantity", ""), "quantity", "the header has no column quantity"),
        (ORDER_HEADER.replace("id,uniq_id", "uniq_id"), "id", "the header has no column id"),
        (f"{ORDER_HEADER},city_id", "city_id", "the header names column city_id twice"),
    ],
    ids=["no quantity", "no id", "city_id twice"],
)
def test_a_missing_or_doubled_column_is_refused_naming_it(
    conn, tmp_path: Path, header: str, column: str, reason: str
) -> None:
    path = tmp_path / "user_order_log_inc.csv"
    path.write_text(f"{header}\n{_row(1)}\n", encoding="utf-8")
    with pytest.raises(BadInputError) as caught:
        load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": path}, "h")
    error = caught.value
    assert (error.file, error.line, error.column, error.reason) == (path.name, 1, column, reason)
    assert str(error) == f"bad input: {path.name} of 2024-10-02, line 1, column {column}: {reason}"


def test_a_newer_batch_keeps_its_rows_and_a_conflict_is_still_refused(conn, tmp_path: Path) -> None:
    """Day 2 corrected line k1 (moved it from day 1); reloading day 1 keeps day 2's version,
    counts it as superseded, and still refuses a file contradicting itself on k1."""
    day_one, day_two = tmp_path / "one.csv", tmp_path / "two.csv"
    day_one.write_text(
        f"{ORDER_HEADER}\n{_row(1, '2024-10-02T', '2024-10-01T')}\n"
        f"{_row(2, '2024-10-02T', '2024-10-01T')}\n",
        encoding="utf-8",
    )
    day_two.write_text(f"{ORDER_HEADER}\n{_row(1, ',1,50', ',3,150')}\n", encoding="utf-8")
    load_increment(conn, DAY_OLD_FORMAT, {"user_order_log": day_one}, "i-1")
    moved = load_increment(conn, DAY_NEW_FORMAT, {"user_order_log": day_two}, "i-2")
    assert moved.moved_from_days == [DAY_OLD_FORMAT]

    again = load_increment(conn, DAY_OLD_FORMAT, {"user_order_log": day_one}, "i-1 again")
    load = again.tables["user_order_log"]
    assert (load.rows_read, load.rows_loaded, load.rows_superseded) == (2, 1, 1)
    assert query(
        conn, "select uniq_id, date_time::date, quantity from staging.user_order_log order by 1"
    ) == [("k1", DAY_NEW_FORMAT, 3), ("k2", DAY_OLD_FORMAT, 1)]

    day_one.write_text(
        day_one.read_text(encoding="utf-8")
        + _row(1, "2024-10-02T", "2024-10-01T").replace(",1,50", ",2,50")
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(BadInputError, match="line 4, column quantity: key k1 repeats"):
        load_increment(conn, DAY_OLD_FORMAT, {"user_order_log": day_one}, "i-1 bad")

"""Extracts with no rows for the period: header-only and 0-byte files (SPEC section 2).

Both mean "this table has no rows for the period": the period's existing rows are
replaced by nothing and the file is recorded in ``staging.load_audit`` (unlike a 404,
which leaves them alone). Checked on the loader, then end to end: the local report API
serves such extracts over real HTTP and the real CLI (``python -m ingestion`` in a
subprocess) loads them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ingestion import project
from ingestion.loader import SPECS, load_increment, load_report
from ingestion.migrate import migrate
from local_report_api import LocalApiConfig, LocalReportApi
from support.extract_files import fetch_rows as query

REPO_ROOT = project.REPO_ROOT
REPORT_START, REPORT_END = date(2024, 9, 8), date(2024, 9, 30)
DAY_OLD_FORMAT, DAY_NEW_FORMAT = date(2024, 10, 1), date(2024, 10, 2)
TABLES = ("user_order_log", "user_activity_log", "customer_research", "price_log")
DATE_COLUMNS = {
    "user_order_log": "date_time",
    "user_activity_log": "date_time",
    "customer_research": "date_id",
    "price_log": "price_date",
}


def header(name: str, *, with_status: bool = True) -> str:
    return ",".join(SPECS[name].header(with_optional=with_status))


# Ways a file says "no rows": name -> (table, file content as bytes, warns about it).
EMPTY_VARIANTS: dict[str, tuple[str, bytes, bool]] = {
    "orders header only": ("user_order_log", f"{header('user_order_log')}\n".encode(), False),
    "orders old-format header only": (
        "user_order_log",
        f"{header('user_order_log', with_status=False)}\n".encode(),
        False,
    ),
    "orders 0 bytes": ("user_order_log", b"", True),
    "orders header and blank trailing lines": (
        "user_order_log",
        f"{header('user_order_log')}\r\n\r\n\n".encode(),
        False,
    ),
    "orders BOM and header only": (
        "user_order_log",
        b"\xef\xbb\xbf" + header("user_order_log").encode(),
        False,
    ),
    "activity header only, no newline": (
        "user_activity_log",
        header("user_activity_log").encode(),
        False,
    ),
    "activity 0 bytes": ("user_activity_log", b"", True),
    "research header only": (
        "customer_research",
        f"{header('customer_research')}\n".encode(),
        False,
    ),
    "research 0 bytes": ("customer_research", b"", True),
    "price_log 0 bytes": ("price_log", b"", False),
    "price_log blank line": ("price_log", b"\n", False),
}


@pytest.fixture
def conn(pg_conn):
    migrate(pg_conn)
    return pg_conn


def rows_in(conn, table: str, first: date, last: date) -> int:
    column = DATE_COLUMNS[table]
    return query(
        conn,
        f"select count(*) from staging.{table} where {column}::date between %s and %s",
        (first, last),
    )[0][0]


def audit(conn, batch_id: str, table: str) -> tuple:
    return query(
        conn,
        "select outcome, file_name, rows_read, duplicates_dropped, rows_loaded, rows_replaced"
        " from staging.load_audit where batch_id = %s and table_name = %s",
        (batch_id, table),
    )[0]


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the fixtures are read-only
    return target


def folder_files(folder: Path, suffix: str) -> dict[str, Path | None]:
    files: dict[str, Path | None] = {}
    for name in TABLES:
        path = folder / f"{name}{suffix}.csv"
        files[name] = path if path.exists() else None
    return files


# --- the loader -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(EMPTY_VARIANTS))
def test_an_empty_increment_file_replaces_the_days_rows_by_nothing(
    conn, fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, variant: str
) -> None:
    table, content, warns = EMPTY_VARIANTS[variant]
    day = DAY_OLD_FORMAT
    load_increment(
        conn, day, folder_files(fixtures_dir / "increments" / "2024-10-01", "_inc"), "full"
    )
    before = {name: rows_in(conn, name, day, day) for name in TABLES}
    assert all(before.values())  # the real increment has rows in every table

    files = folder_files(
        copy_folder(fixtures_dir / "increments" / "2024-10-01", tmp_path / "inc"), "_inc"
    )
    empty_file = files[table]
    assert empty_file is not None
    empty_file.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="ingestion.loader"):
        summary = load_increment(conn, day, files, "empty")

    assert rows_in(conn, table, day, day) == 0
    assert {name: rows_in(conn, name, day, day) for name in TABLES if name != table} == {
        name: count for name, count in before.items() if name != table
    }
    load = summary.tables[table]
    assert (load.rows_read, load.rows_loaded, load.rows_replaced) == (0, 0, before[table])
    assert audit(conn, "empty", table) == ("loaded", empty_file.name, 0, 0, 0, before[table])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    empty_warnings = [m for m in warnings if "empty" in m]
    if warns:
        assert len(empty_warnings) == 1
        assert f"{empty_file.name} of 2024-10-01 is empty" in empty_warnings[0]
        assert str(empty_file.parent) not in empty_warnings[0]
    else:
        assert empty_warnings == []


def test_a_report_with_empty_tables_loads_zero_rows_for_them(
    conn, fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The case that stopped load-report with ``zip() argument 2 is shorter than argument 1``."""
    load_report(conn, REPORT_START, REPORT_END, folder_files(fixtures_dir / "report", ""), "full")
    before = {name: rows_in(conn, name, REPORT_START, REPORT_END) for name in TABLES}
    assert all(before.values())

    report = copy_folder(fixtures_dir / "report", tmp_path / "report")
    (report / "user_activity_log.csv").write_text(header("user_activity_log") + "\n")
    (report / "customer_research.csv").write_text(header("customer_research") + "\n")
    (report / "price_log.csv").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ingestion.loader"):
        summary = load_report(conn, REPORT_START, REPORT_END, folder_files(report, ""), "empty")

    assert rows_in(conn, "user_order_log", REPORT_START, REPORT_END) == before["user_order_log"]
    for table in ("user_activity_log", "customer_research", "price_log"):
        assert rows_in(conn, table, REPORT_START, REPORT_END) == 0
        outcome, _, rows_read, _, rows_loaded, rows_replaced = audit(conn, "empty", table)
        assert (outcome, rows_read, rows_loaded, rows_replaced) == ("loaded", 0, 0, before[table])
    assert summary.tables["price_log"].rows_loaded == 0
    # header-only files and price_log's 0 bytes are normal: no warning about them
    assert not [r for r in caplog.records if "empty" in r.getMessage()]


def test_a_404_still_leaves_the_rows_while_an_empty_file_removes_them(
    conn, fixtures_dir: Path, tmp_path: Path
) -> None:
    day = DAY_OLD_FORMAT
    load_increment(
        conn, day, folder_files(fixtures_dir / "increments" / "2024-10-01", "_inc"), "full"
    )
    research = rows_in(conn, "customer_research", day, day)
    files = folder_files(
        copy_folder(fixtures_dir / "increments" / "2024-10-01", tmp_path / "inc"), "_inc"
    )
    load_increment(conn, day, {**files, "customer_research": None}, "missing")
    assert rows_in(conn, "customer_research", day, day) == research
    assert audit(conn, "missing", "customer_research")[0] == "missing"
    assert files["customer_research"] is not None
    files["customer_research"].write_bytes(b"")
    load_increment(conn, day, files, "empty")
    assert rows_in(conn, "customer_research", day, day) == 0


# --- through the local report API and the real CLI --------------------------------------


def empty_extracts(fixtures_dir: Path, target: Path) -> Path:
    """The recorded extracts with the report's side tables and one day's files emptied."""
    copy_folder(fixtures_dir, target)
    report = target / "report"
    (report / "user_activity_log.csv").write_text(header("user_activity_log") + "\n")
    (report / "customer_research.csv").write_text(header("customer_research") + "\n")
    (report / "price_log.csv").write_bytes(b"")
    day = target / "increments" / "2024-10-01"
    (day / "user_order_log_inc.csv").write_text(
        header("user_order_log", with_status=False) + "\n", encoding="utf-8"
    )
    (day / "user_activity_log_inc.csv").write_bytes(b"")
    (day / "price_log_inc.csv").write_bytes(b"")
    return target


def run_cli(args: list[str], settings: dict[str, str], api: LocalReportApi):
    env = {
        **os.environ,
        **settings,
        "REPORT_API_URL": api.url,
        "REPORT_API_KEY": api.config.api_key,
        "REPORT_API_NICKNAME": api.config.nickname,
        "REPORT_API_COHORT": api.config.cohort,
    }
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_loads_empty_extracts_served_over_http(
    warehouse: dict[str, str], conn, fixtures_dir: Path, tmp_path: Path
) -> None:
    extracts = empty_extracts(fixtures_dir, tmp_path / "extracts")
    with LocalReportApi(LocalApiConfig.from_extracts(extracts, running_polls=0)) as api:
        report = run_cli(["load-report"], warehouse, api)
        assert report.returncode == 0, report.stderr
        assert "zip()" not in report.stderr
        day = run_cli(["load", "--date", "2024-10-01"], warehouse, api)
        assert day.returncode == 0, day.stderr

    assert rows_in(conn, "user_order_log", REPORT_START, REPORT_END) > 0
    for table in ("user_activity_log", "customer_research", "price_log"):
        assert rows_in(conn, table, REPORT_START, REPORT_END) == 0
    assert rows_in(conn, "user_order_log", DAY_OLD_FORMAT, DAY_OLD_FORMAT) == 0
    assert rows_in(conn, "user_activity_log", DAY_OLD_FORMAT, DAY_OLD_FORMAT) == 0
    assert rows_in(conn, "price_log", DAY_OLD_FORMAT, DAY_OLD_FORMAT) == 0
    assert rows_in(conn, "customer_research", DAY_OLD_FORMAT, DAY_OLD_FORMAT) > 0
    research_rows = rows_in(conn, "customer_research", DAY_OLD_FORMAT, DAY_OLD_FORMAT)
    outcomes = query(
        conn,
        "select table_name, outcome, rows_read, rows_loaded from staging.load_audit"
        " where start_day = %s order by table_name",
        (DAY_OLD_FORMAT,),
    )
    assert outcomes == [
        ("customer_research", "loaded", research_rows, research_rows),
        ("price_log", "loaded", 0, 0),
        ("user_activity_log", "loaded", 0, 0),
        ("user_order_log", "loaded", 0, 0),
    ]
    # the 0-byte file of a table with a header is named in a warning, with its day
    warning = [line for line in day.stderr.splitlines() if "WARNING" in line and "empty" in line]
    assert len(warning) == 1
    # named as the source names it, never by the folder the client downloaded it to
    assert "user_activity_log_inc.csv of 2024-10-01 is empty" in warning[0]
    assert "increment-2024-10-01/" not in warning[0]
    assert "user_order_log" in day.stdout and "0 loaded" in day.stdout


def test_local_api_serves_zero_byte_and_header_only_files(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    import requests

    extracts = empty_extracts(fixtures_dir, tmp_path / "extracts")
    # a report whose order log is empty too: the window must then be given
    (extracts / "report" / "user_order_log.csv").write_bytes(b"")
    (extracts / "report" / "user_activity_log.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="report_start and report_end"):
        LocalApiConfig.from_extracts(extracts)
    config = LocalApiConfig.from_extracts(
        extracts, report_start=REPORT_START, report_end=REPORT_END, running_polls=0
    )
    with LocalReportApi(config) as api:
        base = f"{api.url}/files/{config.report_id}"
        empty = requests.get(f"{base}/user_order_log.csv", timeout=10)
        assert (empty.status_code, empty.content) == (200, b"")
        header_only = requests.get(f"{base}/customer_research.csv", timeout=10)
        assert header_only.status_code == 200
        assert header_only.text == header("customer_research") + "\n"

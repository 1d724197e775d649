"""``python -m ingestion`` reports a bad file by day, file, line and reason, never as a bare
Python exception (SPEC section 5).

The real CLI runs in a subprocess against the local report API serving edited copies of
the recorded extracts over HTTP, and a real PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingestion import cli, loader, project
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings
from support.extract_files import set_field
from support.mart_tables import query

REPO_ROOT = project.REPO_ROOT


def extracts_copy(fixtures_dir: Path, target: Path) -> Path:
    shutil.copytree(fixtures_dir, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def api_env(api: LocalReportApi, settings: dict[str, str]) -> dict[str, str]:
    return {**settings, **local_api_settings(api).env()}


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


BAD_INCREMENT_FILES = [
    # (file of 2024-10-02, line, column, value, words of the reason)
    ("user_order_log", 6, "payment_amount", "150000000.00", "payment_amount 150000000.00 is above"),
    ("user_order_log", 4, "quantity", "0", "quantity 0 is below 1"),
    ("user_order_log", 9, "status", "lost", "status 'lost' is not one of"),
]


@pytest.mark.parametrize(
    ("table", "line", "column", "value", "reason"),
    BAD_INCREMENT_FILES,
    ids=[case[2] for case in BAD_INCREMENT_FILES],
)
def test_load_of_a_bad_increment_names_day_file_line_and_reason(
    warehouse, fixtures_dir: Path, tmp_path: Path, table, line, column, value, reason
) -> None:
    extracts = extracts_copy(fixtures_dir, tmp_path / "extracts")
    set_field(extracts / "increments" / "2024-10-02" / f"{table}_inc.csv", line, column, value)
    with LocalReportApi(LocalApiConfig.from_extracts(extracts, running_polls=0)) as api:
        result = run_cli(["load", "--date", "2024-10-02"], api_env(api, warehouse))

    assert result.returncode == 1
    message = error_line(result.stderr)
    assert re.fullmatch(
        rf"error: bad input: {table}_inc\.csv of 2024-10-02, line {line}, column {column}:"
        rf" {re.escape(reason)}.*",
        message,
    ), message
    assert query(warehouse, "select count(*) from staging.user_order_log") == [(0,)]


def test_load_report_of_empty_and_bad_files_names_the_bad_one(
    warehouse, fixtures_dir: Path, tmp_path: Path
) -> None:
    """The report that used to stop with ``zip() argument 2 is shorter than argument 1``,
    plus one bad line: only the bad line is reported, with its file and line."""
    extracts = extracts_copy(fixtures_dir, tmp_path / "extracts")
    report = extracts / "report"
    (report / "user_activity_log.csv").write_text(
        "id,uniq_id,date_time,action_id,customer_id,quantity\n"
    )
    (report / "customer_research.csv").write_text(
        "date_id,category_id,geo_id,sales_qty,sales_amt\n"
    )
    (report / "price_log.csv").write_bytes(b"")
    set_field(report / "user_order_log.csv", 100, "customer_id", "2147483648")
    with LocalReportApi(LocalApiConfig.from_extracts(extracts, running_polls=0)) as api:
        result = run_cli(["load-report"], api_env(api, warehouse))

    assert result.returncode == 1
    message = error_line(result.stderr)
    assert "zip()" not in message
    assert message == (
        "error: bad input: user_order_log.csv of 2024-09-08..2024-09-30, line 100,"
        " column customer_id: customer_id 2147483648 is out of range"
    )


def test_an_unexpected_failure_while_checking_a_file_still_names_day_and_file(
    warehouse, fixtures_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A loader bug must not reach the user as a bare exception text either."""

    def broken(*args, **kwargs):
        raise ValueError("zip() argument 2 is shorter than argument 1")

    monkeypatch.setattr(loader, "_create_incoming", broken)
    extracts = extracts_copy(fixtures_dir, tmp_path / "extracts")
    with LocalReportApi(LocalApiConfig.from_extracts(extracts, running_polls=0)) as api:
        for name, value in api_env(api, warehouse).items():
            monkeypatch.setenv(name, value)
        assert cli.main(["load", "--date", "2024-10-01"]) == 1

    message = error_line(capsys.readouterr().err)
    assert re.fullmatch(
        r"error: bad input: user_order_log_inc\.csv of 2024-10-01:"
        r" the loader failed while checking this file \(ValueError: zip\(\) argument 2 is"
        r" shorter than argument 1\); this is a loader bug, please report it with the file",
        message,
    ), message


def test_a_foreign_exception_is_shown_with_its_type(warehouse, monkeypatch, capsys) -> None:
    from ingestion import pipeline

    def broken(*args, **kwargs):
        raise KeyError("files")

    monkeypatch.setattr(pipeline, "request_report", broken)
    for name in ("URL", "KEY", "NICKNAME", "COHORT"):
        monkeypatch.setenv(f"REPORT_API_{name}", "http://127.0.0.1:9" if name == "URL" else "x")
    assert cli.main(["load-report"]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: KeyError: 'files' (rerun with -v for the traceback)"
    )


@pytest.mark.parametrize("module", ["ingestion", "retail_dev"])
def test_a_configured_warehouse_without_a_source_writes_nothing(warehouse, module) -> None:
    """SPEC section 2: the local report API's synthetic data only ever reaches the
    embedded warehouse; a configured one with no REPORT_API_* is an error naming them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_API_")}
    result = subprocess.run(
        [sys.executable, "-m", module, "run", "--start", "2024-10-01"],
        cwd=REPO_ROOT,
        env={**env, **warehouse},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    for name in ("REPORT_API_URL", "REPORT_API_KEY", "REPORT_API_NICKNAME", "REPORT_API_COHORT"):
        assert name in line
    assert query(warehouse, "select to_regnamespace('staging')")[0][0] is None

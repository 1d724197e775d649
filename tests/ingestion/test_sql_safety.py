"""Values reach SQL as parameters and identifiers are quoted (psycopg2.sql): a day, a
file name or a batch id cannot change a statement.

Statically: no ``execute`` / ``copy_expert`` in the project takes SQL built by string
formatting. Dynamically, on the real PostgreSQL: hostile file names and batch ids load
as data, and a hostile day never reaches the warehouse.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from ingestion import project
from ingestion.loader import load_increment
from ingestion.migrate import migrate
from support.mart_tables import query

REPO_ROOT = project.REPO_ROOT
PACKAGES = ("ingestion", "retention_report", "local_report_api", "sales_mart_plugin", "deploy")
SQL_CALLS = {"execute", "executemany", "copy_expert", "mogrify", "read_sql", "read_sql_query"}
# dbt's own compiled SQL of a failed data test (from the project, not from input),
# wrapped to fetch a few of its rows for the error message.
ALLOWED = {("ingestion/dbt.py", "_sample_rows")}
HOSTILE = "x'); drop table staging.user_order_log; --"


def _formatted_sql_calls() -> list[tuple[str, str, int]]:
    found = []
    for package in (*PACKAGES, "dags"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    if not (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr in SQL_CALLS
                        and node.args
                    ):
                        continue
                    first = node.args[0]
                    formatted = isinstance(first, ast.JoinedStr | ast.BinOp) or (
                        isinstance(first, ast.Call)
                        and isinstance(first.func, ast.Attribute)
                        and first.func.attr == "format"
                        and isinstance(first.func.value, ast.Constant)
                    )
                    if formatted:
                        found.append((str(path.relative_to(REPO_ROOT)), function.name, node.lineno))
    return found


def test_no_sql_is_built_by_string_formatting() -> None:
    found = _formatted_sql_calls()
    assert {(path, function) for path, function, _ in found} <= ALLOWED, found
    assert found, "the scan finds the one allowed case: it would see any other"


def test_a_hostile_file_name_and_batch_id_load_as_data(
    pg_conn, warehouse, fixtures_dir: Path, tmp_path: Path
) -> None:
    migrate(pg_conn)
    folder = tmp_path / HOSTILE
    folder.mkdir()
    orders = folder / f"{HOSTILE}.csv"
    shutil.copy(fixtures_dir / "increments" / "2024-10-01" / "user_order_log_inc.csv", orders)
    summary = load_increment(pg_conn, date(2024, 10, 1), {"user_order_log": orders}, HOSTILE)
    loaded = summary.tables["user_order_log"]
    assert loaded.rows_loaded > 0 and loaded.file == orders
    assert query(warehouse, "select count(*) from staging.user_order_log") == [
        (loaded.rows_loaded,)
    ]
    assert (HOSTILE,) in query(warehouse, "select distinct batch_id from staging.load_audit")


def test_a_hostile_day_is_refused_before_any_sql(pg_conn, warehouse) -> None:
    migrate(pg_conn)
    result = subprocess.run(
        [sys.executable, "-m", "ingestion", "load", "--date", f"2024-10-01{HOSTILE}"],
        env={**warehouse, "PATH": str(Path(sys.executable).parent)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "2024-10-01x'); drop table" in result.stderr + result.stdout
    assert query(warehouse, "select to_regclass('staging.user_order_log') is not null") == [(True,)]

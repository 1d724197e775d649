"""``render_report`` on the marts built from the recorded extracts (real PostgreSQL, dbt).

The page's tables must hold exactly the mart's rows for the reported weeks, the charts
must be real PNG files, also embedded in the page (it opens offline), and the terminal
entry point must print the page's path.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import project
from ingestion.warehouse import connection
from retention_report import NoWeeksBuilt, render_report
from retention_report.render import CHART_TITLES
from support.mart_tables import execute, query
from support.recorded_marts import WEEK_IDS
from support.report_html import MEASURES, mart_rows, report_tables

REPO_ROOT = project.REPO_ROOT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(recorded_marts, tmp_path_factory) -> Path:
    with connection(recorded_marts) as conn:
        return render_report(conn, tmp_path_factory.mktemp("reports"))


def test_the_page_and_the_charts_are_written(report: Path) -> None:
    assert report.name == "retention.html"
    assert report.parent.name == "2024-W36_2024-W40"
    for name in CHART_TITLES:
        png = report.parent / name
        assert png.read_bytes().startswith(PNG_MAGIC), name
    _, images = report_tables(report)
    # every chart embedded as base64: the page needs no other file and no network
    assert len(images) == len(CHART_TITLES)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in report.read_text() and "https://" not in report.read_text()


def test_the_item_table_equals_the_marts_rows(recorded_marts, report: Path) -> None:
    tables, _ = report_tables(report)
    expected = mart_rows(recorded_marts, WEEK_IDS)
    assert len(expected) > 20  # 5 weeks x a dozen items
    assert tables["items"] == expected


def test_the_weekly_totals_are_the_sums_over_items(recorded_marts, report: Path) -> None:
    tables, _ = report_tables(report)
    sums = query(
        recorded_marts,
        "select period_id, count(*), "
        + ", ".join(f"sum({column})" for column in MEASURES)
        + ", sum(new_customers_revenue + returning_customers_revenue)"
        " from mart.f_customer_retention group by period_id order by period_id",
    )
    header = ["period_id", "items", *MEASURES, "revenue"]
    expected = [
        {
            name: f"{value:.2f}" if isinstance(value, Decimal) else str(value)
            for name, value in zip(header, row, strict=True)
        }
        for row in sums
    ]
    actual = [{name: row[name] for name in header} for row in tables["totals"]]
    assert actual == expected
    assert [row["period_id"] for row in tables["week_over_week"]] == WEEK_IDS
    assert tables["week_over_week"][0]["revenue"] == ""  # no week before the first
    w39, w40 = (Decimal(row["revenue"]) for row in tables["totals"][-2:])
    assert tables["week_over_week"][-1]["revenue"] == f"{(w40 - w39) / w39 * 100:+.1f}%"


def test_weeks_limits_the_report_to_the_last_built_weeks(recorded_marts, tmp_path) -> None:
    with connection(recorded_marts) as conn:
        path = render_report(conn, tmp_path, weeks=2)
    assert path.parent.name == "2024-W39_2024-W40"
    tables, _ = report_tables(path)
    assert [row["period_id"] for row in tables["totals"]] == ["2024-W39", "2024-W40"]
    assert tables["items"] == mart_rows(recorded_marts, ["2024-W39", "2024-W40"])


def test_a_built_week_with_no_orders_is_reported_with_zeros(recorded_marts, tmp_path) -> None:
    # a week recorded as built with no rows (what an empty week's build leaves)
    execute(
        recorded_marts,
        "insert into mart.f_customer_retention_weeks (period_start) values ('2024-10-07')",
    )
    try:
        with connection(recorded_marts) as conn:
            path = render_report(conn, tmp_path, weeks=3)
    finally:
        execute(
            recorded_marts,
            "delete from mart.f_customer_retention_weeks where period_start = '2024-10-07'",
        )
    tables, _ = report_tables(path)
    assert [row["period_id"] for row in tables["totals"]] == ["2024-W39", "2024-W40", "2024-W41"]
    last = tables["totals"][-1]
    assert last["items"] == "0" and last["revenue"] == "0.00"
    assert last["new_customers_count"] == "0"
    assert (path.parent / "items_last_week.png").read_bytes().startswith(PNG_MAGIC)


def test_no_built_week_is_a_clear_error(make_database, tmp_path) -> None:
    empty = make_database()
    with connection(empty) as conn, pytest.raises(NoWeeksBuilt, match="holds no week yet"):
        render_report(conn, tmp_path)
    assert not any(tmp_path.iterdir())


def test_python_m_retail_dev_report_prints_the_page(recorded_marts, tmp_path) -> None:
    env = {**os.environ, **recorded_marts, "RETENTION_REPORT_DIR": str(tmp_path / "out")}
    result = subprocess.run(
        [sys.executable, "-m", "retail_dev", "report", "--weeks", "3"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    printed = Path(result.stdout.strip())
    assert printed == (tmp_path / "out" / "2024-W38_2024-W40" / "retention.html").resolve()
    assert printed.is_file()


def test_python_m_retail_dev_report_without_weeks_fails_clearly(make_database, tmp_path) -> None:
    env = {**os.environ, **make_database()}
    result = subprocess.run(
        [sys.executable, "-m", "retail_dev", "report", "--out-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "mart.f_customer_retention holds no week yet" in result.stderr


def test_the_package_imports_neither_airflow_nor_ingestion() -> None:
    probe = (
        "import sys, retention_report, retention_report.render, retention_report.charts;"
        "print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('airflow', 'cosmos', 'ingestion')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

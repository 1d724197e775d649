"""The benchmark harness (``make bench``) runs end to end with tiny sizes.

Correctness of the harness only: each benchmark produces its rows and the report
renders. No timing is asserted here; the performance claims are ratios measured by
``make bench`` and recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest

from benchmarks import Result, airflow_run, dag_parse, format_table, loader, marts, scale
from benchmarks.__main__ import findings_for, main, render_markdown


@pytest.fixture
def databases(make_database):
    """The benchmarks' database factory, backed by the suite's throwaway databases."""
    return lambda: nullcontext(make_database())


def _measures(results: list[Result], benchmark: str) -> list[str]:
    assert all(r.benchmark == benchmark for r in results)
    for r in results:
        assert math.isfinite(r.value) and r.value >= 0, r
    return [r.measure for r in results]


def test_loader_benchmark_table(databases, tmp_path):
    results = loader.run(databases, tmp_path, orders=2000, repetitions=1, large_orders=300)
    assert _measures(results, "loader") == [
        "floor: COPY + staging's five indexes",
        "load_increment",
        "load / floor",
        "load_increment throughput",
        "peak RSS of one load",
        "peak RSS of one load, large file",
        "load_increment, large file",
    ]
    assert "2,000 order lines" in results[0].detail
    by_measure = {r.measure: r for r in results}
    assert 10 < by_measure["peak RSS of one load"].value < 300  # MB, a fresh interpreter's
    findings = findings_for(results)
    assert "`load_increment` takes" in findings[0] and "the floor" in findings[0]
    table = format_table(results)
    assert table.count("\n| loader |") == len(results)


@pytest.mark.slow
def test_marts_benchmark_table(databases, tmp_path):
    results = marts.run(
        databases, tmp_path, orders_per_day=50, short_days=7, long_days=14, repetitions=1
    )
    measures = _measures(results, "marts")
    for key in ("f_sales day", "retention week"):
        for suffix in (
            "dbt build, short history",
            "dbt build, long history",
            "ratio long/short, wall clock",
            "ratio long/short, model SQL",
            "ratio long/short, all nodes SQL",
        ):
            assert f"{key}: {suffix}" in measures
    # 1 week vs 2 weeks of the same 50-a-day source.
    assert "f_sales 350 vs 700 rows" in results[0].detail
    assert results[0].detail.startswith("7 days")
    assert len(findings_for(results)) == 2


@pytest.mark.slow
def test_scale_benchmark_table(databases, tmp_path):
    results = scale.run(
        databases, tmp_path, orders_per_day=20, days=10, baseline_days=3, repetitions=1
    )
    assert _measures(results, "scale") == [
        "load_report of the whole history",
        "load throughput",
        "full dbt build",
        "one incremental day, full history",
        "one incremental day, baseline history",
        "incremental day: ratio full/baseline, f_sales SQL",
        "incremental day: ratio full/baseline, wall clock",
    ]
    assert results[0].detail == "200 order lines over 10 days"
    (finding,) = findings_for(results)
    assert finding.startswith("B7: 200 order lines over 10 days: load ")
    assert "B3's 1.5x" in finding


def test_dag_parse_benchmark_table(tmp_path):
    results = dag_parse.run(tmp_path, repetitions=1)
    assert _measures(results, "dag_parse") == [
        "sales_mart.py: DagBag parse",
        "trivial one-task DAG: DagBag parse",
        "parse ratio ours/trivial",
        "sales_mart.py: DagBag() wall time",
    ]


def test_airflow_run_reads_the_dbt_groups_from_the_metadata_db(tmp_path):
    """The figures of ``benchmarks.airflow_run`` come from Airflow's task_instance table."""
    import sqlite3

    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as meta:
        meta.execute("create table dag_run (id, dag_id, run_id)")
        meta.execute("insert into dag_run values (1, 'sales_mart', 'r1')")
        meta.execute(
            "create table task_instance "
            "(dag_id, run_id, task_id, state, duration, start_date, end_date)"
        )
        start, end = "2024-10-07 03:00:00.000000", "2024-10-07 03:00:30.000000"
        meta.executemany(
            "insert into task_instance values ('sales_mart', 'r1', ?, ?, ?, ?, ?)",
            [
                ("load_staging", "success", 5.0, start, "2024-10-07 03:00:05.000000"),
                ("build_sales_mart.f_sales_model_build", "success", 3.5, start, end),
                ("build_sales_mart.d_item_model_build", "success", 1.5, start, end),
                ("build_retention_mart.f_customer_retention_model_build", "success", 2.0,
                 start, end),
                ("no_retention_today", "skipped", None, None, None),
            ],
        )  # fmt: skip
    groups_s, count, run_s, states = airflow_run.dbt_group_durations(db)
    assert (groups_s, count) == (7.0, 3)
    assert math.isclose(run_s, 30.0, abs_tol=0.01)
    assert states["no_retention_today"] == "skipped"
    findings = findings_for(
        [
            Result(
                "airflow_run", "build, cold cache: ratio dbt groups / plain dbt build", 2.1, "x"
            ),
            Result(
                "airflow_run", "build, warm cache: ratio dbt groups / plain dbt build", 1.2, "x"
            ),
        ]
    )
    assert findings == [
        "Daily Airflow run, `SALES_MART_DBT_MODE=build`, cold cache: the dbt task groups take"
        " 2.10x a plain `dbt build` of the same selections: does NOT meet the 1.5x target.",
        "Daily Airflow run, `SALES_MART_DBT_MODE=build`, warm cache: the dbt task groups take"
        " 1.20x a plain `dbt build` of the same selections: meets the 1.5x target.",
    ]


@pytest.mark.skip(
    reason="two `airflow db migrate` + `airflow dags test` runs (minutes); run "
    "`python -m benchmarks --only airflow_run`; tests/e2e/test_airflow_dag.py covers the DAG"
)
def test_airflow_run_benchmark_table(databases, tmp_path):
    results = airflow_run.run(databases, tmp_path, orders_per_day=20, repetitions=1)
    # cold and warm Cosmos cache, four figures each, per DAG set-up; dbt alone, four
    assert len(_measures(results, "airflow_run")) == 2 * 4 * len(airflow_run.MODES) + 4


def test_report_renders_machine_results_and_findings(tmp_path, pg_server, monkeypatch):
    """The CLI on the suite's server, loader only, writes the Markdown report."""
    for name, value in pg_server.items():
        monkeypatch.setenv(name, value)
    output = tmp_path / "benchmarks.md"
    argv = ["--only", "loader", "--orders", "500", "--reps", "1"]
    assert main([*argv, "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    for heading in ("## Machine", "## Parameters", "## Results", "## Findings", "## Method"):
        assert heading in text
    for fact in ("CPUs (nproc)", "Python", "PostgreSQL", "date"):
        assert f"- {fact}" in text
    assert "| loader | load / floor |" in text
    assert "`load_increment` takes" in text and "Peak RSS of one load" in text
    assert render_markdown([], [], _Args(), 0.0).startswith("# Benchmarks")


class _Args:
    reps = 1
    mart_reps = 1
    orders = 1
    large_orders = 0
    mart_orders = 1
    short_days = 1
    long_days = 2
    scale_orders = 1
    airflow_orders = 1
    airflow_modes = "build"

"""The dbt project parses, documents itself, and its Python API fails clearly."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from ingestion import dbt


def test_parse_and_docs_generate(warehouse: dict[str, str]) -> None:
    dbt.run_dbt(["docs", "generate"])  # parses and compiles every node first
    manifest = json.loads((dbt.target_dir() / "manifest.json").read_text())
    models = {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }
    # the docs site's landing page is the project's overview, not dbt's "Welcome!"
    overview = manifest["docs"]["doc.retail.__overview__"]["block_contents"]
    assert "How to read retention" in overview and "exactly one shipped order line" in overview
    for name, node in models.items():
        assert node["description"].strip(), f"{name} has no description"
        assert node["columns"], f"{name} documents no columns"
        for column, spec in node["columns"].items():
            assert spec["description"].strip(), f"{name}.{column} has no description"
    # Ephemeral models have no relation of their own (so no schema, and no test: their
    # rows are tested in every model that inlines them).
    ephemeral = {
        name for name, node in models.items() if node["config"]["materialized"] == "ephemeral"
    }
    assert ephemeral == {"int_order_lines_filtered_to_period"}
    marts = {
        name: node["schema"]
        for name, node in models.items()
        if not name.startswith("stg_") and name not in ephemeral
    }
    assert set(marts) == {
        "d_calendar",
        "d_city",
        "d_customer",
        "d_item",
        "f_sales",
        "f_customer_retention",
        "f_customer_retention_weeks",
    }
    assert set(marts.values()) == {"mart"}
    assert {node["schema"] for name, node in models.items() if name.startswith("stg_")} == {
        "staging"
    }
    tested = {
        manifest["nodes"][parent]["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        for parent in node["depends_on"]["nodes"]
        if parent.startswith("model.")
    }
    assert set(models) - ephemeral <= tested
    # one custom strategy for every incremental mart; dbt reads `+` as `_` in its macro name
    strategies = {
        name: node["config"]["incremental_strategy"]
        for name, node in models.items()
        if node["config"]["materialized"] == "incremental"
    }
    assert strategies == dict.fromkeys(
        set(marts) - {"d_calendar"},
        "period_delete+insert",
    )
    assert "macro.retail.get_incremental_period_delete_insert_sql" in manifest["macros"]
    for name in ephemeral:
        readers = {
            child["name"]
            for child in manifest["nodes"].values()
            if f"model.retail.{name}" in child["depends_on"]["nodes"]
        }
        assert readers and readers <= tested, name
    unit_tests = {test["name"] for test in manifest["unit_tests"].values()}
    assert len(unit_tests) >= 5
    # every mart has an enforced contract: each column typed (dbt checks the SQL's
    # columns against them before it writes; a mismatch fails that model's build)
    for name in marts:
        node = models[name]
        assert node["contract"]["enforced"] is True, name
        assert all(spec["data_type"] for spec in node["columns"].values()), name
    # the report is declared, on the mart it reads
    exposure = manifest["exposures"]["exposure.retail.retention_report"]
    assert sorted(exposure["depends_on"]["nodes"]) == [
        "model.retail.f_customer_retention",
        "model.retail.f_customer_retention_weeks",
    ]
    # the customer history is a snapshot in mart, documented column by column
    history = manifest["nodes"]["snapshot.retail.d_customer_history"]
    assert history["schema"] == "mart" and history["description"].strip()
    assert all(spec["description"].strip() for spec in history["columns"].values())


def test_week_start_must_be_a_monday(warehouse: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a Monday"):
        dbt.build_periods([], [date(2024, 10, 1)])
    with pytest.raises(dbt.DbtError, match="not a Monday"):
        dbt.run_dbt(
            ["compile", "--select", "f_customer_retention"], vars={"week_start": "2024-10-01"}
        )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"week_start": "2024-09-30..2024-10-08"}, "2024-10-08 is a Tuesday, not a Monday"),
        ({"day": "2024-10-02..2024-10-01"}, "not an ordered range"),
        ({"day": "2024-10-01..2024-10-02..2024-10-03"}, "not an ordered range"),
        ({"day": "2024-10-01..2024-10-32"}, "'2024-10-32' is not a calendar date"),
        ({"day": "yesterday"}, "var day='yesterday': 'yesterday' is not a calendar date"),
        ({"day": "2024-02-30"}, "var day='2024-02-30': '2024-02-30' is not a calendar date"),
        ({"day": "2023-02-29"}, "'2023-02-29' is not a calendar date"),
        ({"day": ""}, "var day is empty"),
        ({"day": " , "}, "var day is empty"),
        ({"day": "None"}, "var day='None': 'None' is not a calendar date"),
        ({"week_start": ""}, "var week_start is empty"),
        ({"week_start": "2024-09-30,2024-10-01"}, "2024-10-01 is a Tuesday, not a Monday"),
    ],
)
def test_bad_period_variables_fail_the_compile(
    warehouse: dict[str, str], variables: dict[str, str], message: str
) -> None:
    # `dbt parse` renders every model, so the period macro refuses the variable there
    # already (as `compile` and `build` would), without connecting to the warehouse.
    # In this process (dbtRunner, as Cosmos runs dbt): about 1.5 s a case instead of 7 s
    # for a dbt process each; test_week_start_must_be_a_monday covers run_dbt's DbtError.
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            "parse",
            "--vars",
            json.dumps(variables),
            "--project-dir",
            str(dbt.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(dbt.DBT_PROJECT_DIR),
            "--quiet",
        ]
    )
    assert not result.success
    assert re.search(message, str(result.exception)), result.exception


def test_a_range_narrows_to_its_days_and_weeks(warehouse: dict[str, str]) -> None:
    dbt.run_dbt(
        ["compile", "--select", "f_sales", "f_customer_retention"],
        vars={"day": "2024-09-29..2024-10-02", "week_start": "2024-09-23..2024-09-30"},
    )
    compiled = dbt.target_dir() / "compiled" / "retail" / "models" / "marts"
    f_sales = (compiled / "f_sales.sql").read_text()
    assert "ordered_at >= '2024-09-29' and ordered_at < '2024-10-03'" in f_sales
    retention = (compiled / "f_customer_retention.sql").read_text()
    assert "20240923" in retention and "20241006" in retention


def test_a_list_narrows_to_each_of_its_days(warehouse: dict[str, str]) -> None:
    """Scattered days (a correction touched them) build only those days; 2024-02-29 is real."""
    dbt.run_dbt(
        ["compile", "--select", "f_sales"],
        vars={"day": "2024-09-03, 2024-10-01..2024-10-02,2024-10-02,2024-02-29"},
    )
    compiled = dbt.target_dir() / "compiled" / "retail" / "models" / "marts"
    f_sales = (compiled / "f_sales.sql").read_text()
    for first, end in (("2024-02-29", "2024-03-01"), ("2024-09-03", "2024-09-04")):
        assert f"ordered_at >= '{first}' and ordered_at < '{end}'" in f_sales
    assert "ordered_at >= '2024-10-01' and ordered_at < '2024-10-03'" in f_sales
    assert "2024-09-05" not in f_sales and "2024-09-30" not in f_sales


def test_the_period_from_the_environment_narrows_and_keeps_partial_parsing(
    warehouse: dict[str, str], tmp_path
) -> None:
    """``run`` and the DAG pass the period as RETAIL_DAY / RETAIL_WEEK_START: the same
    narrowing as the variables, a bad value named, and no full re-parse when it changes
    (a new --vars value makes dbt re-parse the whole project)."""
    target = {"DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path)}
    compiled = tmp_path / "target" / "compiled" / "retail" / "models" / "marts" / "f_sales.sql"
    for day, other in (("2024-10-01", "2024-10-05"), ("2024-10-05", "2024-10-01")):
        dbt.run_dbt(["compile", "--select", "f_sales"], periods={"day": day}, env=target)
        f_sales = compiled.read_text()
        assert f"ordered_at >= '{day}'" in f_sales and other not in f_sales
    # the second compile kept dbt's partial parse: the first one's msgpack was reused
    log = (tmp_path / "dbt.log").read_text(errors="replace")
    second = log[log.rfind("Running with dbt") :]
    assert "Running with dbt" in log and log.count("Running with dbt") == 2
    assert "Unable to do partial parsing" not in second, second[-3000:]
    # --vars win over the environment
    dbt.run_dbt(
        ["compile", "--select", "f_sales"],
        vars={"day": "2024-09-08"},
        periods={"day": "2024-10-01"},
        env=target,
    )
    assert "ordered_at >= '2024-09-08'" in compiled.read_text()
    with pytest.raises(dbt.DbtError, match="env RETAIL_WEEK_START='2024-10-01'"):
        dbt.run_dbt(
            ["compile", "--select", "f_customer_retention"],
            periods={"week_start": "2024-10-01"},
            env=target,
        )
    with pytest.raises(dbt.DbtError, match="env RETAIL_DAY is empty"):
        dbt.run_dbt(["compile", "--select", "f_sales"], periods={"day": ""}, env=target)

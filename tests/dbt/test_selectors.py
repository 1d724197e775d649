"""dbt_project/selectors.yml: the CLI builds select exactly the nodes they selected before
the selectors existed (the former `--select` lists of ingestion.dbt, tests `buildable`).

The Airflow side (Cosmos renders its task groups from the same selectors) is checked in
tests/dags/test_dag_integrity.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingestion import dbt
from support.dbt_ls import dbt_ls, model_names

STAGING_VIEWS = {
    "stg_report_api__user_order_log",
    "stg_report_api__user_activity_log",
    "stg_report_api__customer_research",
    "stg_report_api__price_log",
}
SALES_MODELS = STAGING_VIEWS | {"d_calendar", "d_city", "d_customer", "d_item", "f_sales"}
RETENTION_MODELS = {"f_customer_retention", "f_customer_retention_weeks"}

# The selections the CLI passed before selectors.yml (ephemeral models, added since, are
# inlined into the models that read them and selected by none of the builds).
FORMER_SALES_SELECT = [
    "path:models/staging",
    "+d_city",
    "+d_customer",
    "+d_item",
    "d_calendar",
    "+f_sales",
    "path:snapshots",  # the customer history, added since
]
FORMER_RETENTION_SELECT = ["f_customer_retention", "f_customer_retention_weeks"]
FORMER_OPTIONS = ["--indirect-selection", "buildable", "--exclude", "config.materialized:ephemeral"]


@pytest.fixture(scope="module")
def ls(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., set[str]]:
    """``dbt ls`` with its artifacts in a temporary folder, each selection listed once."""
    target_path = tmp_path_factory.mktemp("dbt-ls-target")
    listed: dict[tuple[str, ...], set[str]] = {}

    def _ls(*args: str) -> set[str]:
        if args not in listed:
            listed[args] = dbt_ls(list(args), target_path)
        return listed[args]

    return _ls


@pytest.mark.parametrize(
    ("selector", "former_select", "models"),
    [
        (dbt.SALES_SELECTOR, FORMER_SALES_SELECT, SALES_MODELS),
        (dbt.RETENTION_SELECTOR, FORMER_RETENTION_SELECT, RETENTION_MODELS),
        (
            dbt.SALES_AND_RETENTION_SELECTOR,
            FORMER_SALES_SELECT + FORMER_RETENTION_SELECT,
            SALES_MODELS | RETENTION_MODELS,
        ),
    ],
)
def test_selector_picks_the_nodes_of_the_former_select(
    ls: Callable[..., set[str]], selector: str, former_select: list[str], models: set[str]
) -> None:
    selected = ls("--selector", selector)
    assert selected == ls("--select", *former_select, *FORMER_OPTIONS)
    assert model_names(selected) == models
    snapshots = {node for node in selected if node.startswith("snapshot.")}
    assert snapshots == ({"snapshot.retail.d_customer_history"} if "sales" in selector else set())
    tests = {node for node in selected if node.startswith(("test.", "unit_test."))}
    assert tests, selector  # the models' tests, selected indirectly


def test_day_and_week_tests_are_split_as_before(ls: Callable[..., set[str]]) -> None:
    """buildable: the weekly reconciliation runs with the retention build, not the day's."""
    sales = ls("--selector", dbt.SALES_SELECTOR)
    retention = ls("--selector", dbt.RETENTION_SELECTOR)
    weekly = "test.retail.assert_retention_revenue_matches_f_sales"
    daily = "test.retail.assert_f_sales_day_sums_match_staging"
    assert weekly in retention and weekly not in sales
    assert daily in sales and daily not in retention
    assert not sales & retention
    assert any(node.startswith("unit_test.retail.f_customer_retention.") for node in retention)
    # the ephemeral model is inlined where it is read, never built on its own
    ephemeral = ls("--select", "config.materialized:ephemeral")
    assert model_names(ephemeral) == {"int_order_lines_filtered_to_period"}
    assert not ephemeral & (sales | retention)

"""The Cosmos task groups of ``sales_mart``: one ``dbt build`` task per model, dbt invoked
in the task's process, the profile from the ``warehouse`` connection, and the CLI's
build lock held around each task's dbt invocation (``pre_execute`` / ``post_execute``),
so a terminal ``python -m ingestion run`` and a DAG run never build the marts at once."""

from __future__ import annotations

from typing import Any

from cosmos import (
    DbtTaskGroup,
    ExecutionConfig,
    InvocationMode,
    LoadMode,
    ProfileConfig,
    ProjectConfig,
    RenderConfig,
    TestBehavior,
    TestIndirectSelection,
)

from ingestion.project import DBT_PROJECT_DIR
from sales_mart_support.connections import WAREHOUSE_CONN_ID, WarehouseProfileMapping

PROFILE = ProfileConfig(
    profile_name="retail",
    target_name="airflow",
    profile_mapping=WarehouseProfileMapping(
        conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": "mart"}
    ),
)
_held: list[Any] = []  # the lock's connection while this process's dbt task runs


def hold_build_lock(context: Any) -> None:
    """Wait for the marts' build lock (``PIPELINE_LOCK_TIMEOUT_S``; a timeout is retried)."""
    from ingestion import locks
    from sales_mart_support.connections import warehouse_settings

    release_build_lock()  # a failed task of `airflow dags test` (one process) left it
    what = "dbt build of the marts"
    _held.append(locks.acquire(warehouse_settings(), locks.MARTS_BUILD_LOCK_KEY, what))


def release_build_lock(context: Any = None, result: Any = None) -> None:
    """Release it (also released when the task's process ends, failed or not)."""
    while _held:
        _held.pop().close()


def dbt_group(
    group_id: str,
    selector: str,
    env: dict[str, str],
    *,
    test_behavior: TestBehavior = TestBehavior.BUILD,
    invocation_mode: InvocationMode = InvocationMode.DBT_RUNNER,
    **kwargs: Any,
) -> DbtTaskGroup:
    """A task group for a named selector of ``selectors.yml`` (the CLI builds the same),
    rendered from the manifest ``make manifest`` writes. ``env`` reaches dbt (the period)."""
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            manifest_path=DBT_PROJECT_DIR / "target" / "manifest.json",
            project_name="retail",
            install_dbt_deps=False,  # no hub packages
            env_vars=env,
        ),
        profile_config=PROFILE,
        execution_config=ExecutionConfig(
            dbt_project_path=DBT_PROJECT_DIR,
            invocation_mode=invocation_mode,
            # a model's tests are those whose other parents are upstream of it, as in a
            # plain `dbt build` (Cosmos ignores the selectors' indirect_selection)
            test_indirect_selection=TestIndirectSelection.BUILDABLE,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            selector=selector,
            test_behavior=test_behavior,
            # The DAG records the retention mart's asset itself (publish_retention): Cosmos
            # would build asset URIs from the profile's host, and a unix-socket folder
            # (the embedded warehouse's) is no URI host.
            emit_datasets=False,
        ),
        operator_args={"pre_execute": hold_build_lock, "post_execute": release_build_lock},
        **kwargs,
    )

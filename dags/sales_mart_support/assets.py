"""The Airflow assets the marts announce, as the report DAG schedules on them.

Cosmos emits the assets (``RenderConfig(emit_datasets=True)`` in ``sales_mart``): after
each dbt task it reads dbt's artifacts with OpenLineage and records one asset event per
model it built, on the URI ``postgres://<host>:<port>/<database>/<schema>/<table>``
(``cosmos.dataset.construct_dataset_uri``, Airflow 3 form), through an
:class:`~airflow.sdk.AssetAlias` named after the task (``cosmos.dataset.get_dataset_alias_name``:
``<dag>__<group>__<task>``). The URI holds the warehouse's host and database, which only
the ``warehouse`` connection knows, and a DAG file reads no connection at parse time: so
``retention_report`` is scheduled on the alias of the task that builds
``f_customer_retention``, which Airflow resolves to that URI when the first event comes
through it, wherever the warehouse is. The alias is computed with Cosmos's own function.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk import AssetAlias
from cosmos.dataset import get_dataset_alias_name

SALES_MART_DAG_ID = "sales_mart"
RETENTION_GROUP_ID = "build_retention_mart"
# Cosmos's task id for f_customer_retention under TestBehavior.BUILD
RETENTION_BUILD_TASK_ID = "f_customer_retention_model_build"


@dataclass(frozen=True)
class _TaskGroupIds:
    """What ``get_dataset_alias_name`` reads of a task group (no DAG needs to be built)."""

    dag_id: str
    group_id: str


def cosmos_alias(dag_id: str, group_id: str, task_id: str) -> AssetAlias:
    """The alias Cosmos records a dbt task's asset events through."""
    group = _TaskGroupIds(dag_id=dag_id, group_id=group_id)
    return AssetAlias(get_dataset_alias_name(None, group, task_id))  # type: ignore[arg-type]


# The retention mart, as sales_mart's retention group announces it.
RETENTION_MART = cosmos_alias(SALES_MART_DAG_ID, RETENTION_GROUP_ID, RETENTION_BUILD_TASK_ID)

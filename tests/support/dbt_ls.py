"""``dbt ls``: the nodes a selection picks, as dbt itself resolves it (no connection)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ingestion.dbt import DBT_PROJECT_DIR

# dbt ls renders profiles.yml (which reads these) but opens no connection.
_PROFILE_DEFAULTS = {"PGHOST": "localhost", "PGUSER": "postgres", "PGDATABASE": "postgres"}


def dbt_ls(args: list[str], target_path: Path) -> set[str]:
    """The unique ids ``dbt ls <args>`` lists; dbt writes its artifacts to ``target_path``.

    dbt runs in this process (dbtRunner, as Cosmos runs it): after the first call about
    2 s a listing instead of 7 s for a dbt process each.
    """
    from dbt.cli.main import dbtRunner

    missing = {name: value for name, value in _PROFILE_DEFAULTS.items() if name not in os.environ}
    os.environ.update(missing)
    try:
        result = dbtRunner().invoke(
            [
                "ls",
                *args,
                "--output",
                "json",
                "--output-keys",
                "unique_id",
                "--quiet",
                "--target-path",
                str(target_path),
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
            ]
        )
    finally:
        for name in missing:
            del os.environ[name]
    assert result.success, result.exception
    return {json.loads(line)["unique_id"] for line in result.result}


def model_names(unique_ids: set[str]) -> set[str]:
    return {node.split(".")[-1] for node in unique_ids if node.startswith("model.")}

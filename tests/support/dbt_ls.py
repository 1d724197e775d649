"""``dbt ls``: the nodes a selection picks, as dbt itself resolves it (no connection)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ingestion.dbt import DBT_PROJECT_DIR, dbt_executable


def dbt_ls(args: list[str], target_path: Path) -> set[str]:
    """The unique ids ``dbt ls <args>`` prints; dbt writes its artifacts to ``target_path``."""
    env = {
        # dbt ls renders profiles.yml but opens no connection
        "PGHOST": "localhost",
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
        **os.environ,
        "DO_NOT_TRACK": "1",
        "DBT_TARGET_PATH": str(target_path),
    }
    completed = subprocess.run(
        [
            dbt_executable(),
            "ls",
            *args,
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--quiet",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
        ],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return {
        json.loads(line)["unique_id"]
        for line in completed.stdout.splitlines()
        if line.startswith("{")
    }


def model_names(unique_ids: set[str]) -> set[str]:
    return {node.split(".")[-1] for node in unique_ids if node.startswith("model.")}

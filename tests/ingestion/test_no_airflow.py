"""``ingestion`` is the runtime package: importing every module of it imports no Airflow.

Checked in a fresh interpreter (this test process may have imported Airflow already):
every module under ``ingestion/`` is imported, then ``sys.modules`` must hold no
``airflow`` module, nor Cosmos (which imports Airflow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # not imported from ingestion: probed below

PROBE = """
import importlib, json, pkgutil, sys
from ingestion import project
import ingestion
names = ["ingestion"] + [
    module.name
    for module in pkgutil.walk_packages(ingestion.__path__, "ingestion.")
    if module.name != "ingestion.__main__"  # runs the CLI; it imports only ingestion.cli
]
for name in names:
    importlib.import_module(name)
loaded = sorted(
    name for name in sys.modules if name.split(".")[0] in ("airflow", "cosmos")
)
print(json.dumps({"imported": names, "airflow": loaded}))
"""


def test_importing_every_ingestion_module_imports_no_airflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    # the probe saw the package's modules, the ones that moved here included
    assert {"ingestion.pipeline", "ingestion.dates", "ingestion.config", "ingestion.cli"} <= set(
        probe["imported"]
    )
    assert "ingestion.airflow_glue" not in probe["imported"]
    assert probe["airflow"] == []

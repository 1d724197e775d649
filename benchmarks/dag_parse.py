"""DAG parse time: ``dags/sales_mart.py`` against a trivial DAG parsed the same way.

Each repetition is a fresh interpreter (``AIRFLOW_HOME`` in a temporary folder, SQLite, no
example DAGs, telemetry off) that imports Airflow, then fills a ``DagBag`` from one file.
The figure is the DagBag's own ``dagbag_stats[].duration`` (the file's parse as the DAG
processor reports it), not the interpreter's start or ``import airflow`` (Cosmos is
imported by Airflow's plugin manager before any file, so in neither figure).

Baseline: a one-task ``EmptyOperator`` DAG, parsed interleaved with ours. Limit: the
DAG file parses in under 1 s (medians of ``--reps``). Cosmos renders the DAG from the
manifest ``make manifest`` writes (``make bench`` makes it first).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import Result, ratio
from ingestion.project import REPO_ROOT

NAME = "dag_parse"
SALES_MART = REPO_ROOT / "dags" / "sales_mart.py"
TRIVIAL_DAG = """\
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
with DAG("trivial", schedule=None):
    EmptyOperator(task_id="noop")
"""
PARSE = """\
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"seconds": sum(s.duration.total_seconds() for s in bag.dagbag_stats),
                  "dags": bag.size(), "errors": {str(k): str(v)[-2000:] for k, v in
                  bag.import_errors.items()}}))
"""


def parse_seconds(dag_file: Path, airflow_home: Path) -> float:
    """The DagBag's parse of ``dag_file`` in a fresh interpreter; fails on import errors."""
    airflow_home.mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        "DO_NOT_TRACK": "1",
        # the DAG processor puts the DAGs folder on sys.path (for sales_mart_support)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(dag_file.parent),
                                                    os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    command = [sys.executable, "-c", PARSE, str(dag_file)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=airflow_home)
    parsed = json.loads((done.stdout.strip().splitlines() or ["{}"])[-1] or "{}")
    if done.returncode or parsed.get("errors") or not parsed.get("dags"):
        raise RuntimeError(f"parsing {dag_file} failed: {parsed or done.stderr[-3000:]}")
    return parsed["seconds"]


def run(databases: Any, workdir: Path, sizes: Any) -> list[Result]:
    trivial = workdir / "trivial_dag" / "trivial.py"
    trivial.parent.mkdir(parents=True, exist_ok=True)
    trivial.write_text(TRIVIAL_DAG, encoding="utf-8")
    ours, base = [], []
    for rep in range(max(1, sizes.reps)):  # interleaved: a busy spell hits both alike
        base.append(parse_seconds(trivial, workdir / f"parse_home_t{rep}"))
        ours.append(parse_seconds(SALES_MART, workdir / f"parse_home_o{rep}"))
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    return [
        Result(NAME, "trivial one-task DAG: DagBag parse", base_s, "s", "baseline"),
        Result(NAME, "sales_mart.py: DagBag parse", ours_s, "s",
               f"median of {len(ours)}", limit=1.0),
        Result(NAME, "sales_mart.py / trivial DAG", ratio(ours_s, base_s), "x"),
    ]  # fmt: skip

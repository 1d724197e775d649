"""DAG parse time: ``dags/sales_mart.py`` against a trivial DAG, parsed the same way.

Every repetition is a fresh interpreter (``AIRFLOW_HOME`` in a temporary folder, SQLite
metadata, no example DAGs, telemetry off) that imports Airflow, then fills a ``DagBag``
from the one file. What is measured is the file's own parse, as the DAG processor
reports it (``dagbag_stats[].duration``, i.e. ``DagBag.process_file``), not the
interpreter start or the ``import airflow`` that every parse pays before it. The
baseline is a one-task DAG file (``EmptyOperator``) parsed in exactly the same way.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks import Result, ratio

NAME = "dag_parse"
REPO_ROOT = Path(__file__).resolve().parent.parent
SALES_MART = REPO_ROOT / "dags" / "sales_mart.py"
LIMIT_S = 1.0  # the requirement for the DAG's own parse

TRIVIAL_DAG = textwrap.dedent(
    """\
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import dag


    @dag(dag_id="trivial", schedule=None)
    def trivial():
        EmptyOperator(task_id="noop")


    trivial()
    """
)

PARSE_SCRIPT = textwrap.dedent(
    """\
    import json, sys, time
    from airflow.dag_processing.dagbag import DagBag
    started = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    wall = time.perf_counter() - started
    print("BENCH_RESULT " + json.dumps({
        "wall": wall,
        "duration": sum(s.duration.total_seconds() for s in bag.dagbag_stats),
        "dags": bag.size(),
        "errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
    }))
    """
)


class DagParseError(RuntimeError):
    """The DAG file did not parse; the benchmark would time an import error."""


def parse_once(dag_file: Path, airflow_home: Path) -> dict[str, float]:
    """Parse ``dag_file`` in a fresh interpreter; the DagBag's own duration and wall time."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        "DO_NOT_TRACK": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # Airflow's DAG processor puts the DAGs folder on sys.path (the DAG imports
        # sales_mart_support from beside it); a bare DagBag in a script does not.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(dag_file.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(dag_file)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=airflow_home,
    )
    line = next(
        (ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None
    )
    if completed.returncode != 0 or line is None:
        tail = (completed.stdout + completed.stderr)[-3000:]
        raise DagParseError(f"parsing {dag_file} failed (exit {completed.returncode}):\n{tail}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    if result["errors"] or result["dags"] < 1:
        raise DagParseError(f"{dag_file} has import errors: {result['errors']}")
    return result


def ensure_manifest() -> None:
    """The DAG renders its Cosmos task groups from dbt's manifest; create it if missing."""
    from ingestion import dbt

    manifest = dbt.DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.exists():
        dbt.run_dbt(["parse"])


def run(workdir: Path, repetitions: int = 3, dag_file: Path = SALES_MART) -> list[Result]:
    ensure_manifest()
    trivial = workdir / "trivial_dag" / "trivial.py"
    trivial.parent.mkdir(parents=True, exist_ok=True)
    trivial.write_text(TRIVIAL_DAG, encoding="utf-8")
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "trivial": []}
    # Interleaved, so a busy spell on the machine hits every side alike.
    for rep in range(max(1, repetitions)):
        samples["trivial"].append(parse_once(trivial, workdir / f"airflow_home_t{rep}"))
        samples["ours"].append(parse_once(dag_file, workdir / f"airflow_home_o{rep}"))

    def med(side: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[side])

    ours, base = med("ours", "duration"), med("trivial", "duration")
    verdict = "meets" if ours < LIMIT_S else "EXCEEDS"
    return [
        Result(
            NAME,
            f"{dag_file.name}: DagBag parse",
            ours,
            "s",
            f"median of {repetitions}; {verdict} the < {LIMIT_S:g} s requirement",
        ),
        Result(NAME, "trivial one-task DAG: DagBag parse", base, "s", "baseline"),
        Result(NAME, "parse ratio ours/trivial", ratio(ours, base), "x"),
        Result(
            NAME,
            f"{dag_file.name}: DagBag() wall time",
            med("ours", "wall"),
            "s",
            f"incl. DagBag set-up; trivial {med('trivial', 'wall'):.3f} s",
        ),
    ]

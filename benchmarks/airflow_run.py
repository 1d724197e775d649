"""A daily Airflow run of ``sales_mart`` against a plain ``dbt build`` of the same work (B6).

One throwaway warehouse: the local report API's days 2024-09-30..2024-10-05
(``--airflow-orders`` lines a day) loaded and built by ``python -m ingestion run``. Then
``airflow dags test sales_mart 2024-10-07T03:00:00+00:00``: the Monday run loads Sunday and
rebuilds Sunday's ``f_sales`` and the week's retention. The figure is the sum of the dbt
groups' task durations in the SQLite metadata database (``dags test`` runs one task at a
time), on an empty Cosmos cache (**cold**: a worker's first run after a deploy), then, with
``--reps`` above 1, on the cache it left (**warm**: every later run). ``production`` is
``dags/`` as it is (a ``dbt build`` task per model, dbt in the task's process); the other
variants are that DAG file with other ``dbt_group`` arguments, written here into a DAGs
folder of their own: ``after-each`` (a run and a test task per model, the layout before
B6) and ``subprocess`` (a ``dbt`` process per task).

Baseline: ``ingestion.dbt.build_periods([Sunday], [its Monday])``, the same selections and
periods in one ``dbt build`` on the same warehouse, right after each variant's runs
(median of ``--reps``); every run must leave the marts as the first left them (checked).
Limit: 1.5x. Then dbt alone, no Airflow or Cosmos: in a process of its own running dbt
in-process as Cosmos does, after one untimed build, each model of the two selections built
on its own (``--select <model>``, summed) against each selection built once: what a task
per model costs before any Airflow or Cosmos work.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import DatabaseFactory, Result, median_seconds, ratio
from ingestion import project
from ingestion.project import PERIOD_ENV, REPO_ROOT

NAME = "airflow_run"
SUNDAY = date(2024, 10, 6)  # D of the measured Monday run
MONDAY = SUNDAY - timedelta(days=6)  # its ISO week
LOGICAL_DATE = f"{SUNDAY + timedelta(days=1)}T03:00:00+00:00"
BIN = Path(sys.executable).parent
VARIANTS = {  # dbt_group's arguments in each variant of the DAG
    "production": "",
    "after-each": "test_behavior=TestBehavior.AFTER_EACH",
    "subprocess": "invocation_mode=InvocationMode.SUBPROCESS",
}
VARIANT_DAG = """\
# sales_mart with other Cosmos arguments (Airflow parses files naming "airflow" and "dag")
import functools
from cosmos import InvocationMode, TestBehavior  # noqa: F401
from sales_mart_support import cosmos
cosmos.dbt_group = functools.partial(cosmos.dbt_group, {arguments})
import sales_mart  # noqa: E402, F401 - the production DAG file, with the dbt_group above
"""


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    if done.returncode:
        output = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(command[:4])} exited {done.returncode}:\n{output}")
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Airflow, libpq, report API or dbt settings, plus ``extra``."""
    prefixes = ("AIRFLOW", "PG", "REPORT_API_", "DBT_", *PERIOD_ENV.values())
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # Cosmos looks for dbt on PATH
    return {**base, "PATH": path, "DO_NOT_TRACK": "1", **extra}


def dbt_folders(workdir: Path, name: str) -> dict[str, str]:
    """dbt's target and logs outside the project: the project's partial parse stays older
    than Cosmos's cache, as on a worker."""
    return {"DBT_TARGET_PATH": str(workdir / name / "target"),
            "DBT_LOG_PATH": str(workdir / name / "logs")}  # fmt: skip


def airflow_runs(variant: str, runs: int, workdir: Path, connections: dict[str, str]) -> list:
    """[(dbt groups' seconds, their task count)] of ``runs`` ``dags test`` runs, the first
    on an empty Cosmos cache, in one AIRFLOW_HOME."""
    home, dags = workdir / f"airflow_{variant}", REPO_ROOT / "dags"
    if VARIANTS[variant]:
        dags = workdir / f"dags_{variant}"
        dags.mkdir()
        (dags / "sales_mart_variant.py").write_text(VARIANT_DAG.format(arguments=VARIANTS[variant]))
    env = clean_env(
        AIRFLOW_HOME=str(home), AIRFLOW__COSMOS__CACHE_DIR=str(home / "cosmos_cache"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
        AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS="False",
        PYTHONPATH=str(REPO_ROOT / "dags"), **connections,
    )  # fmt: skip
    _run([str(BIN / "airflow"), "db", "migrate"], env)
    figures = []
    for _ in range(runs):
        _run([str(BIN / "airflow"), "dags", "test", project.SALES_MART_DAG_ID, LOGICAL_DATE], env)
        with sqlite3.connect(home / "airflow.db") as meta:
            tasks = meta.execute(
                "select task_id, state, duration from task_instance where run_id ="
                " (select run_id from dag_run where dag_id = ? order by id desc limit 1)",
                (project.SALES_MART_DAG_ID,),
            ).fetchall()
        if not tasks or any(state != "success" for _, state, _ in tasks):
            raise RuntimeError(f"{variant}: not every task succeeded: {tasks}")
        groups = [duration for task, _, duration in tasks if "." in task]  # group.task
        figures.append((sum(groups), len(groups)))
    return figures


def marts(settings: dict[str, str]) -> dict[str, list[tuple[str, ...]]]:
    from ingestion.warehouse import connection

    with connection(settings) as conn, conn.cursor() as cur:
        rows = {}
        for table in project.MART_TABLES:
            cur.execute(f"select * from mart.{table}")  # noqa: S608 - our own table names
            rows[table] = sorted(tuple(map(str, row)) for row in cur.fetchall())
    return rows


def run(databases: DatabaseFactory, workdir: Path, sizes: Any) -> list[Result]:
    from ingestion import dbt
    from local_report_api import LocalApiConfig, LocalReportApi
    from retail_dev.cli import local_api_settings
    from retail_dev.local_airflow import connection_env

    results, reference = [], None
    with (databases() as settings,
          LocalReportApi(LocalApiConfig(orders_per_day=sizes.airflow_orders)) as api):  # fmt: skip
        api_settings = local_api_settings(api)
        cli = clean_env(**settings, **api_settings.env(), **dbt_folders(workdir, "cli"))
        saturday = SUNDAY - timedelta(days=1)
        _run([sys.executable, "-m", "ingestion", "run", "--start", str(MONDAY),
              "--end", str(saturday)], cli)  # fmt: skip
        connections = connection_env(settings, api_settings, warehouse_form="uri")
        plain_env = {**settings, **dbt_folders(workdir, "plain")}

        def unchanged(after: str) -> None:
            if marts(settings) != reference:
                raise RuntimeError(f"the marts changed after {after}")

        for variant in sizes.airflow_variants.split(","):
            runs = airflow_runs(variant, 1 + (sizes.reps > 1), workdir, connections)
            reference = reference or marts(settings)
            unchanged(f"the {variant} runs")
            plain, _ = median_seconds(lambda: dbt.build_periods([SUNDAY], [MONDAY], env=plain_env),
                                      sizes.reps)  # fmt: skip
            unchanged("the plain dbt build")
            for cache, (groups_s, tasks) in zip(("cold", "warm"), runs, strict=False):
                results.append(Result(
                    NAME, f"{variant}, {cache} cache: dbt groups / plain dbt build",
                    ratio(groups_s, plain), "x",
                    f"{groups_s:.1f} s in {tasks} dbt tasks; plain build {plain:.1f} s",
                    limit=1.5,
                ))  # fmt: skip
        env = clean_env(**settings, **dbt_folders(workdir, "alone"))
        alone = json.loads(_run([sys.executable, "-m", "benchmarks.airflow_run"], env)
                           .strip().splitlines()[-1])  # fmt: skip
        unchanged("dbt alone")
    return results + [
        Result(NAME, "dbt alone: each selection built once", alone["selections"], "s",
               "baseline; two `dbt build --selector`"),
        Result(NAME, "dbt alone: each model built on its own", alone["models"], "s",
               f"{alone['count']} `dbt build --select <model>`, summed"),
        Result(NAME, "dbt alone: per model / per selection",
               ratio(alone["models"], alone["selections"]), "x",
               "what a task per model costs before Airflow and Cosmos"),
    ]  # fmt: skip


def dbt_alone() -> dict[str, float]:
    """In this process, as Cosmos runs dbt: each selection once, then each of its models
    on its own (after one untimed build of each selection)."""
    from dbt.cli.main import dbtRunner

    os.environ.update({PERIOD_ENV["day"]: str(SUNDAY), PERIOD_ENV["week_start"]: str(MONDAY)})
    folder = str(project.DBT_PROJECT_DIR)

    def dbt(*args: str) -> tuple[float, Any]:
        started = time.perf_counter()
        done = dbtRunner().invoke([*args, "--project-dir", folder, "--profiles-dir", folder, "-q"])
        if not done.success:
            raise RuntimeError(f"dbt {' '.join(args)} failed: {done.exception}")
        return time.perf_counter() - started, done.result

    selectors = (project.SALES_SELECTOR, project.RETENTION_SELECTOR)
    for selector in selectors:  # dbt's import and the project's parse, untimed
        dbt("build", "--selector", selector)
    selections = sum(dbt("build", "--selector", selector)[0] for selector in selectors)
    models = [str(name).rsplit(".", 1)[-1] for selector in selectors
              for name in dbt("ls", "--selector", selector, "--resource-type", "model",
                              "--resource-type", "snapshot", "--output", "name")[1]]  # fmt: skip
    per_model = sum(dbt("build", "--select", model)[0] for model in models)
    return {"selections": selections, "models": per_model, "count": len(models)}


if __name__ == "__main__":
    print(json.dumps(dbt_alone()))

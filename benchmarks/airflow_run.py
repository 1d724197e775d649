"""One daily Airflow run of ``sales_mart`` (Cosmos) against a plain ``dbt build`` (B6).

One throwaway warehouse, filled once: the local report API's synthetic source
(``orders_per_day`` lines a day), its days up to a Saturday loaded and built by the
``ingestion`` CLI. Then, for each Cosmos set-up of the DAG (``SALES_MART_DBT_MODE``,
see ``dags/sales_mart.py``):

- **Airflow**: ``airflow dags test sales_mart <Monday 03:00>`` in a fresh
  ``AIRFLOW_HOME`` (SQLite metadata, ``db migrate`` untimed): the Monday run loads
  Sunday's increment and rebuilds Sunday's ``f_sales`` and the week's retention. Its
  wall clock is reported, and from the metadata database the sum of the durations of
  the two dbt task groups' tasks (``dags test`` runs tasks one at a time, so the sum is
  the time the groups took). Twice, each in its own ``AIRFLOW_HOME`` but with one Cosmos
  cache folder (``AIRFLOW__COSMOS__CACHE_DIR``): **cold**, an empty cache, as a worker's
  first run after a deploy (the first task of each group re-parses the whole project:
  the project's ``partial_parse.msgpack`` was written with another profile than the one
  Cosmos renders from the Airflow connection), then **warm**, as every later run on that
  worker (each task starts from the partial parse the group's previous task cached).
- **plain dbt**: ``ingestion.dbt.build_periods([Sunday], [Monday])``: the same
  selections (sales + retention, ``--indirect-selection buildable``) and the same vars,
  in one ``dbt build`` invocation, timed on the same warehouse right after.

The headline ratio is the dbt groups' time over the plain build's. Both leave the marts
identical (every step is idempotent): the benchmark checks it and fails otherwise.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from benchmarks import DatabaseFactory, Result, ratio

NAME = "airflow_run"
REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DAGS_FOLDER = REPO_ROOT / "dags"
SUNDAY = date(2024, 10, 6)  # D of the measured Monday run
MONDAY = SUNDAY - timedelta(days=6)  # its ISO week
LOGICAL_DATE = f"{(SUNDAY + timedelta(days=1)).isoformat()}T03:00:00+00:00"
PRELOAD_START = MONDAY  # the week's other days, loaded by the CLI before the run
# before B6 (dbtRunner, as Cosmos discovered it at run time), the same with `dbt`
# subprocesses, and the DAG's default since
MODES = ("after-each", "after-each-subprocess", "build")
DBT_GROUPS = ("build_sales_mart.", "build_retention_mart.")
MARTS = ("d_calendar", "d_city", "d_customer", "d_item", "f_sales", "f_customer_retention")
TIMEOUT_S = 1800


class BenchmarkRunError(RuntimeError):
    """A step of the benchmark failed: nothing would be worth timing."""


@dataclass(frozen=True)
class AirflowRun:
    """What one ``airflow dags test`` run took."""

    mode: str
    cache: str  # "cold" or "warm": the Cosmos cache folder empty, or filled by a run
    wall_s: float
    dbt_groups_s: float  # sum of the dbt groups' task durations (metadata DB)
    dbt_tasks: int
    run_s: float  # the DAG run's own start -> end (metadata DB)
    tasks: dict[str, str]


def _run(cmd: Sequence[str], env: Mapping[str, str], log: Path | None = None) -> str:
    completed = subprocess.run(
        list(cmd),
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if log is not None:
        log.write_text(output, encoding="utf-8")
    if completed.returncode != 0:
        raise BenchmarkRunError(f"{' '.join(cmd[:4])} ... exited {completed.returncode}:\n"
                                f"{output[-4000:]}")  # fmt: skip
    return output


def _base_env() -> dict[str, str]:
    return {
        **{
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "PG", "REPORT_API_", "SALES_MART_"))
        },
        # Cosmos (subprocess invocation) and the CLI look for `dbt` on PATH.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DO_NOT_TRACK": "1",
    }


def airflow_env(
    airflow_home: Path,
    connections: Mapping[str, str],
    mode: str | None,
    cosmos_cache: Path,
) -> dict[str, str]:
    """The environment of an ``airflow`` subprocess: own home, SQLite, no examples; the
    Cosmos cache in ``cosmos_cache`` (shared by a set-up's cold and warm runs)."""
    return {
        **_base_env(),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__COSMOS__CACHE_DIR": str(cosmos_cache),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
        **({"SALES_MART_DBT_MODE": mode} if mode else {}),
        **connections,
    }


def dbt_group_durations(
    metadata_db: Path, dag_id: str = "sales_mart"
) -> tuple[float, int, float, dict[str, str]]:
    """(sum of the dbt groups' task durations, their number, run duration, task states)
    of the latest run in an Airflow SQLite metadata database."""
    with sqlite3.connect(metadata_db) as meta:
        (run_id,) = meta.execute(
            "select run_id from dag_run where dag_id = ? order by id desc limit 1", (dag_id,)
        ).fetchone()
        rows = meta.execute(
            "select task_id, state, duration from task_instance where dag_id = ? and run_id = ?",
            (dag_id, run_id),
        ).fetchall()
        # First task start to last task end (the dag_run's own dates are not both set by
        # `dags test`).
        (run_s,) = meta.execute(
            "select (julianday(max(end_date)) - julianday(min(start_date))) * 86400.0 "
            "from task_instance where dag_id = ? and run_id = ?",
            (dag_id, run_id),
        ).fetchone()
    groups = [(task, d or 0.0) for task, state, d in rows if task.startswith(DBT_GROUPS)]
    states = {task: state for task, state, _ in rows}
    return sum(d for _, d in groups), len(groups), float(run_s or 0.0), states


def time_airflow_run(
    workdir: Path, connections: Mapping[str, str], mode: str, cache: str
) -> AirflowRun:
    """One ``dags test`` run in a fresh home; the Cosmos cache folder is the mode's own,
    shared by its cold and warm runs."""
    home = workdir / f"airflow_home_{mode}_{cache}"
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, connections, mode, cosmos_cache=workdir / "cosmos_cache")
    _run([str(VENV_BIN / "airflow"), "db", "migrate"], env)  # untimed
    started = time.perf_counter()
    output = _run(
        [str(VENV_BIN / "airflow"), "dags", "test", "sales_mart", LOGICAL_DATE],
        env,
        log=home / "dags_test.log",
    )
    wall = time.perf_counter() - started
    groups_s, count, run_s, states = dbt_group_durations(home / "airflow.db")
    failed = {t: s for t, s in states.items() if s not in ("success", "skipped")}
    if failed or states.get("build_retention_mart", "") == "skipped":
        raise BenchmarkRunError(f"{mode}: tasks did not succeed: {failed}\n{output[-4000:]}")
    return AirflowRun(mode, cache, wall, groups_s, count, run_s, states)


def snapshot_marts(settings: Mapping[str, str]) -> dict[str, list[tuple[str, ...]]]:
    from ingestion.warehouse import connection

    snapshot = {}
    with connection(settings) as conn, conn.cursor() as cur:
        for table in MARTS:
            cur.execute(f"select * from mart.{table}")
            snapshot[table] = sorted(tuple(map(str, row)) for row in cur.fetchall())
    return snapshot


def time_plain_build(settings: Mapping[str, str], workdir: Path, repetitions: int) -> float:
    """Median wall clock of the same selections and vars in one ``dbt build``."""
    from benchmarks import median_seconds
    from ingestion import dbt

    env = {
        **settings,
        "DBT_TARGET_PATH": str(workdir / "dbt_target"),
        "DBT_LOG_PATH": str(workdir / "dbt_logs"),
    }
    median, _ = median_seconds(lambda: dbt.build_periods([SUNDAY], [MONDAY], env=env), repetitions)
    return median


def time_dbt_invocations(settings: Mapping[str, str], workdir: Path) -> dict[str, float]:
    """dbt alone, one process: the daily run's selections built once each, against every
    model built on its own (``benchmarks.dbt_invocations``)."""
    from benchmarks.dbt_invocations import MARKER

    env = {
        **_base_env(),
        **settings,
        "DBT_TARGET_PATH": str(workdir / "invocations_target"),
        "DBT_LOG_PATH": str(workdir / "invocations_logs"),
    }
    command = [sys.executable, "-m", "benchmarks.dbt_invocations"]
    output = _run([*command, SUNDAY.isoformat(), MONDAY.isoformat()], env)
    line = next(line for line in output.splitlines() if line.startswith(MARKER))
    return json.loads(line[len(MARKER) :])


def run(
    databases: DatabaseFactory,
    workdir: Path,
    orders_per_day: int = 300,
    repetitions: int = 2,
    modes: Sequence[str] = MODES,
) -> list[Result]:
    from ingestion.config import airflow_connection_env
    from ingestion.pipeline import local_api_settings
    from local_report_api import LocalApiConfig, LocalReportApi

    results: list[Result] = []
    runs: list[tuple[AirflowRun, float]] = []
    cli_target = {"DBT_TARGET_PATH": str(workdir / "cli_dbt_target")}
    with (
        databases() as settings,
        LocalReportApi(LocalApiConfig(orders_per_day=orders_per_day)) as api,
    ):
        cli_env = {
            **_base_env(),
            **settings,
            "REPORT_API_URL": api.url,
            "REPORT_API_KEY": api.config.api_key,
            "REPORT_API_NICKNAME": api.config.nickname,
            "REPORT_API_COHORT": api.config.cohort,
            # the CLI's dbt artifacts elsewhere: Cosmos starts from the newest of the
            # project's partial parse and its cache's, and this one would be the newest
            **cli_target,
        }
        saturday = SUNDAY - timedelta(days=1)
        _run(
            [sys.executable, "-m", "ingestion", "run", "--start", PRELOAD_START.isoformat(),
             "--end", saturday.isoformat()],
            cli_env,
        )  # fmt: skip
        connections = airflow_connection_env(
            settings, local_api_settings(api), warehouse_form="uri"
        )
        for mode in modes:
            cold = time_airflow_run(workdir / mode, connections, mode, "cold")
            after_airflow = snapshot_marts(settings)
            warm = time_airflow_run(workdir / mode, connections, mode, "warm")
            if snapshot_marts(settings) != after_airflow:
                raise BenchmarkRunError(f"{mode}: the second Airflow run changed the marts")
            # The plain build right after, on the same warehouse: it must change nothing.
            plain_s = time_plain_build(settings, workdir / mode, repetitions)
            if snapshot_marts(settings) != after_airflow:
                raise BenchmarkRunError(f"{mode}: the plain dbt build changed the marts")
            runs += [(cold, plain_s), (warm, plain_s)]
        invocations = time_dbt_invocations(settings, workdir)
        if snapshot_marts(settings) != after_airflow:
            raise BenchmarkRunError("the per-model dbt builds changed the marts")

    for airflow_run, plain_s in runs:
        mode = f"{airflow_run.mode}, {airflow_run.cache} cache"
        results += [
            Result(
                NAME,
                f"{mode}: dbt groups, sum of task durations",
                airflow_run.dbt_groups_s,
                "s",
                f"{airflow_run.dbt_tasks} dbt tasks; `airflow dags test` of {LOGICAL_DATE[:10]}",
            ),
            Result(
                NAME,
                f"{mode}: plain dbt build, same selections",
                plain_s,
                "s",
                f"median of {repetitions}",
            ),  # fmt: skip
            Result(
                NAME,
                f"{mode}: ratio dbt groups / plain dbt build",
                ratio(airflow_run.dbt_groups_s, plain_s),
                "x",
                "target <= 1.5",
            ),
            Result(
                NAME,
                f"{mode}: whole DAG run",
                airflow_run.run_s,
                "s",
                f"`dags test` wall clock {airflow_run.wall_s:.1f} s (incl. Airflow start-up)",
            ),
        ]
    models = int(invocations["models"])
    results += [
        Result(
            NAME,
            "dbt alone, one process: each selection built once",
            invocations["per_selection_s"],
            "s",
            "`dbt build --selector` of the day's and the week's selections, dbtRunner",
        ),
        Result(
            NAME,
            "dbt alone, one process: each model built on its own",
            invocations["per_model_s"],
            "s",
            f"{models} `dbt build --select <model>`, summed",
        ),
        Result(
            NAME,
            "dbt alone: ratio one build per model / per selection",
            ratio(invocations["per_model_s"], invocations["per_selection_s"]),
            "x",
            "the least a task per model costs, before Airflow and Cosmos",
        ),
        Result(
            NAME,
            "dbt alone: writing manifest.json, in the per-model builds",
            invocations["per_model_manifest_write_s"],
            "s",
            f"{int(invocations['manifest_writes'])} writes (`Manifest.write`, twice per"
            " invocation: after the parse, after the run), part of the per-model figure",
        ),
    ]
    return results

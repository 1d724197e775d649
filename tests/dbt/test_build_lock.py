"""dbt's own per-model build lock (macros/build_lock.sql), as Cosmos tasks run dbt.

These call the ``dbt`` executable directly, without ``ingestion.dbt``'s process-wide
lock, as an Airflow task does beside a ``python -m ingestion run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading

import pytest

from ingestion import dbt
from ingestion.warehouse import connect
from support.mart_tables import TABLES, query

DAY_VARS = {"day": "2024-09-20..2024-10-02"}


def _day_marts(settings: dict[str, str]) -> dict[str, list[tuple]]:
    """f_sales and the dimensions (what a day build writes), in a stable order."""
    return {
        name: query(settings, sql) for name, sql in TABLES.items() if name != "f_customer_retention"
    }


def _dbt_build(
    settings: dict[str, str], *extra_env: tuple[str, str], verb: str = "build"
) -> subprocess.CompletedProcess:
    command = [
        dbt.dbt_executable(),
        verb,
        "--selector",
        dbt.SALES_SELECTOR,
        "--vars",
        json.dumps(DAY_VARS),
        "--project-dir",
        str(dbt.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(dbt.DBT_PROJECT_DIR),
        "--no-use-colors",
    ]
    # Each invocation gets its own target and log folders, as each Cosmos task runs dbt
    # in its own copy of the project: the test is about the warehouse, not about two
    # processes writing one target/ folder.
    with tempfile.TemporaryDirectory(prefix="dbt-lock-") as scratch:
        env = {
            **os.environ,
            **settings,
            "DO_NOT_TRACK": "1",
            "DBT_TARGET_PATH": os.path.join(scratch, "target"),
            "DBT_LOG_PATH": os.path.join(scratch, "logs"),
            **dict(extra_env),
        }
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


# Three dbt builds, two at once: make e2e runs it alone, after the other end-to-end runs.
@pytest.mark.slow
@pytest.mark.serial
def test_two_dbt_runs_of_the_same_days_at_once_equal_one_build(staged_database) -> None:
    first = _dbt_build(staged_database)
    assert first.returncode == 0, first.stdout[-3000:]
    once = _day_marts(staged_database)

    results: list[subprocess.CompletedProcess] = []
    start = threading.Barrier(2)

    def build() -> None:
        start.wait(timeout=30)
        # `run`, not `build`: a data test of one build may read a view the other swaps
        # (README, Concurrency); the models' writes are what the locks serialise.
        results.append(_dbt_build(staged_database, verb="run"))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    failed = [run.stdout[-4000:] + run.stderr[-2000:] for run in results if run.returncode]
    assert len(results) == 2 and not failed, "\n\n".join(failed)
    assert _day_marts(staged_database) == once
    # every model's lock was released with its post-hook or its connection
    assert query(
        staged_database,
        "select count(*) from pg_locks where locktype = 'advisory'"
        " and database = (select oid from pg_database where datname = current_database())",
    ) == [(0,)]


def test_a_model_whose_lock_is_held_fails_naming_it(staged_database) -> None:
    holder = connect(staged_database)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_lock(7301554, 0)")  # the model build lock
        result = _dbt_build(staged_database, ("PIPELINE_LOCK_TIMEOUT_S", "1"))
    finally:
        holder.close()
    assert result.returncode != 0
    assert "another dbt build of mart.d_calendar is running; waited 1 s" in result.stdout
    # the other models were built; only d_calendar and what depends on it were not
    assert "f_sales" in result.stdout

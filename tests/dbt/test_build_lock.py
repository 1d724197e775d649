"""dbt's own per-model build lock (macros/build_lock.sql), as Cosmos tasks run dbt.

These call the ``dbt`` executable directly, without ``ingestion.dbt``'s process-wide
lock, as an Airflow task does beside a ``python -m ingestion run``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg2.extensions import cursor as Cursor

from ingestion import dbt
from ingestion.warehouse import connect
from support.mart_tables import TABLES, query
from support.staging import load_fixtures

DAY_VARS = {"day": "2024-09-20..2024-10-02"}
# The model-build lock (dbt_project/macros/build_lock.sql), taken as another build would.
LOCK = "select pg_advisory_lock(7301554, 0)"
UNLOCK = "select pg_advisory_unlock(7301554, 0)"


def _day_marts(settings: dict[str, str]) -> dict[str, list[tuple]]:
    """f_sales and the dimensions (what a day build writes), in a stable order."""
    return {
        name: query(settings, sql) for name, sql in TABLES.items() if name != "f_customer_retention"
    }


def _dbt_build(
    settings: dict[str, str],
    *extra_env: tuple[str, str],
    verb: str = "build",
    select: str | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    command = [
        dbt.dbt_executable(),
        verb,
        *(["--select", select] if select else ["--selector", dbt.SALES_SELECTOR]),
        "--vars",
        json.dumps(DAY_VARS),
        "--project-dir",
        str(dbt.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(dbt.DBT_PROJECT_DIR),
        "--no-use-colors",
        *args,
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


# Three dbt builds, two at once.
@pytest.mark.slow
def test_two_dbt_runs_of_the_same_days_at_once_equal_one_build(staged_database) -> None:
    first = _dbt_build(staged_database)
    assert first.returncode == 0, first.stdout[-3000:]
    once = _day_marts(staged_database)

    results: list[subprocess.CompletedProcess] = []
    start = threading.Barrier(2)

    def build() -> None:
        start.wait(timeout=30)
        # `build`: models and their data tests, which the lock keeps apart
        results.append(_dbt_build(staged_database))

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
            cur.execute(LOCK)
        result = _dbt_build(staged_database, ("PIPELINE_LOCK_TIMEOUT_S", "1"))
    finally:
        holder.close()
    assert result.returncode != 0
    assert "another dbt build of mart.d_calendar is running; waited 1 s" in result.stdout
    # every model that started failed the same way; what depends on them did not run
    assert re.search(r"SKIP relation mart\.f_sales\b", result.stdout), result.stdout[-3000:]


class _Build(threading.Thread):
    """``_dbt_build`` in a thread of its own; ``succeeded()`` waits for it and checks it."""

    def __init__(self, settings: dict[str, str], **build: Any) -> None:
        super().__init__(daemon=True)
        self.outcome: list[subprocess.CompletedProcess] = []
        self._settings = settings
        self._build = build

    def run(self) -> None:
        self.outcome.append(_dbt_build(self._settings, **self._build))

    def succeeded(self) -> subprocess.CompletedProcess:
        self.join(timeout=600)
        assert self.outcome and self.outcome[0].returncode == 0, self.outcome[0].stdout[-4000:]
        return self.outcome[0]


@contextmanager
def _another_build(settings: dict[str, str]) -> Iterator[Cursor]:
    """A connection playing another build: it holds the model-build lock from the start."""
    holder = connect(settings)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute(LOCK)
            yield cur
    finally:
        holder.close()


def _waiting_for_the_lock(build: _Build, settings: dict[str, str], pattern: str) -> re.Match:
    """The first lock wait of a dbt build, matched in its statement, once there is one."""
    deadline = time.monotonic() + 120
    while True:
        waiting = query(
            settings,
            "select a.query from pg_locks as l join pg_stat_activity as a using (pid)"
            " where l.locktype = 'advisory' and not l.granted"
            " and l.classid = 7301554 and l.objid = 0"
            " and l.database = (select oid from pg_database where datname = current_database())",
        )
        if waiting:
            found = re.search(pattern, waiting[0][0])
            assert found, waiting
            return found
        assert build.is_alive() and time.monotonic() < deadline, build.outcome
        time.sleep(0.1)


def _model_waiting_for_the_lock(build: _Build, settings: dict[str, str]) -> tuple[str, str]:
    """The model (schema, name) whose build waits for the lock, once one does."""
    found = _waiting_for_the_lock(build, settings, r"another dbt build of (\w+)\.(\w+) is running")
    return found[1], found[2]


def test_a_model_looks_up_its_relation_only_once_it_holds_the_lock(make_database) -> None:
    """Another build creates the model while this one waits for the lock (two first
    builds of an empty warehouse at once): this one must see it and swap it, not fail
    creating it again ("relation already exists")."""
    settings = make_database()
    build = _Build(settings, verb="run", select="d_calendar")
    with _another_build(settings) as cur:
        build.start()
        assert _model_waiting_for_the_lock(build, settings) == ("mart", "d_calendar")
        # what the other build's model leaves behind
        cur.execute("create schema if not exists mart; create table mart.d_calendar (x int)")
        cur.execute(UNLOCK)
    build.succeeded()
    assert query(settings, "select count(*) > 3000 from mart.d_calendar") == [(True,)]


def test_a_model_sees_what_other_builds_made_since_its_invocation_began(
    make_database, fixtures_dir
) -> None:
    """dbt lists a schema's relations once per invocation: a mart model created by
    another build after this invocation built its first mart model is still found (not
    created again: "relation already exists") once the model holds the lock."""
    settings = make_database()
    load_fixtures(settings, fixtures_dir)
    build = _Build(settings, verb="run", args=("--threads", "1"))
    with _another_build(settings) as cur:
        build.start()
        built_a_mart_model = False
        while True:
            schema, model = _model_waiting_for_the_lock(build, settings)
            if schema == "mart" and built_a_mart_model:
                break
            built_a_mart_model = built_a_mart_model or schema == "mart"
            # let that model build, then queue up again before the next one
            cur.execute(UNLOCK)
            cur.execute(LOCK)
        # the other build creates the model this invocation is about to build
        cur.execute(f"create table mart.{model} (x int)")
        cur.execute(UNLOCK)
    result = build.succeeded()
    assert re.search(rf"OK created sql \w+ model mart\.{model}\b", result.stdout)


def test_a_data_test_waits_while_a_model_is_being_swapped(make_database) -> None:
    """A data test reads what models build: it waits for a model build in progress
    (here: the table renamed away, as in the middle of a swap) instead of failing with
    "relation does not exist"."""
    settings = make_database()
    built = _dbt_build(settings, verb="run", select="d_calendar")
    assert built.returncode == 0, built.stdout[-3000:]
    # not f_sales' relationships to d_calendar: f_sales is not built here
    tests = _Build(
        settings, verb="test", select="d_calendar", args=("--indirect-selection", "cautious")
    )
    with _another_build(settings) as cur:  # its model, in the middle of its swap
        cur.execute("alter table mart.d_calendar rename to d_calendar__dbt_backup")
        tests.start()
        found = _waiting_for_the_lock(tests, settings, r"; test (\w+) waited")
        assert "d_calendar" in found[1]
        cur.execute("alter table mart.d_calendar__dbt_backup rename to d_calendar")
        cur.execute(UNLOCK)
    result = tests.succeeded()
    assert re.search(r"PASS=[1-9]\d* WARN=0 ERROR=0", result.stdout), result.stdout

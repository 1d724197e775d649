"""Two dbt builds of the same periods at once, with dbt's materializations as they are.

dbt does not support two invocations building one model at once (dbt-core issue 2881);
the orchestrator serialises writers, and the warehouse's unique keys are the backstop: a
race fails loudly and its retry is exact. Each test starts two real `dbt` processes
together (the executable itself, as a Cosmos task or a terminal runs it, without
ingestion.dbt's lock) and demands:

- right after the race, every mart table as it was before or as one build leaves it,
  never anything else (a duplicated row, a second current version...);
- each failed build a clear database error, never a failing data test;
- after retrying the failed builds, every table exactly as one build leaves it.

"One build" is the same sequence of builds run one at a time on a reference database,
which is also cloned before each step to give a race its starting point. Where a table
exists already, the race is forced at it: a lock on the table holds both builds' writes
until both wait there, then lets them go together (both computed their rows before either
wrote: the interleaving that duplicated rows before the unique keys).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from psycopg2 import sql

from ingestion import dbt
from ingestion.warehouse import connect
from retail_dev.embedded import drop_database
from support.mart_tables import query
from support.staging import load_fixtures

pytestmark = pytest.mark.slow  # two dbt processes at once, and a reference build sequence

Step = tuple[list[str], dict[str, str]]  # dbt's arguments, the period's environment
State = dict[str, list[tuple] | None]

SALES, RETENTION = ["build", "--selector", "sales_mart"], ["build", "--selector", "retention_mart"]
BUILDABLE = ["--indirect-selection", "buildable"]  # the tests, as the selectors pick them
# The builds of a deployment's first days and weeks, one after the other.
STEPS: dict[str, Step] = {
    "report days": (SALES, {"RETAIL_DAY": "2024-09-08..2024-09-30"}),
    "2024-10-01": (SALES, {"RETAIL_DAY": "2024-10-01"}),
    "2024-10-02": (SALES, {"RETAIL_DAY": "2024-10-02"}),
    "week 2024-09-23": (RETENTION, {"RETAIL_WEEK_START": "2024-09-23"}),
    "week 2024-09-30": (RETENTION, {"RETAIL_WEEK_START": "2024-09-30"}),
}
# What the marts hold, in a stable order; the snapshot and the built weeks without the
# times of the builds.
STATE = {
    "d_calendar": "select * from mart.d_calendar order by date_id",
    "d_city": "select * from mart.d_city order by city_id",
    "d_customer": "select * from mart.d_customer order by customer_id",
    "d_item": "select * from mart.d_item order by item_id",
    "f_sales": "select * from mart.f_sales order by uniq_id",
    "d_customer_history": "select customer_id, first_name, last_name, city_id, last_ordered_at,"
    " last_order_uniq_id, valid_to is null from mart.d_customer_history order by 1, 5, 7",
    "f_customer_retention": "select * from mart.f_customer_retention order by 2, 5",
    "f_customer_retention_weeks": "select period_start, period_id, period_end, item_count"
    " from mart.f_customer_retention_weeks order by 1",
}
# Errors of a build that lost a race (another build took the key, the name or the row
# first, or the two waited on each other): retrying it is the cure.
RETRYABLE = re.compile(
    r"duplicate key value violates unique constraint|already exists|deadlock detected"
    r"|does not exist|could not open relation|could not serialize|concurrently (updated|deleted)"
)


def _state(settings: dict[str, str]) -> State:
    """Every mart table's rows (None when the table does not exist)."""
    state: State = {}
    for table, statement in STATE.items():
        [(exists,)] = query(settings, "select to_regclass(%s) is not null", (f"mart.{table}",))
        state[table] = query(settings, statement) if exists else None
    return state


def _start(settings: dict[str, str], step: Step, scratch: str) -> subprocess.Popen:
    """`dbt` in a process of its own, with its own target and log folders (as each Cosmos
    task runs dbt in its own copy of the project)."""
    args, periods = step
    project = str(dbt.DBT_PROJECT_DIR)
    inherited = {k: v for k, v in os.environ.items() if k not in dbt.PERIOD_ENV.values()}
    return subprocess.Popen(
        [dbt.dbt_executable(), *args, "--project-dir", project, "--profiles-dir", project],
        env={
            **inherited,
            **settings,
            **periods,
            "DBT_TARGET_PATH": os.path.join(scratch, "target"),
            "DBT_LOG_PATH": os.path.join(scratch, "logs"),
            "DBT_USE_COLORS": "false",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _build(settings: dict[str, str], step: Step) -> None:
    with tempfile.TemporaryDirectory(prefix="dbt-race-") as scratch:
        process = _start(settings, step, scratch)
        output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _clone(settings: dict[str, str]) -> dict[str, str]:
    """A copy of the database (PostgreSQL's template copy)."""
    name = f"{settings['PGDATABASE']}_{uuid.uuid4().hex[:6]}"
    admin = connect({**settings, "PGDATABASE": "postgres"})
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(settings["PGDATABASE"])
                )
            )
    finally:
        admin.close()
    return {**settings, "PGDATABASE": name}


@pytest.fixture(scope="module")
def chain(make_database, fixtures_dir) -> Iterator[tuple[dict[str, dict[str, str]], dict]]:
    """STEPS built one at a time: a clone of the database before each step, and the marts
    after it."""
    reference = make_database()
    load_fixtures(reference, fixtures_dir)
    before: dict[str, dict[str, str]] = {}
    after: dict[str, State] = {}
    for name, step in STEPS.items():
        before[name] = _clone(reference)
        _build(reference, step)
        after[name] = _state(reference)
    yield before, after
    for clone in before.values():
        drop_database(clone["PGDATABASE"], {**clone, "PGDATABASE": "postgres"})


def _wait_for_writers(settings: dict[str, str], table: str, builds: list) -> None:
    """Until both builds wait for `table` (or one ended: it lost elsewhere)."""
    deadline = time.monotonic() + 300
    while all(build.poll() is None for build in builds):
        [(waiting,)] = query(
            settings,
            "select count(*) from pg_locks where relation = %s::regclass and not granted",
            (table,),
        )
        if waiting == len(builds) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _race(settings: dict[str, str], step: Step, exact: State, at: str | None = None) -> None:
    """Two builds of `step` at once (forced `at` a table), checked as the module says."""
    before = _state(settings)
    holder = connect(settings)
    with tempfile.TemporaryDirectory(prefix="dbt-race-") as scratch:
        try:
            if at:
                with holder.cursor() as cur:
                    cur.execute(f"lock table {at} in exclusive mode")
            builds = [_start(settings, step, os.path.join(scratch, str(n))) for n in range(2)]
            if at:
                _wait_for_writers(settings, at, builds)
        finally:
            holder.close()
        outputs = [build.communicate(timeout=600)[0] for build in builds]
    failed = [output for build, output in zip(builds, outputs, strict=True) if build.returncode]
    for output in failed:
        assert "[FAIL" not in output, output[-4000:]  # a data test saw a wrong row
        assert RETRYABLE.search(output), output[-4000:]
    for table, rows in _state(settings).items():
        assert rows in (before[table], exact[table]), f"{table} is neither before nor exact"
    for _ in failed:
        _build(settings, step)
    assert _state(settings) == exact


def test_two_first_builds_of_an_empty_warehouse(chain) -> None:
    before, after = chain
    _race(before["report days"], STEPS["report days"], after["report days"])


def test_two_snapshots_at_once(chain) -> None:
    """116 customers changed name or city on 2024-10-01 and 21 are new: one new current
    version each, whichever snapshot wins (the partial unique index on the current
    versions makes the other fail)."""
    before, after = chain
    settings = before["2024-10-01"]
    _build(settings, (["run", "--selector", "sales_mart"], STEPS["2024-10-01"][1]))
    _race(settings, (["snapshot"], {}), after["2024-10-01"], at="mart.d_customer_history")


def test_two_first_builds_of_a_day(chain) -> None:
    """A Cosmos task's build of f_sales for a new day, and its retry, at once (the
    dimensions and the snapshot built before, as the tasks upstream of it did)."""
    before, after = chain
    settings = before["2024-10-02"]
    day = STEPS["2024-10-02"][1]
    upstream = "path:models/staging d_calendar +d_city +d_customer +d_item path:snapshots"
    _build(settings, (["build", "--select", upstream, *BUILDABLE], day))
    f_sales = (["build", "--select", "fqn:retail.marts.f_sales", *BUILDABLE], day)
    _race(settings, f_sales, after["2024-10-02"], at="mart.f_sales")


def test_two_first_builds_of_a_week(chain) -> None:
    before, after = chain
    week = "week 2024-09-30"
    _race(before[week], STEPS[week], after[week], at="mart.f_customer_retention")

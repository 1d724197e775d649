"""Run the dbt project from Python: the builds the CLI runs (the DAG runs them through Cosmos).

Each call runs the virtualenv's ``dbt`` in a subprocess: dbt keeps global state (flags,
connections, captured env vars) between in-process invocations, unsafe when one process
builds against changing libpq settings. A command that writes holds the marts' build
lock (``ingestion.locks``) for the whole subprocess. A failure raises :class:`DbtError`
naming the failed models and tests, with a failed test's first offending rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ingestion import locks
from ingestion.project import (
    DBT_PROJECT_DIR,
    PERIOD_ENV,
    RETENTION_SELECTOR,
    SALES_AND_RETENTION_SELECTOR,
    SALES_SELECTOR,
)

log = logging.getLogger(__name__)

WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "run-operation"})
SAMPLE_ROWS = 5


@dataclass
class FailedNode:
    """A model, test or hook that did not succeed in a dbt invocation."""

    unique_id: str
    status: str
    message: str
    sample_rows: list[tuple[Any, ...]] = field(default_factory=list)

    def describe(self) -> str:
        rows = "".join(f"\n      row: {row}" for row in self.sample_rows)
        return f"{self.unique_id} [{self.status}]: {self.message}".rstrip(": ") + rows


class DbtError(RuntimeError):
    """A dbt invocation failed; ``failures`` lists the nodes that did."""

    def __init__(self, args: Sequence[str], returncode: int, failures: list[FailedNode],
                 output: str) -> None:  # fmt: skip
        self.returncode, self.failures, self.output = returncode, failures, output
        detail = "\n".join("  - " + node.describe() for node in failures) or (
            "  (no run results; last output lines)\n"
            + "\n".join("    " + line for line in output.strip().splitlines()[-20:])
        )
        super().__init__(f"{' '.join(args)} failed (exit {returncode}):\n{detail}")

    @property
    def failed_nodes(self) -> list[str]:
        return [node.unique_id for node in self.failures]


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (the virtualenv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    found = str(candidate) if candidate.exists() else shutil.which("dbt")
    if not found:
        raise FileNotFoundError("dbt executable not found next to Python or on PATH")
    return found


def run_dbt(
    args: list[str],
    *,
    vars: Mapping[str, Any] | None = None,  # noqa: A002 - dbt's own name for them
    periods: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``dbt <args>`` on the project; raise :class:`DbtError` when it fails.

    ``vars`` become ``--vars``; ``periods`` (``day``, ``week_start``) the environment
    variables of :data:`PERIOD_ENV`, never inherited from this process; ``env`` is added
    to this process's environment (e.g. libpq settings of another database).
    """
    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    command = [dbt_executable(), *args, "--no-use-colors", *project]
    if vars:
        plain = {k: v.isoformat() if isinstance(v, date) else v for k, v in vars.items()}
        command += ["--vars", json.dumps(plain)]
    period_env = {PERIOD_ENV[name]: value for name, value in (periods or {}).items()}
    inherited = {k: v for k, v in os.environ.items() if k not in PERIOD_ENV.values()}
    full_env = {**inherited, "DO_NOT_TRACK": "1", **(env or {}), **period_env}
    shown = [*(f"{name}={value}" for name, value in period_env.items()), "dbt", *command[1:]]
    log.info("running %s", " ".join(shown))
    results = target_dir(full_env) / "run_results.json"
    started = results.stat().st_mtime if results.exists() else 0.0
    with _marts_lock(full_env) if args[0] in WRITING_COMMANDS else nullcontext():
        done = subprocess.run(command, cwd=DBT_PROJECT_DIR, env=full_env, capture_output=True,
                              text=True, check=False)  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode == 0:
        log.debug("dbt output:\n%s", output)
        return
    fresh = results.exists() and results.stat().st_mtime > started  # not a stale file
    failures = _failures(results, full_env) if fresh else []
    raise DbtError(shown, done.returncode, failures, output)


def _marts_lock(env: Mapping[str, str]) -> Any:
    """The marts' build lock on the warehouse dbt is about to use (``ingestion.locks``)."""
    from ingestion.warehouse import LIBPQ_EXTRA_VARIABLES, libpq_settings

    extras = {name: env[name] for name in LIBPQ_EXTRA_VARIABLES.values() if env.get(name)}
    settings = {**libpq_settings(env), **extras}  # sslmode... as dbt's own connection
    what = f"dbt build of the marts in database {settings.get('PGDATABASE', '?')}"
    return locks.session_lock(settings, locks.MARTS_BUILD_LOCK_KEY, what)


def build_periods(
    days: Iterable[date], week_starts: Iterable[date] = (), *, env: Mapping[str, str] | None = None
) -> None:
    """Refill the given days and rebuild the given ISO weeks (Mondays) in one dbt build;
    dbt orders f_sales before f_customer_retention, so the weeks see the refilled days."""
    mondays = sorted(set(week_starts))
    for monday in mondays:
        if monday.isoweekday() != 1:
            raise ValueError(f"week_start {monday} is a {monday:%A}, not a Monday")
    days = sorted(set(days))
    periods = {"day": period_var(days)} if days else {}
    if mondays:
        periods["week_start"] = period_var(mondays, step_days=7)
    selector = SALES_AND_RETENTION_SELECTOR if days and mondays else SALES_SELECTOR
    if not days:
        selector = RETENTION_SELECTOR if mondays else period_var([])  # raises: nothing
    run_dbt(["build", "--selector", selector], periods=periods, env=env)


def build_all(*, env: Mapping[str, str] | None = None) -> None:
    """``dbt build`` with no variables: every mart brought up to date with all of staging."""
    run_dbt(["build"], env=env)


def period_var(days: Iterable[date], *, step_days: int = 1) -> str:
    """The ``day`` / ``week_start`` value for a set of days: runs of consecutive days
    (``step_days`` apart) as ranges, ``2024-09-30..2024-10-02,2024-10-09``. An empty set
    is an error, never "every day"."""
    ordered = sorted(set(days))
    if not ordered:
        raise ValueError("no day to build: an empty selection would mean every day")
    runs: list[list[date]] = []
    for day in ordered:
        if runs and day - runs[-1][-1] == timedelta(days=step_days):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        run[0].isoformat() + (f"..{run[-1].isoformat()}" if len(run) > 1 else "") for run in runs
    )


def target_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where dbt writes its artifacts: ``DBT_TARGET_PATH`` (one per concurrent caller),
    else the project's ``target``."""
    return (DBT_PROJECT_DIR / (env.get("DBT_TARGET_PATH") or "target")).resolve()


def _failures(results: Path, env: Mapping[str, str]) -> list[FailedNode]:
    """The failed nodes of ``run_results.json``, a failed test with its first rows."""
    try:
        nodes = json.loads(results.read_text(encoding="utf-8")).get("results", [])
    except (OSError, ValueError):
        return []
    failures = []
    for result in nodes:
        if (status := str(result.get("status", ""))) not in ("error", "fail", "runtime error"):
            continue
        node = FailedNode(result.get("unique_id", "?"), status,
                          (result.get("message") or "").strip())  # fmt: skip
        if node.unique_id.startswith("test.") and result.get("compiled_code"):
            node.sample_rows = _sample_rows(result["compiled_code"], env)
        failures.append(node)
    return failures


def _sample_rows(compiled_sql: str, env: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """The first rows a failed test returned, so the error names the offending rows."""
    from ingestion.warehouse import connection, libpq_settings

    try:
        with connection(libpq_settings(env)) as conn, conn.cursor() as cur:
            cur.execute(f"select * from ({compiled_sql}) as failing limit {SAMPLE_ROWS}")
            return [tuple(row) for row in cur.fetchall()]
    except Exception as exc:  # noqa: BLE001 - best effort, the failure itself is reported
        log.warning("could not fetch the failing rows of a test: %s", exc)
        return []

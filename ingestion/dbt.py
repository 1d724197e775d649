"""Run the dbt project (``dbt_project/``) from Python: the API the CLI and the DAGs call.

Each call runs the virtualenv's ``dbt`` executable in a subprocess rather than dbt's
in-process ``dbtRunner``: dbt keeps global state (flags, adapter connections, the
invocation context and the env vars it captured) between invocations in one process,
which is unsafe when one process builds several days against changing libpq settings
(the tests do, and so does ``python -m ingestion run`` over a range). A subprocess costs
about a second of start-up and gives every build a clean environment.

Failures raise :class:`DbtError` naming the failed models and tests (from
``run_results.json``) and, for failed tests, the first offending rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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

# dbt commands that write the warehouse: run under the marts' build lock (_marts_lock).
WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "run-operation"})

FAILED_STATUSES = {"error", "fail", "runtime error"}
SAMPLE_ROWS = 5


@dataclass
class FailedNode:
    """A model, test or hook that did not succeed in a dbt invocation."""

    unique_id: str
    status: str
    message: str
    sample_rows: list[tuple[Any, ...]] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.unique_id} [{self.status}]: {self.message}".rstrip(": ")
        for row in self.sample_rows:
            text += f"\n      row: {row}"
        return text


class DbtError(RuntimeError):
    """A dbt invocation failed; ``failures`` lists the nodes that did.

    ``args`` is the command as a user would type it (``RETAIL_DAY=... dbt build ...``).
    """

    def __init__(
        self, args: Sequence[str], returncode: int, failures: list[FailedNode], output: str
    ):
        self.args_ = list(args)
        self.returncode = returncode
        self.failures = failures
        self.output = output
        if failures:
            detail = "\n".join("  - " + node.describe() for node in failures)
        else:
            detail = "  (no run results; last output lines)\n" + "\n".join(
                "    " + line for line in output.strip().splitlines()[-20:]
            )
        super().__init__(f"{' '.join(args)} failed (exit {returncode}):\n{detail}")

    @property
    def failed_nodes(self) -> list[str]:
        return [node.unique_id for node in self.failures]


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (the virtualenv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dbt")
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

    ``vars`` become ``--vars`` (dates are written as ISO strings); ``periods`` (``day``,
    ``week_start``) become the environment variables of :data:`PERIOD_ENV`, which are
    never inherited from this process; ``env`` is added to this process's environment
    (e.g. libpq settings for another database).
    """
    command = [dbt_executable(), *args]
    command += [
        "--no-use-colors",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    if vars:
        command += ["--vars", json.dumps({k: _plain(v) for k, v in vars.items()})]
    period_env = {PERIOD_ENV[name]: value for name, value in (periods or {}).items()}
    inherited = {k: v for k, v in os.environ.items() if k not in PERIOD_ENV.values()}
    full_env = {**inherited, "DO_NOT_TRACK": "1", **(env or {}), **period_env}
    shown = [*(f"{name}={value}" for name, value in period_env.items()), "dbt", *command[1:]]
    log.info("running %s", " ".join(shown))
    started = _run_results_mtime(full_env)
    with _marts_lock(args, full_env):
        completed = subprocess.run(
            command,
            cwd=DBT_PROJECT_DIR,
            env=full_env,
            capture_output=True,
            text=True,
            check=False,
        )
    output = completed.stdout + completed.stderr
    if completed.returncode == 0:
        log.debug("dbt output:\n%s", output)
        return
    failures = _failures_from_run_results(started, full_env)
    raise DbtError(shown, completed.returncode, failures, output)


@contextmanager
def _marts_lock(args: Sequence[str], env: Mapping[str, str]) -> Iterator[None]:
    """One dbt invocation that writes the warehouse at a time, across processes.

    A session advisory lock on the warehouse dbt is about to use, held on a connection of
    this process for the whole subprocess: a second ``run`` (or any caller of this
    module) waits for the first build to end, then fails with ``LockTimeout`` ("another
    dbt build of the marts ... is running; waited N s") after ``PIPELINE_LOCK_TIMEOUT_S``.
    Commands that only read (``test``, ``parse``, ``compile``, ``ls``, ``docs``) take none.
    """
    if not args or args[0] not in WRITING_COMMANDS:
        yield
        return
    from ingestion.warehouse import LIBPQ_EXTRA_VARIABLES, libpq_settings

    # the server and user dbt will use, with dbt's extra libpq settings (sslmode...)
    settings = {
        **libpq_settings(env),
        **{name: env[name] for name in LIBPQ_EXTRA_VARIABLES.values() if env.get(name)},
    }
    what = f"dbt build of the marts in database {settings.get('PGDATABASE', '?')}"
    with locks.session_lock(settings, locks.MARTS_BUILD_LOCK_KEY, what):
        yield


def build_sales_day(day: date, *, env: Mapping[str, str] | None = None) -> None:
    """Refill ``mart.f_sales`` and the dimensions for ``day``."""
    build_sales_days([day], env=env)


def build_sales_days(days: Iterable[date], *, env: Mapping[str, str] | None = None) -> None:
    """Refill ``mart.f_sales`` and the dimensions for every day given, in one dbt build.

    The days need not be contiguous (a correction touches scattered days); each is
    replaced on its own, but dbt's start-up and parsing are paid once.
    """
    run_dbt(_build_args(SALES_SELECTOR), periods={"day": period_var(days)}, env=env)


def build_retention_week(week_start: date, *, env: Mapping[str, str] | None = None) -> None:
    """Rebuild ``mart.f_customer_retention`` for the ISO week starting on ``week_start``."""
    build_retention_weeks([week_start], env=env)


def build_retention_weeks(
    week_starts: Iterable[date], *, env: Mapping[str, str] | None = None
) -> None:
    """Rebuild ``mart.f_customer_retention`` for the ISO weeks starting on the given Mondays."""
    run_dbt(
        _build_args(RETENTION_SELECTOR),
        periods={"week_start": period_var(_mondays(week_starts), step_days=7)},
        env=env,
    )


def build_periods(
    days: Iterable[date],
    week_starts: Iterable[date] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> None:
    """Refill the given days and rebuild the given ISO weeks (Mondays) in one dbt build.

    dbt orders f_sales before f_customer_retention, so the weeks see the refilled days.
    """
    mondays = _mondays(week_starts)
    selector = SALES_AND_RETENTION_SELECTOR if mondays else SALES_SELECTOR
    periods = {"day": period_var(days)}
    if mondays:
        periods["week_start"] = period_var(mondays, step_days=7)
    run_dbt(_build_args(selector), periods=periods, env=env)


def build_all(*, env: Mapping[str, str] | None = None) -> None:
    """``dbt build`` with no variables: every mart brought up to date with all of staging."""
    run_dbt(["build"], env=env)


def _build_args(selector: str) -> list[str]:
    return ["build", "--selector", selector]


def _mondays(week_starts: Iterable[date]) -> list[date]:
    mondays = sorted(set(week_starts))
    for monday in mondays:
        if monday.isoweekday() != 1:
            raise ValueError(f"week_start {monday} is a {monday:%A}, not a Monday")
    return mondays


def period_var(days: Iterable[date], *, step_days: int = 1) -> str:
    """The dbt ``day`` / ``week_start`` variable for a set of days (or of Mondays).

    Runs of consecutive days (``step_days`` apart) become ranges:
    ``2024-09-30..2024-10-02,2024-10-09``. An empty set is an error, never "every day".
    """
    ordered = sorted(set(days))
    if not ordered:
        raise ValueError("no day to build: an empty selection would mean every day")
    step = timedelta(days=step_days)
    runs: list[list[date]] = []
    for day in ordered:
        if runs and day - runs[-1][-1] == step:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        run[0].isoformat() if len(run) == 1 else f"{run[0].isoformat()}..{run[-1].isoformat()}"
        for run in runs
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def target_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The folder dbt writes its artifacts to: ``DBT_TARGET_PATH`` (e.g. one per
    concurrent caller), else the project's ``target``."""
    return (DBT_PROJECT_DIR / (env.get("DBT_TARGET_PATH") or "target")).resolve()


def _run_results_path(env: Mapping[str, str]) -> Path:
    return target_dir(env) / "run_results.json"


def _run_results_mtime(env: Mapping[str, str]) -> float:
    path = _run_results_path(env)
    return path.stat().st_mtime if path.exists() else 0.0


def _failures_from_run_results(started: float, env: Mapping[str, str]) -> list[FailedNode]:
    """Failed nodes of the invocation that just ended (ignores a stale run_results.json)."""
    path = _run_results_path(env)
    if not path.exists() or path.stat().st_mtime <= started:
        return []
    try:
        results = json.loads(path.read_text(encoding="utf-8")).get("results", [])
    except (OSError, ValueError):
        return []
    failures = []
    for result in results:
        status = str(result.get("status", ""))
        if status not in FAILED_STATUSES:
            continue
        node = FailedNode(
            unique_id=result.get("unique_id", "?"),
            status=status,
            message=(result.get("message") or "").strip(),
        )
        if node.unique_id.startswith("test.") and result.get("compiled_code"):
            node.sample_rows = _sample_rows(result["compiled_code"], env)
        failures.append(node)
    return failures


def _sample_rows(compiled_sql: str, env: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """The first rows a failed test returned, so the error names the offending rows."""
    from ingestion.warehouse import connection, libpq_settings  # psycopg2 only when needed

    try:
        with connection(libpq_settings(env)) as conn, conn.cursor() as cur:
            cur.execute(f"select * from ({compiled_sql}) as failing limit {SAMPLE_ROWS}")
            return [tuple(row) for row in cur.fetchall()]
    except Exception as exc:  # noqa: BLE001 - best effort, the failure itself is reported
        log.warning("could not fetch the failing rows of a test: %s", exc)
        return []

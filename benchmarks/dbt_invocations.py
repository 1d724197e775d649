"""What one dbt invocation per model costs, dbt alone: the floor under B6's task groups.

Run by ``benchmarks.airflow_run`` on its warehouse, in a process of its own
(``python -m benchmarks.dbt_invocations DAY WEEK_START``, libpq settings from ``PG*``),
as Cosmos runs dbt in a task: in-process through ``dbtRunner``, the period in ``RETAIL_DAY`` /
``RETAIL_WEEK_START``. After one untimed build (dbt's import, the project's parse), it
times the daily run's two selections built once each, then every model of them built on
its own (``--select <model>``, its tests included), and prints both as JSON. The ratio is
what a task per model costs before any Airflow or Cosmos work. It also sums the time dbt
spends writing ``manifest.json`` (``Manifest.write``: after the parse, then after the
run, in every invocation), the largest fixed cost of an invocation of this project.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ingestion import dbt

MARKER = "dbt invocations:"  # the line of the figures, among dbt's own output


def _dbt(args: list[str]) -> Any:
    from dbt.cli.main import dbtRunner

    project = str(dbt.DBT_PROJECT_DIR)
    return dbtRunner().invoke(
        [*args, "--project-dir", project, "--profiles-dir", project, "--quiet"]
    )


def _invoke(args: list[str], period: dict[str, str]) -> float:
    os.environ.update(period)
    try:
        started = time.perf_counter()
        result = _dbt(args)
        seconds = time.perf_counter() - started
    finally:
        for name in period:
            os.environ.pop(name, None)
    if not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception}")
    return seconds


@contextmanager
def _manifest_writes() -> Iterator[list[float]]:
    """Seconds spent in dbt's ``Manifest.write`` while the block runs, one per call."""
    from dbt.contracts.graph.manifest import Manifest

    write = Manifest.write
    seconds: list[float] = []

    def timed(self: Manifest, path: str) -> None:
        started = time.perf_counter()
        try:
            write(self, path)
        finally:
            seconds.append(time.perf_counter() - started)

    Manifest.write = timed  # type: ignore[method-assign]
    try:
        yield seconds
    finally:
        Manifest.write = write  # type: ignore[method-assign]


def _models(selector: str) -> list[str]:
    result = _dbt(["ls", "--selector", selector, "--resource-type", "model",
                   "--resource-type", "snapshot", "--output", "name"])  # fmt: skip
    return sorted(str(name).rsplit(".", 1)[-1] for name in result.result)


def main(day: str, week_start: str) -> None:
    """Time the builds of ``day`` (its f_sales) and of the ISO week starting ``week_start``."""
    selections = (
        (dbt.SALES_SELECTOR, {dbt.PERIOD_ENV["day"]: day}),
        (dbt.RETENTION_SELECTOR, {dbt.PERIOD_ENV["week_start"]: week_start}),
    )
    for selector, period in selections:  # dbt's import and the parse, untimed
        _invoke(["build", "--selector", selector], period)
    per_selection = sum(
        _invoke(["build", "--selector", selector], period) for selector, period in selections
    )
    builds = [(model, period) for selector, period in selections for model in _models(selector)]
    with _manifest_writes() as writes:
        per_model = sum(_invoke(["build", "--select", model], period) for model, period in builds)
    figures = {
        "per_selection_s": per_selection,
        "per_model_s": per_model,
        "models": len(builds),
        "per_model_manifest_write_s": sum(writes),
        "manifest_writes": len(writes),
    }
    print(MARKER, json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])

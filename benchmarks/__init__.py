"""Reproducible benchmarks: ``make bench`` (``python -m benchmarks``).

Every claim is a **ratio against a baseline measured in the same run**, on the same
machine, so the figures stay comparable across machines and busy hours; absolute
timings are printed for context only and nothing in the test suite asserts on them.

- :mod:`benchmarks.loader`: ``ingestion.loader.load_increment`` against raw ``COPY FROM
  STDIN`` of the same file into a bare table (the physical limit), on one synthetic day
  of order lines; and the peak resident memory of one load in a fresh interpreter.
- :mod:`benchmarks.marts`: the per-day ``f_sales`` refill and the per-week retention
  build on a short (30 days) and a long (730 days) history; the ratio long/short shows
  whether the incremental models really touch only their period.
- :mod:`benchmarks.scale`: ten million order lines, loaded and built, then the daily
  build at that scale against a 30-day history.
- :mod:`benchmarks.airflow_run`: one daily ``airflow dags test`` run of ``sales_mart``
  (its Cosmos dbt groups) against a plain ``dbt build`` of the same selections.
- :mod:`benchmarks.dag_parse`: parsing ``dags/sales_mart.py`` into a DagBag against a
  trivial one-task DAG parsed the same way.

Each benchmark works in its own throwaway database, dropped afterwards.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from ingestion.warehouse import create_database_if_missing, drop_database

#: A factory of throwaway databases: each call gives a context manager yielding the
#: libpq settings of a new, empty database (dropped on exit where the factory owns it).
DatabaseFactory = Callable[[], AbstractContextManager[dict[str, str]]]


@dataclass(frozen=True)
class Result:
    """One line of the result table."""

    benchmark: str
    measure: str
    value: float
    unit: str
    detail: str = ""

    def formatted_value(self) -> str:
        if self.unit == "x":
            return f"{self.value:.2f}"
        if self.unit == "%":
            return f"{self.value:.1f}"
        if self.unit == "rows/s":
            return f"{self.value:,.0f}"
        if self.unit == "MB":
            return f"{self.value:.0f}"
        if self.unit == "s":
            return f"{self.value:.3f}"
        return f"{self.value:g}"


def median_seconds(
    action: Callable[[], Any], repetitions: int, before: Callable[[], Any] | None = None
) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``action`` over ``repetitions`` runs, and all samples.

    ``before`` runs untimed ahead of every repetition (resetting state).
    """
    samples = []
    for _ in range(max(1, repetitions)):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def server_database_factory(server: Mapping[str, str], prefix: str = "bench") -> DatabaseFactory:
    """Throwaway databases on the server ``server`` points at (its maintenance database)."""

    @contextmanager
    def _scratch() -> Iterator[dict[str, str]]:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        create_database_if_missing(name, server)
        try:
            yield {**server, "PGDATABASE": name}
        finally:
            drop_database(name, server)

    return _scratch


def format_table(results: list[Result]) -> str:
    """The results as a Markdown table (also readable as plain text)."""
    header = "| benchmark | measure | value | unit | detail |"
    lines = [header, "|---|---|---:|---|---|"]
    for r in results:
        lines.append(
            f"| {r.benchmark} | {r.measure} | {r.formatted_value()} | {r.unit} | {r.detail} |"
        )
    return "\n".join(lines)

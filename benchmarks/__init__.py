"""Reproducible benchmarks: ``make bench`` (``python -m benchmarks``) -> docs/benchmarks.md.

Every claim is a ratio against a baseline measured in the same run, on the same machine,
so figures stay comparable across machines and busy hours; absolute times are context.
Each benchmark is a module with ``run(databases, workdir, sizes) -> list[Result]`` whose
docstring is its method on the page; it works in throwaway databases, dropped after.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

#: Each call gives a context manager yielding the libpq settings of a new, empty database.
DatabaseFactory = Callable[[], AbstractContextManager[dict[str, str]]]
FORMATS = {"x": "{:.2f}", "%": "{:.1f}", "rows/s": "{:,.0f}", "MB": "{:.0f}", "s": "{:.3f}"}


@dataclass(frozen=True)
class Result:
    """One measured figure; ``limit`` is the most it may be (the issue's target)."""

    benchmark: str
    measure: str
    value: float
    unit: str
    detail: str = ""
    limit: float | None = None

    def formatted(self, value: float | None = None) -> str:
        return FORMATS.get(self.unit, "{:g}").format(self.value if value is None else value)

    def verdict(self) -> str:
        if self.limit is None:
            return ""
        share = self.value / self.limit
        if share <= 1:
            return f"within: {1 - share:.0%} below the limit"
        return f"**over** the limit by {share - 1:.0%}"


def median_seconds(
    action: Callable[[], Any], repetitions: int, before: Callable[[], Any] | None = None
) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``action`` over ``repetitions`` runs, and all samples;
    ``before`` runs untimed ahead of each (resetting state)."""
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


def server_database_factory(server: Mapping[str, str]) -> DatabaseFactory:
    """Throwaway databases on the server ``server`` points at (its maintenance database)."""
    from retail_dev.embedded import create_database_if_missing, drop_database

    @contextmanager
    def scratch() -> Iterator[dict[str, str]]:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        create_database_if_missing(name, server)
        try:
            yield {**server, "PGDATABASE": name}
        finally:
            drop_database(name, server)

    return scratch


def format_table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    lines = ["| measure | value | unit | limit | detail |", "|---|---:|---|---|---|"]
    for r in results:
        limit = "" if r.limit is None else f"{r.formatted(r.limit)} ({r.verdict()})"
        lines.append(f"| {r.measure} | {r.formatted()} | {r.unit} | {limit} | {r.detail} |")
    return "\n".join(lines)

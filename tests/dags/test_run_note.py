"""The run-note plugin (sales_mart_plugin): the note a sales_mart run gets.

The note written by the listener is checked on real runs: `airflow dags test` in
tests/e2e/test_airflow_dag.py, the scheduler in `make celery-check`.
"""

from __future__ import annotations

import importlib.metadata
from datetime import UTC, datetime

import pytest

from sales_mart_plugin import RunNoteListener, SalesMartRunNotePlugin, run_note


@pytest.mark.parametrize(
    ("conf", "logical_date", "run_after", "note"),
    [
        # scheduled: the day before the trigger time; a Sunday builds its week
        (None, datetime(2024, 10, 7, 3, tzinfo=UTC), None, "day 2024-10-06 · week 2024-W40"),
        ({}, datetime(2024, 10, 8, 3, tzinfo=UTC), None, "day 2024-10-07"),
        # a manual run without a logical date: from run_after
        ({}, None, datetime(2025, 1, 1, 9, tzinfo=UTC), "day 2024-12-31"),
        # the `day` param wins; `rebuild_week` adds the day's week
        ({"day": "2024-10-02"}, datetime(2026, 11, 23, tzinfo=UTC), None, "day 2024-10-02"),
        (
            {"day": "2024-10-02", "rebuild_week": True},
            None,
            datetime(2026, 11, 23, tzinfo=UTC),
            "day 2024-10-02 · week 2024-W40",
        ),
    ],
)
def test_the_note_names_the_day_the_first_task_resolves(
    conf, logical_date, run_after, note
) -> None:
    assert run_note(conf, logical_date, run_after) == note


def test_a_run_that_cannot_have_a_day_says_why() -> None:
    note = run_note({}, datetime(2019, 5, 1, tzinfo=UTC), None)
    assert note.startswith("no day: day 2019-04-30") and "outside the dbt calendar" in note
    assert len(note) <= 130
    assert run_note({"day": "2024-02-30"}, None, datetime(2026, 1, 1, tzinfo=UTC)).startswith(
        "no day: "
    )


def test_airflow_finds_the_plugin_and_its_listener() -> None:
    from airflow import plugins_manager

    (entry,) = [
        entry
        for entry in importlib.metadata.entry_points(group="airflow.plugins")
        if entry.name == "sales_mart_run_note"
    ]
    assert entry.load() is SalesMartRunNotePlugin
    (info,) = [
        info
        for info in plugins_manager.get_plugin_info(["listeners"])
        if info["name"] == "sales_mart_run_note"
    ]
    assert info["listeners"] == [f"{RunNoteListener.__module__}.{RunNoteListener.__qualname__}"]

"""A terminal ``python -m ingestion run`` and a DAG's dbt tasks never build the marts at
once: both hold one advisory lock around each dbt invocation (``ingestion.dbt`` for the
CLI, the Cosmos tasks' ``pre_execute`` / ``post_execute``). Real PostgreSQL; the waiting
side fails with a retryable ``LockTimeout`` (an ``OperationalError``) naming what it
waited for, or goes on once the other side is done."""

from __future__ import annotations

import threading

import pytest

from ingestion import dbt, locks
from sales_mart_support import cosmos

WHAT = "another dbt build of the marts"


def test_a_cosmos_task_waits_for_the_clis_build(warehouse, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_LOCK_TIMEOUT_S", "1")
    with (
        locks.session_lock(warehouse, locks.MARTS_BUILD_LOCK_KEY, "a CLI build"),
        pytest.raises(locks.LockTimeout, match=f"{WHAT} is running; waited 1 s"),
    ):
        cosmos.hold_build_lock({})
    cosmos.hold_build_lock({})  # free again: taken at once
    cosmos.release_build_lock({}, None)


def test_the_cli_waits_for_a_cosmos_task_and_goes_on_after_it(warehouse, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_LOCK_TIMEOUT_S", "1")
    cosmos.hold_build_lock({})
    try:
        with pytest.raises(locks.LockTimeout, match=f"{WHAT} in database"):
            dbt.run_dbt(["run-operation", "no_such_macro"])  # refused before dbt starts
        monkeypatch.setenv("PIPELINE_LOCK_TIMEOUT_S", "30")
        waiting = threading.Thread(target=_build_lock_taken, args=(warehouse,))
        waiting.start()
        waiting.join(timeout=2)
        assert waiting.is_alive()  # still waiting while the task holds the lock
    finally:
        cosmos.release_build_lock({}, None)
    waiting.join(timeout=30)
    assert not waiting.is_alive() and TAKEN == [True]


TAKEN: list[bool] = []


def _build_lock_taken(settings: dict[str, str]) -> None:
    with locks.session_lock(settings, locks.MARTS_BUILD_LOCK_KEY, "dbt build of the marts"):
        TAKEN.append(True)

"""Airflow cluster policy of ``make celery-check`` only (its processes have this folder on
``PYTHONPATH``; docker-compose.yaml and production do not).

A try lost with a killed worker is retried after the DAG's ``retry_delay`` (1 minute,
doubled at each try, with jitter: 60-120 s for the first retry). The check shortens it to
``RETRY_DELAY`` so that it ends in minutes; the retry itself, on the other worker, is what
it checks, and it is the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

RETRY_DELAY = timedelta(seconds=5)


def task_policy(task: Any) -> None:
    task.retry_delay = RETRY_DELAY
    task.retry_exponential_backoff = 0

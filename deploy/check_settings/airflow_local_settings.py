"""Airflow settings of ``make celery-check`` only (its processes have this folder on
``PYTHONPATH``; docker-compose.yaml and production do not).

- ``task_policy``: a try lost with a killed worker is retried after 1 s instead of the
  DAG's ``retry_delay`` (60-120 s for the first retry); the retry itself is the same.
- ``worker_node_name`` (``[core] hostname_callable``): two workers share one host here,
  so each task instance records its worker's Celery node name (``worker1@host``) rather
  than the host name both share. Task processes import this module: no heavy imports.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any


def task_policy(task: Any) -> None:
    task.retry_delay = timedelta(seconds=1)
    task.retry_exponential_backoff = 0


def worker_node_name() -> str:
    name = os.environ.get("AIRFLOW_WORKER_NAME")
    return f"{name}@{socket.gethostname()}" if name else socket.getfqdn()

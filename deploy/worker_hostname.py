"""``[core] hostname_callable`` for several Celery workers on one machine.

Airflow records the host name of the worker that ran each try of a task instance
(``getfqdn()`` by default). Workers on their own hosts or containers (docker-compose.yaml)
need nothing; ``make celery-check`` runs two workers on one machine, so each worker's
environment names it in ``AIRFLOW_WORKER_NODE_NAME`` (its Celery node name, such as
``worker1@host``) and points ``AIRFLOW__CORE__HOSTNAME_CALLABLE`` here. Imported by the
task processes: keep it free of heavy imports.
"""

from __future__ import annotations

import os
import socket

ENV_NODE_NAME = "AIRFLOW_WORKER_NODE_NAME"


def node_name() -> str:
    """The worker's Celery node name, or the machine's name when it has none."""
    return os.environ.get(ENV_NODE_NAME) or socket.getfqdn()

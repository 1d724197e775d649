"""Failure alerts: every task's ``on_failure_callback`` logs one line naming the DAG, run,
day, task, try and reason, and Airflow's notifiers send it when configured by the
environment (read at parse time): ``SALES_MART_ALERT_WEBHOOK_CONN_ID`` (``HttpNotifier``
POSTs ``{"text": ...}``) and ``SALES_MART_ALERT_EMAIL`` (``SmtpNotifier`` through
``smtp_default``). A notifier that fails is logged by Airflow and hides nothing."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENV_ALERT_WEBHOOK_CONN = "SALES_MART_ALERT_WEBHOOK_CONN_ID"
ENV_ALERT_EMAIL = "SALES_MART_ALERT_EMAIL"
SUMMARY_TEMPLATE = "{{ failure_summary(ti, dag_run, exception) }}"


def failure_summary(ti: Any, dag_run: Any, exception: BaseException | None) -> str:
    """One paragraph naming the DAG, the run, the day, the task, the try and the reason."""
    day = None
    if ti is not None:
        try:
            day = ti.xcom_pull(task_ids="resolve_run_dates", key="day")
        except Exception:  # the summary must never fail because XCom is unavailable
            day = None
    reason = f"{type(exception).__name__}: {exception}" if exception else "unknown reason"
    parts = [
        # the DAG's id (retention_report shares these alerts); sales_mart when unknown
        f"{getattr(dag_run, 'dag_id', None) or 'sales_mart'} failure: "
        f"task {getattr(ti, 'task_id', '?')!r}",
        f"run {getattr(dag_run, 'run_id', '?')!r}",
        f"day {day or '?'}",
        f"try {getattr(ti, 'try_number', '?')}",
        f"reason {reason}",
    ]
    log_url = getattr(ti, "log_url", None)
    if log_url:
        parts.append(f"log {log_url}")
    return "; ".join(parts)


# For the notifiers' templates (the DAG's user_defined_macros).
ALERT_MACROS = {"failure_summary": failure_summary}


def log_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: the summary in the task's log."""
    ti = context.get("ti") or context.get("task_instance")
    log.error(failure_summary(ti, context.get("dag_run"), context.get("exception")))


@dataclass(frozen=True)
class EachFailure:
    """Runs a fresh copy of ``notifier`` for each failure.

    A notifier renders its templates in place, once: where one process runs several
    tasks of a parse (``airflow dags test``), a second failure would send the first
    one's text. The copy keeps the configured notifier a template.
    """

    notifier: Any

    def __call__(self, context: Any) -> None:
        copy.deepcopy(self.notifier)(context)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Both DAGs' task defaults: retries with backoff, a timeout, the failure alerts."""
    from datetime import timedelta

    return {
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": failure_callbacks(),
        **overrides,
    }


def failure_callbacks(
    environ: Mapping[str, str] = os.environ,
) -> list[Callable[[Any], None]]:
    """The log line, plus a notifier per alert the environment configures."""
    callbacks: list[Callable[[Any], None]] = [log_failure]
    webhook_conn_id = environ.get(ENV_ALERT_WEBHOOK_CONN, "").strip()
    if webhook_conn_id:
        from airflow.providers.http.notifications.http import HttpNotifier

        callbacks.append(
            EachFailure(HttpNotifier(http_conn_id=webhook_conn_id, json={"text": SUMMARY_TEMPLATE}))
        )
    recipients = [a.strip() for a in environ.get(ENV_ALERT_EMAIL, "").split(",") if a.strip()]
    if recipients:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        callbacks.append(
            EachFailure(
                SmtpNotifier(
                    to=recipients,
                    subject="sales_mart failure: {{ ti.task_id }} ({{ dag_run.run_id }})",
                    # the summary quotes the error, which may hold '<' and '&'
                    html_content="<p>{{ failure_summary(ti, dag_run, exception) | e }}</p>",
                )
            )
        )
    return callbacks

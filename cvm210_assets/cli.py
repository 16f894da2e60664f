"""The `cvm210` command: what a user needs beside Dagster's UI."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING

from cvm210_assets.lake.table_catalog import TABLES, view_names
from cvm210_assets.settings import Settings

if TYPE_CHECKING:
    from cvm210_assets.lake.tables import DeltaRsTables


def _lake_tables(lake_uri: str) -> DeltaRsTables:
    # Imports stay inside the commands: `cvm210 --help` should not load Dagster and Spark.
    from cvm210_assets.resources import Lake

    return Lake(uri=lake_uri).tables


def _on_spark(settings: Settings, lake: str, query: str) -> tuple[list[str], list[tuple]]:
    """The statement as written, on a local Spark with Delta Lake (its jars from the set-up)."""
    import tempfile
    from dataclasses import replace

    from pyspark.sql import SparkSession

    from cvm210_assets.resources import jar_groups, session_jars, spark_config
    from cvm210_assets.sql.spark import run_spark

    tables = _lake_tables(lake)
    settings = replace(settings, lake_uri=tables.storage.root_uri, spark_remote=None)
    conf = spark_config(settings) | session_jars(settings.jar_cache, jar_groups(settings))
    with tempfile.TemporaryDirectory(prefix="cvm210-sql-") as warehouse:
        builder = SparkSession.builder.config("spark.sql.warehouse.dir", warehouse)
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        try:
            present = [t for t in TABLES if tables.version(t) is not None]
            return run_spark(spark, tables.storage.root_uri, present, query)
        finally:
            spark.stop()


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from cvm210_assets.lake.maintenance import LakeError
    from cvm210_assets.spark_jars import MissingJars
    from cvm210_assets.sql import SqlError
    from cvm210_assets.sql.charts import chart_data, write_chart
    from cvm210_assets.sql.duckdb_engine import execute
    from cvm210_assets.sql.render import render

    lake = args.lake or settings.lake_uri
    try:
        if args.engine == "spark":
            from pyspark.errors import PySparkException

            try:
                columns, rows = _on_spark(settings, lake, args.query)
            except PySparkException as error:  # the statement's own error, as Spark words it
                raise SqlError(str(error).split("\n")[0]) from None
        else:
            columns, rows = execute(_lake_tables(lake), args.query)
        chart = chart_data(columns, rows) if args.chart else None
    except (duckdb.Error, SqlError, LakeError, MissingJars) as error:
        print(f"cvm210 sql: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render(columns, rows, args.format))
    if chart is not None:
        write_chart(chart, args.chart, title=" ".join(args.query.split())[:420])
        print(f"cvm210 sql: chart written to {args.chart}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from cvm210_assets.partitions import Month
    from cvm210_assets.report import ReportError, write_report

    try:
        month = Month.from_key(args.month)
        out = args.out or f"cvm210-report-{month.key}.html"
        write_report(_lake_tables(args.lake or settings.lake_uri), month, out)
    except (duckdb.Error, ReportError, ValueError, OSError) as error:
        print(f"cvm210 report: {error}", file=sys.stderr)
        return 1
    print(f"cvm210 report: {out}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from cvm210_assets.demo import DEMO_MONTHS, run_demo

    lake = args.lake or settings.lake_uri
    return 0 if run_demo(settings, lake, args.months or DEMO_MONTHS, args.funds) else 1


def _spark_server(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from cvm210_assets.resources import jar_groups, session_jars, spark_config
    from cvm210_assets.settings import SPARK_REMOTE_VAR, remote_port
    from cvm210_assets.spark_jars import MissingJars
    from cvm210_assets.spark_server import DEFAULT_PORT, SparkServer, SparkServerError

    try:
        remote = settings.spark_remote
        port = args.port or (remote_port(remote) if remote else DEFAULT_PORT)
        local = replace(settings, spark_remote=None)
        jars = session_jars(settings.jar_cache, jar_groups(settings))
        server = SparkServer({**spark_config(local), **jars}, port)
        server.start()
    except (SparkServerError, MissingJars, ValueError) as error:
        print(f"cvm210 spark-server: {error}", file=sys.stderr)
        return 1
    print(
        f"cvm210 spark-server: listening on {server.remote}; runs attach with"
        f" {SPARK_REMOTE_VAR}={server.remote} and the same token. Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    # The server runs in a session of its own: stop it however this command is ended.
    for ending in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(ending, lambda *_: sys.exit(0))
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cvm210", description="CVM daily fund reports as a bronze/silver/gold Delta lake."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sql = commands.add_parser(
        "sql",
        help="run SQL over the lake",
        description=f"Tables: {', '.join(view_names())}"
        f" (also {', '.join(TABLES)}). Column names are case-insensitive. Besides queries"
        " (with <table> VERSION AS OF n or TIMESTAMP AS OF '<UTC time>'): DESCRIBE HISTORY"
        " <table> [LIMIT n]; OPTIMIZE <table> [ZORDER BY (column, ...)]; RESTORE [TABLE]"
        " <table> TO VERSION AS OF n.",
    )
    sql.add_argument("query", help="one SQL statement")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument(
        "--chart",
        metavar="PNG",
        help="also draw the result into this PNG: the leading text (or integer) columns as x,"
        " each later numeric column a series",
    )
    sql.add_argument("--lake", help="lake root (default: CVM210_LAKE_URI, else ./lake)")
    sql.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="duckdb (default: answers in a second); spark: the statement as written on local"
        " Spark SQL with Delta Lake, as on Databricks (every Delta statement, VACUUM included;"
        " starts a JVM)",
    )
    sql.set_defaults(run=_sql)

    report = commands.add_parser(
        "report",
        help="write the month's portability report (one HTML file that opens offline)",
        description="The month's largest net outflows (fund names when the lake has CVM's fund"
        " registry), the market's net flow over the last 12 months as a chart, and the month's"
        " outflow alerts, in one self-contained HTML file.",
    )
    report.add_argument("--month", required=True, help="partition key YYYY-MM")
    report.add_argument("--out", help="HTML file to write (default cvm210-report-YYYY-MM.html)")
    report.add_argument("--lake", help="lake root (default: CVM210_LAKE_URI, else ./lake)")
    report.set_defaults(run=_report)

    demo = commands.add_parser(
        "demo", help="run the pipeline end to end against a local, generated copy of CVM"
    )
    demo.add_argument("--lake", help="lake root to fill (default: CVM210_LAKE_URI, else ./lake)")
    demo.add_argument("--months", nargs="*", help="partition keys YYYY-MM (default: 3 months)")
    demo.add_argument("--funds", type=int, default=300, help="funds per generated month")
    demo.set_defaults(run=_demo)

    server = commands.add_parser(
        "spark-server",
        help="keep a local Spark up between runs (Spark Connect), so runs skip Spark's start",
        description="Runs a Spark Connect server on 127.0.0.1 until Ctrl-C, sized like a run's"
        " own Spark (CVM210_SPARK_MASTER, CVM210_SPARK_DRIVER_MEMORY, ...). Clients need the"
        " token in CVM210_SPARK_TOKEN; runs attach when CVM210_SPARK_REMOTE=sc://localhost:PORT.",
    )
    server.add_argument(
        "--port", type=int, help="default: the port of CVM210_SPARK_REMOTE, else 15002"
    )
    server.set_defaults(run=_spark_server)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()  # once, for the command to pass on
    except ValueError as error:
        print(f"cvm210 {args.command}: {error}", file=sys.stderr)
        return 1
    return args.run(args, settings)


if __name__ == "__main__":
    sys.exit(main())

"""The original design's views in Spark SQL with Delta Lake (Databricks, `cvm210 sql --engine
spark`), and a statement run there as written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from cvm210_assets.lake.table_catalog import SILVER_TABLE, SQL_SCHEMA, TABLES
from cvm210_assets.sql import Result
from cvm210_assets.sql.views import VIEWS, joined_views, view_sql

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_view_statements(relations: Mapping[str, str]) -> list[str]:
    """CREATE VIEW statements of `cvm_p210.*` for Spark SQL over `relations` (Delta table ->
    Spark's name for it, e.g. delta_relations(lake_uri) on Databricks)."""
    return (
        [f"CREATE SCHEMA IF NOT EXISTS {SQL_SCHEMA}"]
        + [
            f"CREATE OR REPLACE VIEW {SQL_SCHEMA}.{name} AS {view_sql(name, relations)}"
            for name, view in VIEWS.items()
            if view.table in relations
        ]
        + [f"CREATE OR REPLACE VIEW {SQL_SCHEMA}.{n} AS {q}" for n, q in joined_views(relations)]
    )


def delta_relations(lake_uri: str, tables: Iterable[str] = TABLES) -> dict[str, str]:
    """The lake's Delta tables by path, for a Spark with Delta Lake."""
    return {table: f"delta.`{lake_uri.rstrip('/')}/{table}`" for table in tables}


def spark_statements(lake_uri: str, tables: Iterable[str] = TABLES) -> list[str]:
    """`cvm_p210.*` in a Spark with Delta Lake (Databricks, `cvm210 sql --engine spark`) over
    the lake's `tables`. Spark time-travels, OPTIMIZEs, VACUUMs and DESCRIBEs HISTORY only of
    tables, never of views, so the original's silver name is the silver Delta table itself
    (registered by location; there `dh_processamento_silver` is `dh_processamento`), and the
    other names are the views."""
    tables = list(tables)
    registered = []
    if SILVER_TABLE.name in tables:
        location = f"{lake_uri.rstrip('/')}/{SILVER_TABLE.name}"
        registered.append(
            f"CREATE TABLE IF NOT EXISTS {SILVER_TABLE.sql_name} USING DELTA LOCATION '{location}'"
        )
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SQL_SCHEMA}",
        *registered,
        *(
            s
            for s in spark_view_statements(delta_relations(lake_uri, tables))[1:]
            if f" {SILVER_TABLE.sql_name} " not in s
        ),
    ]


def run_spark(spark: SparkSession, lake_uri: str, tables: Iterable[str], statement: str) -> Result:
    """One statement, as written, on Spark SQL with Delta Lake over the lake's `tables`: every
    Delta statement Spark has (time travel, DESCRIBE HISTORY, OPTIMIZE, VACUUM, RESTORE …)."""
    tables = list(tables)
    for registration in spark_statements(lake_uri, tables):
        spark.sql(registration)
    for table, relation in delta_relations(lake_uri, tables).items():  # their own names too
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {table} AS SELECT * FROM {relation}")
    frame = spark.sql(statement.strip().rstrip(";"))
    return list(frame.columns), [tuple(row) for row in frame.collect()]

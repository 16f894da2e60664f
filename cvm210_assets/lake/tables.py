"""The Delta tables, behind one interface with one engine per deployment.

Locally (and wherever Spark has no Delta Lake jars) delta-rs does the Delta work and Arrow
carries the data between Spark and delta-rs; on a Databricks cluster the cluster's own Delta
Lake does (issue #3). Assets only see `DeltaTables`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from cvm210_assets.lake.merge import merge_rows
from cvm210_assets.lake.schemas import PARTITION_COLUMNS
from cvm210_assets.lake.storage import LakeStorage, LocalStorage
from cvm210_assets.partitions import Month

TABLES = (
    "bronze",
    "silver",
    "silver_rejects",
    "silver_changes",
    "gold_kpis",
    "outflow_alerts",
    "alert_deliveries",
    "fund_registry",
    "gold_breakdowns",
)


@dataclass(frozen=True)
class Staged:
    """Rows computed once and held on the driver as Arrow for a commit: the checks read these
    very rows before anything is written. (A month is at most a few million rows.)"""

    data: pa.Table
    rows: int

    @classmethod
    def of(cls, rows: pa.Table, cluster_by: tuple[str, ...] = ()) -> Staged:
        """`rows` ordered by `cluster_by`, the clustering of the files they will be written to."""
        if cluster_by:
            rows = rows.sort_by([(c, "ascending") for c in cluster_by])
        return cls(rows, rows.num_rows)

    def preview(self, n: int) -> list[dict[str, Any]]:
        return self.data.slice(0, n).to_pylist()


def stage_rows(
    rows: DataFrame, cluster_by: tuple[str, ...] = (), constants: Mapping[str, Any] | None = None
) -> Staged:
    """`rows` computed once, as Arrow on the driver, ordered by `cluster_by`.

    `constants` are columns of `rows` that hold one value for the whole frame (a month's
    lineage): Spark would convert and send that value once per row, a quarter of bronze's
    conversion time at 1.5 M rows, so they are added here instead. Sorting in Arrow is cheaper
    than a global sort in Spark and gives files whose min/max statistics on cnpj_fundo let
    readers skip them: clustering by construction.
    """
    constants = constants or {}
    large = rows.sparkSession.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false")
    schema = to_arrow_schema(rows.schema, timezone="UTC", prefers_large_types=large == "true")
    computed = rows.drop(*constants).toArrow()
    columns = {name: computed[name] for name in computed.column_names} | dict(constants)
    return Staged.of(arrow_table(schema, columns, computed.num_rows), cluster_by)


def arrow_table(schema: pa.Schema, columns: Mapping[str, Any], num_rows: int) -> pa.Table:
    """A table in `schema`: arrays cast to their field's type, and single values (a month's
    lineage, its partition) repeated on every row."""
    return pa.table(
        [
            pc.cast(columns[f.name], f.type)
            if isinstance(columns[f.name], pa.Array | pa.ChunkedArray)
            else pa.repeat(pa.scalar(columns[f.name], f.type), num_rows)
            for f in schema
        ],
        schema=schema,
    )


def with_month(rows: pa.Table, month: Month, schema: pa.Schema) -> pa.Table:
    """Rows read without their partition columns (`read_month_arrow`), in `schema` again."""
    columns = {name: rows[name] for name in rows.column_names}
    columns |= dict(zip(PARTITION_COLUMNS, (month.ano, month.mes), strict=True))
    return arrow_table(schema, columns, rows.num_rows)


@dataclass(frozen=True)
class TableWrite:
    table: str
    version: int
    rows: int
    metrics: dict[str, Any] = field(default_factory=dict)


class DeltaTables(ABC):
    """Month-at-a-time access to the lake's Delta tables."""

    @abstractmethod
    def uri(self, table: str) -> str: ...

    @abstractmethod
    def version(self, table: str) -> int | None:
        """Current version, or None when the table does not exist yet."""

    @abstractmethod
    def month_rows(self, table: str, month: Month) -> int:
        """Rows the table holds for the month, from the Delta log's file statistics."""

    @abstractmethod
    def read_month(self, spark: SparkSession, table: str, month: Month) -> DataFrame | None:
        """The month's rows, or None when the table does not exist yet."""

    @abstractmethod
    def read_month_arrow(self, table: str, month: Month) -> pa.Table | None:
        """The month's rows as Arrow on the driver, partition columns omitted."""

    @abstractmethod
    def replace_month(
        self, table: str, rows: Staged, month: Month, commit: dict[str, str]
    ) -> TableWrite:
        """Replace the month's rows in one commit; other months are untouched."""

    @abstractmethod
    def merge_month(
        self,
        table: str,
        rows: Staged,
        month: Month,
        key: tuple[str, ...],
        values: tuple[str, ...],
        commit: dict[str, str],
    ) -> TableWrite:
        """Make the month equal `rows` by MERGE: update changed `values`, insert, delete."""


def _month_predicate(month: Month, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return f"{prefix}ano = {month.ano} AND {prefix}mes = {month.mes}"


class DeltaRsTables(DeltaTables):
    """delta-rs on a local folder or S3."""

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage
        self.options = storage.delta_storage_options()

    def uri(self, table: str) -> str:
        return self.storage.uri(table)

    def _open(self, table: str) -> DeltaTable | None:
        uri = self.uri(table)
        if not DeltaTable.is_deltatable(uri, storage_options=self.options):
            return None
        return DeltaTable(uri, storage_options=self.options)

    def version(self, table: str) -> int | None:
        delta = self._open(table)
        return None if delta is None else delta.version()

    def month_files(self, delta: DeltaTable, month: Month) -> list[str]:
        return delta.file_uris(file_pruning_predicate=_month_predicate(month))

    def month_rows(self, table: str, month: Month) -> int:
        delta = self._open(table)
        if delta is None:
            return 0
        actions = pa.table(delta.get_add_actions(flatten=True))
        total = 0
        for row in actions.select(["num_records", "partition.ano", "partition.mes"]).to_pylist():
            if (row["partition.ano"], row["partition.mes"]) == (month.ano, month.mes):
                total += row["num_records"]
        return total

    def _month_parts(self, table: str, month: Month) -> tuple[list[str], pa.Schema] | None:
        """The month's Parquet files and their schema (partition columns live in the paths)."""
        delta = self._open(table)
        if delta is None:
            return None
        schema = pa.schema(delta.schema().to_arrow())
        data_schema = pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS])
        return self.month_files(delta, month), data_schema

    def _arrow(self, files: list[str], schema: pa.Schema) -> pa.Table:
        # delta-rs' own readers are avoided on purpose: DeltaTable.to_pyarrow_table() has
        # aborted the process at exit in deltalake 1.5-1.6; reading its file list has not.
        return self._dataset(files, schema).to_table() if files else schema.empty_table()

    def read_month(self, spark: SparkSession, table: str, month: Month) -> DataFrame | None:
        parts = self._month_parts(table, month)
        if parts is None:
            return None
        files, schema = parts
        spark_schema = from_arrow_schema(schema)
        # Spark reads a local folder's files itself; from S3 (no connector here) through Arrow.
        if files and isinstance(self.storage, LocalStorage):
            frame = spark.read.schema(spark_schema).parquet(*files)
        else:
            frame = spark.createDataFrame(self._arrow(files, schema), schema=spark_schema)
        return frame.withColumn("ano", F.lit(month.ano)).withColumn("mes", F.lit(month.mes))

    def _dataset(
        self, files: list[str], schema: pa.Schema, hive_root: str | None = None
    ) -> pads.Dataset:
        options: dict[str, Any] = {"schema": schema, "format": "parquet"}
        if hive_root is not None:
            partitions = pa.schema([schema.field(c) for c in PARTITION_COLUMNS])
            options["partitioning"] = pads.partitioning(partitions, flavor="hive")
            options["partition_base_dir"] = self._path(hive_root)
        if isinstance(self.storage, LocalStorage):
            return pads.dataset(files, **options)
        endpoint = self.options.get("AWS_ENDPOINT_URL")
        filesystem = pafs.S3FileSystem(
            endpoint_override=endpoint,
            scheme="http" if endpoint and endpoint.startswith("http://") else "https",
            region=self.options.get("AWS_REGION"),
        )
        return pads.dataset([self._path(f) for f in files], filesystem=filesystem, **options)

    def _path(self, uri: str) -> str:
        return uri.removeprefix("s3://") if not isinstance(self.storage, LocalStorage) else uri

    def dataset(self, table: str, version: int | None = None) -> pads.Dataset | None:
        """The whole table (at `version`, default latest) as an Arrow dataset, for SQL."""
        delta = self._open(table)
        if delta is None:
            return None
        if version is not None:
            delta.load_as_version(version)
        schema = pa.schema(delta.schema().to_arrow())
        partitioned = all(c in schema.names for c in PARTITION_COLUMNS)
        return self._dataset(
            delta.file_uris(), schema, hive_root=self.uri(table) if partitioned else None
        )

    def read_month_arrow(self, table: str, month: Month) -> pa.Table | None:
        """The month's rows as Arrow, partition columns omitted."""
        parts = self._month_parts(table, month)
        return None if parts is None else self._arrow(*parts)

    def replace_month(
        self, table: str, rows: Staged, month: Month, commit: dict[str, str]
    ) -> TableWrite:
        arrow = rows.data
        exists = self._open(table) is not None
        write_deltalake(
            self.uri(table),
            arrow,
            mode="overwrite" if exists else "append",
            predicate=_month_predicate(month) if exists else None,
            partition_by=list(PARTITION_COLUMNS),
            schema_mode="merge",
            storage_options=self.options,
            commit_properties=CommitProperties(custom_metadata=commit),
        )
        return TableWrite(table, self._open(table).version(), arrow.num_rows)

    def replace_table(self, table: str, rows: pa.Table, commit: dict[str, str]) -> TableWrite:
        """Replace an unpartitioned table's rows (e.g. fund_registry) in one commit."""
        write_deltalake(
            self.uri(table),
            rows,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=self.options,
            commit_properties=CommitProperties(custom_metadata=commit),
        )
        return TableWrite(table, self._open(table).version(), rows.num_rows)

    def merge_month(
        self,
        table: str,
        rows: Staged,
        month: Month,
        key: tuple[str, ...],
        values: tuple[str, ...],
        commit: dict[str, str],
    ) -> TableWrite:
        arrow = rows.data
        delta = self._open(table)
        if delta is None or not self.month_files(delta, month):
            write_deltalake(
                self.uri(table),
                arrow,
                mode="append",
                partition_by=list(PARTITION_COLUMNS),
                storage_options=self.options,
                commit_properties=CommitProperties(custom_metadata=commit),
            )
            metrics = {"num_target_rows_inserted": arrow.num_rows}
            return TableWrite(table, self._open(table).version(), arrow.num_rows, metrics)
        # The MERGE is computed in Arrow (lake/merge.py says why) and written as one overwrite
        # of the month; its counts go into the commit, where DESCRIBE HISTORY shows them.
        old = with_month(self.read_month_arrow(table, month), month, arrow.schema)
        merged, metrics = merge_rows(old, arrow, key, values)
        counts = {f"cvm210.{name}": str(count) for name, count in metrics.items()}
        write_deltalake(
            self.uri(table),
            merged,
            mode="overwrite",
            predicate=_month_predicate(month),
            partition_by=list(PARTITION_COLUMNS),
            schema_mode="merge",
            storage_options=self.options,
            commit_properties=CommitProperties(custom_metadata={**commit, **counts}),
        )
        return TableWrite(table, self._open(table).version(), arrow.num_rows, metrics)

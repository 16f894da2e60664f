"""The lake's Delta tables through delta-rs: for what runs without Spark.

Every Spark step reads and writes through Delta Lake's Spark engine (lake/spark_tables.py).
What runs where Dagster runs, without a JVM, goes through delta-rs and Arrow: the fund
registry and the delivery log it writes, `cvm210 sql` on DuckDB, the report, the alerts'
deliveries, the upkeep, and the checks and tests that read a few rows. Both engines meet on
tables whose features both read (spark_tables.TABLE_PROPERTIES).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltalake import CommitProperties, DeltaTable, write_deltalake

from cvm210_assets.lake.schemas import PARTITION_COLUMNS
from cvm210_assets.lake.storage import LakeStorage, LocalStorage
from cvm210_assets.partitions import Month

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads


@dataclass(frozen=True)
class TableWrite:
    """A commit: the table, the version it made, and the engine's figures for it."""

    table: str
    version: int
    metrics: dict[str, Any] = field(default_factory=dict)


def _month_predicate(month: Month) -> str:
    return f"ano = {month.ano} AND mes = {month.mes}"


class DeltaRsTables:
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
        import pyarrow as pa

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
        import pyarrow as pa

        schema = pa.schema(delta.schema().to_arrow())
        data_schema = pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS])
        return self.month_files(delta, month), data_schema

    def _arrow(self, files: list[str], schema: pa.Schema) -> pa.Table:
        # delta-rs' own readers are avoided on purpose: DeltaTable.to_pyarrow_table() has
        # aborted the process at exit in deltalake 1.5-1.6; reading its file list has not.
        return self._dataset(files, schema).to_table() if files else schema.empty_table()

    def _dataset(
        self, files: list[str], schema: pa.Schema, hive_root: str | None = None
    ) -> pads.Dataset:
        # pyarrow is imported where it is used, here as in the rest of this module: at the top,
        # pyarrow.dataset (with pandas) and pyarrow (with numpy) cost every load of the code
        # location 0.45 s, which a run that skips its unchanged months never needs.
        import pyarrow as pa
        import pyarrow.dataset as pads
        import pyarrow.fs as pafs

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
        import pyarrow as pa

        schema = pa.schema(delta.schema().to_arrow())
        partitioned = all(c in schema.names for c in PARTITION_COLUMNS)
        return self._dataset(
            delta.file_uris(), schema, hive_root=self.uri(table) if partitioned else None
        )

    def read_month_arrow(self, table: str, month: Month) -> pa.Table | None:
        """The month's rows as Arrow, partition columns omitted."""
        parts = self._month_parts(table, month)
        return None if parts is None else self._arrow(*parts)

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
        return TableWrite(table, self._open(table).version(), {"numOutputRows": rows.num_rows})

"""The lake's Delta tables through Delta Lake's own Spark engine: on a laptop as on Databricks.

Every Spark step reads and writes here; delta-rs (lake/tables.py) is left to what runs without
Spark. One commit per write: months are replaced with replaceWhere, silver is MERGEd with a
null-safe key (only changed rows updated, rows gone from the source deleted within its months).

Everything goes through the DataFrame writer and SQL, not the `delta.tables` Python API, so it
runs unchanged on a Spark Connect session (`cvm210 spark-server`), which has no Delta plugin.
Rows are written one file per month, sorted by the table's clustering columns: files whose
min/max statistics on cnpj_fundo let readers skip them, clustering by construction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cvm210_assets.lake.maintenance import MIN_TIME_TRAVEL, retention_properties
from cvm210_assets.lake.schemas import PARTITION_COLUMNS
from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.lake.tables import TableWrite
from cvm210_assets.partitions import Month

# Set on every write, so they hold from the table's creation whatever the engine's defaults
# (Databricks turns deletion vectors on for new tables): the lake's other readers, delta-rs and
# DuckDB through Arrow (`cvm210 sql`, the report, alerts), read a version's Parquet files as
# they are, and must not meet deletion vectors, v2 checkpoints, renamed columns or row ids.
# Time travel: the window the upkeep keeps (at least 30 days; upkeep.py widens it when asked).
TABLE_PROPERTIES = {
    "delta.enableDeletionVectors": "false",
    "delta.checkpointPolicy": "classic",
    "delta.columnMapping.mode": "none",
    "delta.enableRowTracking": "false",
    **retention_properties(MIN_TIME_TRAVEL),
}
COMMIT_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def statistics_on(columns: Sequence[str]) -> dict[str, str]:
    """The table property that limits Delta's file statistics to `columns` (none: row counts
    only). Readers skip files by the columns the files are sorted by, and no others."""
    if not columns:
        return {"delta.dataSkippingNumIndexedCols": "0"}
    return {"delta.dataSkippingStatsColumns": ",".join(columns)}


def months_predicate(months: Sequence[Month], alias: str = "") -> str:
    """SQL that holds for the rows of `months` (partition columns only, so Delta prunes)."""
    prefix = f"{alias}." if alias else ""
    by_year: dict[int, list[int]] = {}
    for month in sorted(set(months)):
        by_year.setdefault(month.ano, []).append(month.mes)
    return " OR ".join(
        f"({prefix}ano = {ano} AND {prefix}mes IN ({', '.join(map(str, mes))}))"
        for ano, mes in by_year.items()
    )


def merge_condition(key: Sequence[str], months: Sequence[Month]) -> str:
    """Match on the key, NULL equal to NULL (a class row has no id_subclasse), in the months."""
    on = " AND ".join(f"t.{c} <=> s.{c}" for c in (*key, *PARTITION_COLUMNS))
    return f"{on} AND ({months_predicate(months, 't')})"


def changed_condition(values: Sequence[str]) -> str:
    """A matched row is rewritten only when one of its values differs (NULL-aware)."""
    return " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in values)


def merge_statement(
    target: str, source: str, key: Sequence[str], values: Sequence[str], months: Sequence[Month]
) -> str:
    """MERGE that makes `months` of `target` equal `source`: update, insert, delete."""
    return (
        f"MERGE INTO {target} AS t USING {source} AS s ON {merge_condition(key, months)}"
        f" WHEN MATCHED AND ({changed_condition(values)}) THEN UPDATE SET *"
        " WHEN NOT MATCHED THEN INSERT *"
        f" WHEN NOT MATCHED BY SOURCE AND ({months_predicate(months, 't')}) THEN DELETE"
    )


def merge_metrics(row: Mapping[str, Any]) -> dict[str, int]:
    """Delta's MERGE result row under the names silver's metadata uses."""
    return {
        "num_target_rows_inserted": int(row.get("num_inserted_rows") or 0),
        "num_target_rows_updated": int(row.get("num_updated_rows") or 0),
        "num_target_rows_deleted": int(row.get("num_deleted_rows") or 0),
    }


class SparkDeltaTables:
    """The lake's Delta tables, by path, on one SparkSession (classic or Spark Connect)."""

    def __init__(self, storage: LakeStorage, spark: SparkSession) -> None:
        self.storage = storage
        self.spark = spark

    def uri(self, table: str) -> str:
        return self.storage.uri(table)

    def _name(self, table: str) -> str:
        return f"delta.`{self.uri(table)}`"

    def exists(self, table: str) -> bool:
        """Whether the table has a Delta log: one listing, no Spark job."""
        return self.storage.has_any(f"{table}/_delta_log/")

    def version(self, table: str) -> int | None:
        """The table's current version, or None when it does not exist yet."""
        return self._committed(table).version if self.exists(table) else None

    def read(self, table: str, pinned: bool = False) -> DataFrame | None:
        """The table, or None when it does not exist yet. `pinned`: at its current version,
        whatever is committed while the frame is being computed."""
        if not self.exists(table):
            return None
        reader = self.spark.read.format("delta")
        if pinned:
            reader = reader.option("versionAsOf", self._committed(table).version)
        return reader.load(self.uri(table))

    def read_months(
        self, table: str, months: Sequence[Month], pinned: bool = False
    ) -> DataFrame | None:
        """The rows of `months` (Delta reads only their files), or None without a table."""
        frame = self.read(table, pinned)
        return None if frame is None else frame.where(months_predicate(months))

    @contextmanager
    def _commit_metadata(self, commit: Mapping[str, str]) -> Iterator[None]:
        """The commit's metadata in its commitInfo.userMetadata (DESCRIBE HISTORY shows it)."""
        self.spark.conf.set(COMMIT_METADATA_CONF, json.dumps(dict(commit), sort_keys=True))
        try:
            yield
        finally:
            self.spark.conf.unset(COMMIT_METADATA_CONF)

    def _clustered(self, rows: DataFrame, cluster_by: Sequence[str]) -> DataFrame:
        """One file per month, its rows sorted by `cluster_by`; rows as they come (no shuffle)
        for a table clustered by nothing (bronze: the file's own line order)."""
        if not cluster_by:
            return rows
        return rows.repartition(*PARTITION_COLUMNS).sortWithinPartitions(
            *PARTITION_COLUMNS, *cluster_by
        )

    def replace_months(
        self,
        table: str,
        rows: DataFrame,
        months: Sequence[Month],
        commit: Mapping[str, str],
        cluster_by: Sequence[str] = (),
    ) -> TableWrite:
        """Make `months` of `table` hold exactly `rows`, in one commit; other months untouched.
        New columns are added (schema evolution): bronze grows with the layouts it meets.

        Delta keeps min/max statistics on the clustering columns alone, set when the table is
        created: statistics on every column doubled the write of a month of bronze's text."""
        writer = (
            self._clustered(rows, cluster_by)
            .write.format("delta")
            .options(**TABLE_PROPERTIES, **statistics_on(cluster_by))
            .option("mergeSchema", "true")
            .option("userMetadata", json.dumps(dict(commit), sort_keys=True))
            .partitionBy(*PARTITION_COLUMNS)
        )
        if not self.exists(table):
            writer.mode("append").save(self.uri(table))
        else:
            writer.mode("overwrite").option("replaceWhere", months_predicate(months)).save(
                self.uri(table)
            )
        return self._committed(table)

    def merge_months(
        self,
        table: str,
        rows: DataFrame,
        months: Sequence[Month],
        key: Sequence[str],
        values: Sequence[str],
        commit: Mapping[str, str],
    ) -> TableWrite:
        """Make `months` of `table` equal `rows` by MERGE: update the rows whose `values`
        changed (the others keep their lineage), insert, delete. (A month written for the
        first time is a replace_months: nothing to match.)"""
        view = f"cvm210_merge_{uuid.uuid4().hex}"
        # Delta's MERGE lays out the files it rewrites itself (one per month, not sorted):
        # the weekly upkeep Z-orders restated months again.
        rows.createOrReplaceTempView(view)
        try:
            with self._commit_metadata(commit):
                result = self.spark.sql(
                    merge_statement(self._name(table), view, key, values, months)
                ).first()
        finally:
            self.spark.catalog.dropTempView(view)
        return TableWrite(table, self._committed(table).version, merge_metrics(result.asDict()))

    def _committed(self, table: str) -> TableWrite:
        """The table's last commit, from its log (no Spark job): its version and Delta's own
        figures (numOutputRows…)."""
        log = f"{table}/_delta_log/"
        version = max(
            int(name)
            for key in self.storage.list(log)
            for name in [key.rsplit("/", 1)[-1].removesuffix(".json")]
            if key.endswith(".json") and name.isdigit()
        )
        metrics: dict[str, Any] = {}
        for line in (self.storage.read_bytes(f"{log}{version:020d}.json") or b"").splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                metrics = action["commitInfo"].get("operationMetrics") or {}
        figures = {k: int(v) for k, v in metrics.items() if str(v).isdigit()}
        return TableWrite(table, version, figures)


def first_rows(rows: DataFrame, n: int, order_by: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The first `n` rows as dicts, for previews in the UI."""
    ordered = rows.orderBy(*order_by) if order_by else rows
    return [row.asDict() for row in ordered.limit(n).collect()]


# A preview's rows are among the first lines of each month's CSV: filtering on the line number
# spares sorting every row of a batch to find them.
PREVIEW_LINES = 100


def first_lines_by_month(
    rows: DataFrame, n: int, order_by: Sequence[Any] = ()
) -> dict[Month, list[dict[str, Any]]]:
    """`first_rows_by_month` among the first `PREVIEW_LINES` lines of each month's CSV (rows
    that carry `numero_linha`): a preview in the file's order, or in `order_by` within it."""
    return first_rows_by_month(
        rows.where(F.col("numero_linha") <= PREVIEW_LINES), n, order_by or ["numero_linha"]
    )


def first_rows_by_month(
    rows: DataFrame, n: int, order_by: Sequence[Any] = ()
) -> dict[Month, list[dict[str, Any]]]:
    """The first `n` rows of each month, as dicts: the previews of a batch in one Spark job."""
    window = Window.partitionBy(*PARTITION_COLUMNS).orderBy(*(order_by or PARTITION_COLUMNS))
    picked = rows.withColumn("_n", F.row_number().over(window)).where(F.col("_n") <= n)
    previews: dict[Month, list[dict[str, Any]]] = {}
    for row in picked.orderBy(*PARTITION_COLUMNS, "_n").collect():
        values = row.asDict()
        del values["_n"]
        previews.setdefault(Month(values["ano"], values["mes"]), []).append(values)
    return previews

"""The Delta tables through Spark's own Delta Lake (delta-spark), as on a Databricks cluster.

Same semantics as DeltaRsTables, one commit per write: a month is replaced with replaceWhere,
silver is MERGEd with a null-safe key, only changed rows updated, and rows gone from the source
deleted within the month only. Rows arrive staged and sorted by the clustering columns, so
files are clustered by cnpj_fundo by construction, as with delta-rs.

Not exercised by the tests: local Spark cannot load Delta Lake's jars without Maven Central.
The conditions it sends to Delta are pure functions, tested on their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import PARTITION_COLUMNS
from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.lake.tables import DeltaTables, Staged, TableWrite, _month_predicate
from cvm210_assets.partitions import Month

COMMIT_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def merge_condition(key: tuple[str, ...], month: Month) -> str:
    """Match on the key, NULL equal to NULL (a class row has no id_subclasse), in the month."""
    on = " AND ".join(f"t.{c} <=> s.{c}" for c in key)
    return f"{on} AND {_month_predicate(month, 't')}"


def changed_condition(values: tuple[str, ...]) -> str:
    """A matched row is rewritten only when one of its values differs (NULL-aware)."""
    return " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in values)


def merge_metrics(row: Mapping[str, Any]) -> dict[str, int]:
    """delta-spark's MERGE result row, under the names delta-rs reports (and silver reads)."""
    return {
        "num_target_rows_inserted": int(row.get("num_inserted_rows", 0)),
        "num_target_rows_updated": int(row.get("num_updated_rows", 0)),
        "num_target_rows_deleted": int(row.get("num_deleted_rows", 0)),
    }


class SparkDeltaTables(DeltaTables):
    """delta-spark on the cluster's session, at the lake's URIs (s3://…)."""

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage

    @property
    def spark(self) -> SparkSession:
        return SparkSession.builder.getOrCreate()

    def uri(self, table: str) -> str:
        return self.storage.uri(table)

    def _open(self, table: str) -> DeltaTable | None:
        if not DeltaTable.isDeltaTable(self.spark, self.uri(table)):
            return None
        return DeltaTable.forPath(self.spark, self.uri(table))

    def version(self, table: str) -> int | None:
        delta = self._open(table)
        return None if delta is None else delta.history(1).select("version").first()[0]

    def month_rows(self, table: str, month: Month) -> int:
        # A count over one partition: Delta prunes to the month's files and answers from their
        # statistics where it can.
        frame = self._month(table, month)
        return 0 if frame is None else frame.count()

    def _month(self, table: str, month: Month) -> DataFrame | None:
        if self._open(table) is None:
            return None
        return self.spark.read.format("delta").load(self.uri(table)).where(_month_predicate(month))

    def read_month(self, spark: SparkSession, table: str, month: Month) -> DataFrame | None:
        frame = self._month(table, month)
        if frame is None:
            return None
        # Partition columns last, as DeltaRsTables gives them.
        data = [c for c in frame.columns if c not in PARTITION_COLUMNS]
        return frame.select(*data, *(F.col(c) for c in PARTITION_COLUMNS))

    def read_month_arrow(self, table: str, month: Month) -> pa.Table | None:
        frame = self._month(table, month)
        return None if frame is None else frame.drop(*PARTITION_COLUMNS).toArrow()

    def _frame(self, rows: Staged) -> DataFrame:
        return self.spark.createDataFrame(rows.data)

    @contextmanager
    def _commit_metadata(self, commit: dict[str, str]) -> Iterator[None]:
        """The commit's metadata in its commitInfo (userMetadata), as delta-rs records it."""
        self.spark.conf.set(COMMIT_METADATA_CONF, json.dumps(commit, sort_keys=True))
        try:
            yield
        finally:
            self.spark.conf.unset(COMMIT_METADATA_CONF)

    def _append(self, table: str, rows: Staged, commit: dict[str, str]) -> None:
        with self._commit_metadata(commit):
            (
                self._frame(rows)
                .write.format("delta")
                .mode("append")
                .option("mergeSchema", "true")
                .partitionBy(*PARTITION_COLUMNS)
                .save(self.uri(table))
            )

    def replace_month(
        self, table: str, rows: Staged, month: Month, commit: dict[str, str]
    ) -> TableWrite:
        if self._open(table) is None:
            self._append(table, rows, commit)
        else:
            with self._commit_metadata(commit):
                (
                    self._frame(rows)
                    .write.format("delta")
                    .mode("overwrite")
                    .option("replaceWhere", _month_predicate(month))
                    .option("mergeSchema", "true")
                    .partitionBy(*PARTITION_COLUMNS)
                    .save(self.uri(table))
                )
        return TableWrite(table, self.version(table), rows.rows)

    def merge_month(
        self,
        table: str,
        rows: Staged,
        month: Month,
        key: tuple[str, ...],
        values: tuple[str, ...],
        commit: dict[str, str],
    ) -> TableWrite:
        delta = self._open(table)
        if delta is None or self.month_rows(table, month) == 0:
            self._append(table, rows, commit)
            metrics = {"num_target_rows_inserted": rows.rows}
            return TableWrite(table, self.version(table), rows.rows, metrics)
        with self._commit_metadata(commit):
            result = (
                delta.alias("t")
                .merge(self._frame(rows).alias("s"), merge_condition(key, month))
                .whenMatchedUpdateAll(condition=changed_condition(values))
                .whenNotMatchedInsertAll()
                .whenNotMatchedBySourceDelete(condition=_month_predicate(month, "t"))
                .execute()
            )
        metrics = merge_metrics(result.first().asDict())
        return TableWrite(table, self.version(table), rows.rows, metrics)

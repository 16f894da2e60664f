"""Delta Lake's Spark engine as the pipeline uses it: replace, MERGE, history, and tables that
delta-rs, Arrow and DuckDB read too (the lake's other readers)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cvm210_assets.lake.maintenance import history
from cvm210_assets.lake.spark_tables import (
    TABLE_PROPERTIES,
    SparkDeltaTables,
    merge_statement,
    months_predicate,
    statistics_on,
)
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month

JAN, FEB = Month(2025, 1), Month(2025, 2)
KEY, VALUES = ("cnpj_fundo", "id_subclasse"), ("vl_patrim_liq",)
SCHEMA = "cnpj_fundo string, id_subclasse string, vl_patrim_liq decimal(17,2), linha long,"
SCHEMA += " ano int, mes int"


def frame(spark: SparkSession, month: Month, rows: list[tuple]):
    return spark.createDataFrame([(*r, month.ano, month.mes) for r in rows], SCHEMA)


def rows_of(tables: DeltaRsTables, table: str, month: Month) -> list[tuple]:
    """What delta-rs and Arrow read of the month: the lake's other readers."""
    arrow = tables.read_month_arrow(table, month)
    return sorted(
        (r["cnpj_fundo"], r["id_subclasse"], r["vl_patrim_liq"], r["linha"])
        for r in arrow.to_pylist()
    )


@pytest.fixture
def lake(spark, tmp_path: Path) -> tuple[SparkDeltaTables, DeltaRsTables]:
    storage = LocalStorage(tmp_path)
    return SparkDeltaTables(storage, spark), DeltaRsTables(storage)


def test_months_predicate_prunes_by_partition_columns_only() -> None:
    assert months_predicate([JAN]) == "(ano = 2025 AND mes IN (1))"
    assert months_predicate([FEB, JAN, Month(2024, 12)], "t") == (
        "(t.ano = 2024 AND t.mes IN (12)) OR (t.ano = 2025 AND t.mes IN (1, 2))"
    )
    statement = merge_statement("delta.`/x`", "v", KEY, VALUES, [JAN])
    assert "t.id_subclasse <=> s.id_subclasse" in statement  # NULL matches NULL
    assert "WHEN MATCHED AND (NOT (t.vl_patrim_liq <=> s.vl_patrim_liq))" in statement
    assert statement.endswith(
        "WHEN NOT MATCHED BY SOURCE AND ((t.ano = 2025 AND t.mes IN (1))) THEN DELETE"
    )


def test_merge_updates_inserts_and_deletes_within_its_months_only(spark, lake) -> None:
    spark_tables, rs_tables = lake
    old = [("1", None, D("10.00"), 2), ("2", "S", D("5.00"), 3), ("3", None, D("7.00"), 4)]
    spark_tables.replace_months("t", frame(spark, JAN, old), [JAN], {"n": "1"})
    spark_tables.replace_months("t", frame(spark, FEB, old), [FEB], {"n": "2"})

    new = [("1", None, D("10.00"), 9), ("2", "S", D("6.00"), 8), ("4", None, D("1.00"), 7)]
    write = spark_tables.merge_months("t", frame(spark, JAN, new), [JAN], KEY, VALUES, {"n": "3"})

    assert write.metrics == {
        "num_target_rows_inserted": 1,
        "num_target_rows_updated": 1,
        "num_target_rows_deleted": 1,
    }
    # 1 unchanged keeps its old line (its NULL subclass matched NULL); 2 updated; 3 gone; 4 new.
    assert rows_of(rs_tables, "t", JAN) == [
        ("1", None, D("10.00"), 2),
        ("2", "S", D("6.00"), 8),
        ("4", None, D("1.00"), 7),
    ]
    assert rows_of(rs_tables, "t", FEB) == sorted(old)  # the other month is untouched

    commits = history(rs_tables, "t")
    assert [c["operation"] for c in commits] == ["MERGE", "WRITE", "WRITE"]
    assert [json.loads(c["userMetadata"])["n"] for c in commits] == ["3", "2", "1"]
    assert json.loads(commits[0]["operationMetrics"])["numTargetRowsUpdated"] == "1"
    assert write.version == commits[0]["version"] == rs_tables.version("t")


def test_replace_months_writes_one_sorted_file_per_month(spark, lake) -> None:
    spark_tables, rs_tables = lake
    rows = [(f"{n:014d}", None, D(n), n) for n in range(40, 0, -1)]
    both = frame(spark, JAN, rows).unionByName(frame(spark, FEB, rows)).repartition(3)
    write = spark_tables.replace_months("t", both, [JAN, FEB], {}, cluster_by=KEY)

    assert write.metrics["numOutputRows"] == 80 and write.metrics["numFiles"] == 2
    for month in (JAN, FEB):
        (path,) = rs_tables.month_files(rs_tables._open("t"), month)
        import pyarrow.parquet as pq

        cnpjs = pq.read_table(path.removeprefix("file://"), columns=["cnpj_fundo"])
        assert cnpjs["cnpj_fundo"].to_pylist() == sorted(cnpjs["cnpj_fundo"].to_pylist())

    # Statistics on the clustering columns only: what lets readers skip files, and no more.
    actions = rs_tables._open("t").get_add_actions(flatten=True)
    stats = {c for c in actions.schema.names if c.startswith(("min.", "max."))}
    assert stats == {"min.cnpj_fundo", "max.cnpj_fundo", "min.id_subclasse", "max.id_subclasse"}

    fewer = frame(spark, FEB, rows[:5])
    spark_tables.replace_months("t", fewer, [FEB], {})
    assert len(rows_of(rs_tables, "t", FEB)) == 5 and len(rows_of(rs_tables, "t", JAN)) == 40


def test_tables_keep_features_every_reader_reads_whatever_the_engine_defaults(spark, lake) -> None:
    """Databricks turns deletion vectors on for new tables; a MERGE would then write them,
    and delta-rs' file list (what Arrow, DuckDB and the report read) would show deleted rows."""
    spark_tables, rs_tables = lake
    defaults = "spark.databricks.delta.properties.defaults."
    spark.conf.set(f"{defaults}enableDeletionVectors", "true")
    spark.conf.set(f"{defaults}checkpointPolicy", "v2")
    try:
        old = [("1", None, D("1.00"), 1), ("2", None, D("2.00"), 2), ("3", None, D("3.00"), 3)]
        spark_tables.replace_months("t", frame(spark, JAN, old), [JAN], {})
        new = [("1", None, D("1.00"), 1), ("3", None, D("9.00"), 5)]
        spark_tables.merge_months("t", frame(spark, JAN, new), [JAN], KEY, VALUES, {})
    finally:
        spark.conf.unset(f"{defaults}enableDeletionVectors")
        spark.conf.unset(f"{defaults}checkpointPolicy")

    detail = spark.sql(f"DESCRIBE DETAIL delta.`{spark_tables.uri('t')}`").first()
    assert (detail["minReaderVersion"], detail["minWriterVersion"]) == (1, 2)
    assert "deletionVectors" not in detail["tableFeatures"]
    assert detail["properties"] == TABLE_PROPERTIES | statistics_on(())
    assert rows_of(rs_tables, "t", JAN) == [("1", None, D("1.00"), 1), ("3", None, D("9.00"), 5)]


def test_a_table_delta_rs_writes_is_read_and_merged_by_spark(spark, lake) -> None:
    """The registry and the delivery log are written by delta-rs; the upkeep rewrites Spark's
    tables with delta-rs. Spark reads both and merges on top."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from cvm210_assets.lake.maintenance import compact_months

    spark_tables, rs_tables = lake
    written = pa.table(
        {
            "cnpj_fundo": ["1", "2"],
            "id_subclasse": pa.array([None, "S"], pa.string()),
            "vl_patrim_liq": pa.array([D("1.00"), D("2.00")], pa.decimal128(17, 2)),
            "linha": pa.array([1, 2], pa.int64()),
            "ano": pa.array([2025, 2025], pa.int32()),
            "mes": pa.array([1, 1], pa.int32()),
        }
    )
    for piece in (written.slice(0, 1), written.slice(1, 1)):
        write_deltalake(rs_tables.uri("t"), piece, mode="append", partition_by=["ano", "mes"])
    assert compact_months(rs_tables, "t", [(2025, 1)], ["cnpj_fundo"]) == 2  # delta-rs OPTIMIZE

    assert sorted(r["cnpj_fundo"] for r in spark_tables.read_months("t", [JAN]).collect()) == [
        "1",
        "2",
    ]
    new = [("1", None, D("1.50"), 3), ("2", "S", D("2.00"), 2)]
    write = spark_tables.merge_months("t", frame(spark, JAN, new), [JAN], KEY, VALUES, {})
    assert write.metrics["num_target_rows_updated"] == 1
    assert rows_of(rs_tables, "t", JAN) == [("1", None, D("1.50"), 3), ("2", "S", D("2.00"), 2)]


def test_a_table_gains_columns_and_months_written_before_read_null(spark, lake) -> None:
    # gold gaining evento: an existing lake's months keep working until they are recomputed.
    spark_tables, rs_tables = lake
    spark_tables.replace_months("t", frame(spark, JAN, [("1", None, D(1), 1)]), [JAN], {})
    wider = frame(spark, FEB, [("2", None, D(2), 2)]).selectExpr("*", "'sucessao' AS evento")
    spark_tables.replace_months("t", wider, [FEB], {})
    read = spark_tables.read_months("t", [JAN, FEB]).select("cnpj_fundo", "evento")
    assert sorted(read.collect()) == [("1", None), ("2", "sucessao")]
    assert rs_tables.read_month_arrow("t", JAN)["evento"].to_pylist() == [None]

"""The Spark transforms and quality measures on their own, without Dagster."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cvm210_assets.assets import gold as gold_asset
from cvm210_assets.assets import silver as silver_asset
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.lake.schemas import SILVER
from cvm210_assets.partitions import Month
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.bronze import bronze_lineage, bronze_rows
from cvm210_assets.transforms.gold import kpis
from cvm210_assets.transforms.quality import gold_quality, silver_quality, silver_totals
from cvm210_assets.transforms.silver import (
    Source,
    judge,
    rejected_rows,
    silver_lineage,
    silver_rows,
)
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
MARCH = Month(2024, 3)


def run_transforms(spark: SparkSession, path: Path, layout: str, month: Month):
    lines = spark.read.option("lineSep", "\n").text(str(path))
    bronze = bronze_rows(
        lines, LAYOUTS[layout], bronze_lineage(LAYOUTS[layout], month, "f.csv", "sha", NOW)
    )
    judged = judge(bronze, LAYOUTS[layout], month)
    lineage = silver_lineage(Source("f.csv", "sha", LAYOUTS[layout], NOW), month, "test", NOW)
    silver = silver_rows(judged, lineage)
    rejects = rejected_rows(judged, bronze, LAYOUTS[layout], lineage)
    gold = kpis(silver, "f.csv", "sha", "test", NOW)
    return bronze, silver, rejects, gold


def rows(frame) -> list[dict]:
    return [r.asDict() for r in frame.collect()]


def test_line_numbers_survive_many_splits_bom_crlf_and_blank_lines(
    spark: SparkSession, tmp_path: Path
) -> None:
    csv = generate_month(
        MonthSpec(2024, 3, "b", n_funds=120, seed=5, dirt=True, line_ending="\r\n")
    )
    header, body = csv.split(b"\r\n", 1)
    # A BOM, blank lines in the middle and at the end, a last line without a line break.
    data = b"\xef\xbb\xbf" + header + b"\r\n" + body.replace(b"\r\n", b"\r\n\r\n", 3) + b"\r\n\n"
    data = data.rstrip(b"\r\n") + b"\n\n\n" + data.splitlines(keepends=True)[-3].rstrip(b"\r\n")
    path = tmp_path / "month.csv"
    path.write_bytes(data)
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # many splits
    try:
        assert spark.read.text(str(path)).rdd.getNumPartitions() > 10
        bronze, silver, rejects, gold = run_transforms(spark, path, "b", MARCH)
        expected = expected_month(data, 2024, 3)
        got = sorted((r["numero_linha"], r["qtd_campos"]) for r in rows(bronze))
        assert got == [(b.numero_linha, len(b.campos)) for b in expected.bronze]
        assert_silver([{**r} for r in rows(silver)], expected.silver)
        assert_rejects(rows(rejects), expected)
        assert_gold(rows(gold), expected.gold)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)


def test_latin1_text_and_extra_fields_are_kept_as_read(spark: SparkSession, tmp_path: Path) -> None:
    header = LAYOUTS["b"].header
    line = "FUNDAÇÃO;00.017.024/0001-53;2024-03-01;1;1;1;0;0;1;extra;more"
    path = tmp_path / "m.csv"
    path.write_bytes(f"{header}\n{line}\n".encode("latin-1"))
    bronze, _, rejects, _ = run_transforms(spark, path, "b", MARCH)
    (row,) = rows(bronze)
    assert row["TP_FUNDO"] == "FUNDAÇÃO"
    assert row["campos_extras"] == "extra;more" and row["qtd_campos"] == 11
    (reject,) = rows(rejects)
    assert reject["registro"] == line
    assert reject["motivo"] == "numero_de_campos"
    assert reject["detalhe"] == "esperados 9 campos, encontrados 11"


@pytest.fixture
def bad_silver(spark: SparkSession):
    from pyspark.sql import functions as F

    day = dt.date(2024, 3, 4)
    values = [
        ("00017024000153", None, day, Decimal("10.00"), Decimal("1.00"), Decimal("0.00")),
        ("00017024000153", None, day, Decimal("11.00"), Decimal("0.00"), Decimal("0.00")),  # dup
        (
            "00017024000154",
            None,
            day,
            Decimal("-5.00"),
            Decimal("0.00"),
            Decimal("2.00"),
        ),  # ≤ 0, bad dv
        (None, None, dt.date(2024, 4, 1), Decimal("3.00"), None, None),  # missing, out of month
    ]
    frame = spark.createDataFrame(
        values,
        "cnpj_fundo string, id_subclasse string, dt_comptc date, vl_patrim_liq decimal(17,2),"
        " captc_dia decimal(17,2), resg_dia decimal(17,2)",
    )
    for f in SILVER.fields:
        if f.name not in frame.columns:
            frame = frame.withColumn(f.name, F.lit(None).cast(f.dataType))
    return frame.withColumn("ano", F.lit(2024)).withColumn("mes", F.lit(3))


def test_silver_checks_fail_on_bad_data(bad_silver) -> None:
    outcomes = {
        o.check.name: o
        for o in silver_asset.evaluate(silver_quality(bad_silver.toArrow(), MARCH), 9, 4)
    }
    assert not outcomes["required_fields_present"].passed
    assert not outcomes["net_assets_positive"].passed
    assert outcomes["key_unique"].metadata == {"duplicate_keys": 1}
    assert outcomes["bronze_rows_equal_silver_plus_rejects"].metadata == {
        "bronze_rows": 9,
        "silver_rows": 4,
        "rejected_rows": 4,
    }
    assert not outcomes["dates_in_partition_month"].passed
    assert outcomes["cnpj_check_digits_valid"].metadata["examples"] == "00017024000154"
    assert all(not o.passed for o in outcomes.values())


def test_gold_checks_fail_when_totals_or_keys_disagree(bad_silver) -> None:
    from pyspark.sql import functions as F

    silver = bad_silver.where("cnpj_fundo IS NOT NULL").dropDuplicates(
        ["cnpj_fundo", "id_subclasse", "dt_comptc"]
    )
    gold = kpis(silver, "f", "s", "t", NOW)
    sums = silver_totals(silver)
    assert all(o.passed for o in gold_asset.evaluate(gold_quality(gold.toArrow(), sums)))
    skewed = gold.withColumn("total_captacao", F.col("total_captacao") + F.lit(Decimal("0.01")))
    totals, _ = gold_asset.evaluate(gold_quality(skewed.toArrow(), sums))
    _, keys = gold_asset.evaluate(gold_quality(gold.unionByName(gold).toArrow(), sums))
    assert not totals.passed
    assert totals.metadata["captacao_gold"] == str(
        sum(r["total_captacao"] for r in gold.collect()) + Decimal("0.01") * gold.count()
    )
    assert not keys.passed and keys.metadata == {"duplicate_keys": 2}


def test_cnpj_check_digits() -> None:
    from cvm210_assets.transforms.quality import cnpj_check_digits_ok

    assert cnpj_check_digits_ok("00017024000153") and cnpj_check_digits_ok("00068305000135")
    assert not cnpj_check_digits_ok("00017024000154")
    assert not cnpj_check_digits_ok("0001702400015") and not cnpj_check_digits_ok("0001702400015x")


def test_vectorized_check_digits_agree_with_the_rule_one_by_one() -> None:
    from cvm210_assets.fake_cvm.generator import make_cnpj
    from cvm210_assets.transforms.quality import bad_check_digits

    good = [make_cnpj(f"{n:012d}") for n in range(0, 10**12, 10**12 // 997)]
    flipped = [c[:13] + str((int(c[13]) + 1) % 10) for c in good[:50]]
    odd = ["123", "1234567890123x", "", "١٢٣٤٥٦٧٨٩٠١٢٣٤"]  # short, a letter, Arabic digits
    assert bad_check_digits(good) == []
    assert sorted(bad_check_digits(good + flipped + odd)) == sorted(flipped + odd)


def test_the_arrow_merge_keeps_unchanged_rows_and_matches_null_subclasses() -> None:
    import pyarrow as pa

    from cvm210_assets.lake.merge import merge_rows

    def table(rows):
        return pa.table(
            {
                "cnpj_fundo": [r[0] for r in rows],
                "id_subclasse": pa.array([r[1] for r in rows], pa.string()),
                "vl_patrim_liq": pa.array([r[2] for r in rows], pa.decimal128(17, 2)),
                "numero_linha": [r[3] for r in rows],
            }
        )

    from decimal import Decimal as D

    old = table([("1", None, D("10.00"), 2), ("2", "S", D("5.00"), 3), ("3", None, None, 4)])
    new = table([("1", None, D("10.00"), 9), ("2", "S", D("6.00"), 8), ("4", None, D("1.00"), 7)])

    merged, metrics = merge_rows(old, new, ("cnpj_fundo", "id_subclasse"), ("vl_patrim_liq",))

    assert sorted(merged.to_pylist(), key=lambda r: r["cnpj_fundo"]) == [
        {"cnpj_fundo": "1", "id_subclasse": None, "vl_patrim_liq": D("10.00"), "numero_linha": 2},
        {"cnpj_fundo": "2", "id_subclasse": "S", "vl_patrim_liq": D("6.00"), "numero_linha": 8},
        {"cnpj_fundo": "4", "id_subclasse": None, "vl_patrim_liq": D("1.00"), "numero_linha": 7},
    ]  # 1 kept with its old line (NULL subclass matched NULL); 2 updated; 3 gone; 4 new
    assert metrics == {
        "num_target_rows_inserted": 1,
        "num_target_rows_updated": 1,
        "num_target_rows_deleted": 1,
        "num_target_rows_copied": 1,
    }


def test_the_arrow_merge_pairs_rows_by_position_only_when_every_key_lines_up() -> None:
    import pyarrow as pa

    from cvm210_assets.lake.merge import _aligned, merge_rows

    def table(rows):
        return pa.table(
            {
                "cnpj_fundo": [r[0] for r in rows],
                "id_subclasse": pa.array([r[1] for r in rows], pa.string()),
                "v": pa.array([r[2] for r in rows], pa.int64()),
                "linha": [r[3] for r in rows],
            }
        )

    key, values = ("cnpj_fundo", "id_subclasse"), ("v",)
    old = table([("1", None, 10, 2), ("1", "S", 5, 3), ("2", None, 7, 4)])
    restated = table([("1", None, 10, 9), ("1", "S", 6, 8), ("2", None, 7, 7)])
    assert _aligned(old, restated, key)
    merged, metrics = merge_rows(old, restated, key, values)
    assert sorted(
        (r["cnpj_fundo"], r["id_subclasse"] or "", r["linha"]) for r in merged.to_pylist()
    ) == [
        ("1", "", 2),  # unchanged: the old row, its old line
        ("1", "S", 8),  # changed: the new row
        ("2", "", 4),
    ]
    assert metrics["num_target_rows_updated"] == 1 and metrics["num_target_rows_copied"] == 2

    # Same size, same keys, another order; and a NULL subclass against a value: no alignment,
    # and the join gives the same answer.
    shuffled = restated.take([2, 0, 1])
    assert not _aligned(old, shuffled, key)
    assert merge_rows(old, shuffled, key, values)[1] == metrics
    swapped = table([("1", "S", 10, 9), ("1", None, 6, 8), ("2", None, 7, 7)])
    assert not _aligned(old, swapped, key)
    assert merge_rows(old, swapped, key, values)[1]["num_target_rows_updated"] == 2


def test_staged_constants_equal_what_spark_would_have_sent(spark, tmp_path: Path) -> None:
    """stage_rows adds a month's lineage in Arrow: same columns, order, types and values as
    Spark's own conversion of the whole frame."""
    from cvm210_assets.lake.tables import stage_rows

    path = tmp_path / "m.csv"
    path.write_bytes(generate_month(MonthSpec(2024, 3, "b", n_funds=6, seed=3, dirt=True)))
    lines = spark.read.option("lineSep", "\n").text(str(path))
    lineage = bronze_lineage(LAYOUTS["b"], MARCH, "raw/m.csv", "f" * 64, NOW)
    rows = bronze_rows(lines, LAYOUTS["b"], lineage)

    staged = stage_rows(rows, cluster_by=("numero_linha",), constants=lineage)

    expected = rows.toArrow().sort_by("numero_linha")
    assert staged.data.schema == expected.schema
    assert staged.data.equals(expected)
    assert set(staged.data["dh_ingestao"].to_pylist()) == {NOW}

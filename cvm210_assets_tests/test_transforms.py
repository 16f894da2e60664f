"""The Spark transforms and quality measures on their own, without Dagster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import random
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, MarkdownMetadataValue
from pyspark.sql import SparkSession

from cvm210_assets.assets import gold as gold_asset
from cvm210_assets.assets import silver as silver_asset
from cvm210_assets.assets.common import outcomes_from_record
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.lake.schemas import SILVER, literal_frame, sql_literal
from cvm210_assets.lake.spark_tables import SparkDeltaTables
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.report import render_report, report_data
from cvm210_assets.source.archive import _data_lines
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.bronze import bronze_lineage, bronze_rows, lineage_frame, read_lines
from cvm210_assets.transforms.gold import kpis, month_sources
from cvm210_assets.transforms.quality import (
    GoldQuality,
    gold_quality,
    largest_residuals,
    silver_quality,
    silver_totals,
)
from cvm210_assets.transforms.silver import judge, rejected_rows, silver_rows
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month
from cvm210_assets_tests.test_reference import RECONCILE_CSV, RECONCILED, csv_of

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
MARCH = Month(2024, 3)


# Text that quoting by hand would get wrong.
AWKWARD_TEXT = ("it's", "back\\slash", "\\'; DROP TABLE x; --", "ação ☃", "", "a\nb")


def test_literal_frame_holds_every_value_as_given(spark: SparkSession) -> None:
    schema = "texto string, inteiro bigint, valor decimal(27,12), instante timestamp, dia date,"
    schema += " ok boolean"
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    rows = [
        (text, -(2**40) + i, Decimal("-12345678901234.123456789012"), instant, day, i % 2 == 0)
        for i, (text, instant, day) in enumerate(
            zip(
                AWKWARD_TEXT,
                [NOW, epoch - dt.timedelta(microseconds=1)] * 3,
                [dt.date(2024, 2, 29), dt.date(1900, 1, 1)] * 3,
                strict=True,
            )
        )
    ]
    rows.append((None, None, None, None, None, None))
    struct = spark.createDataFrame([], schema).schema
    got = literal_frame(spark, rows, struct)
    assert got.schema.simpleString() == struct.simpleString()
    # Instants as microseconds since the epoch: what Spark holds, whatever the local zone.
    read = got.selectExpr("texto", "inteiro", "valor", "unix_micros(instante)", "dia", "ok")
    micros = [r[3] and (r[3] - epoch) // dt.timedelta(microseconds=1) for r in rows]
    assert [tuple(r) for r in read.collect()] == [
        (*r[:3], m, *r[4:]) for r, m in zip(rows, micros, strict=True)
    ]
    assert micros[1] == -1
    assert literal_frame(spark, [], struct).count() == 0
    with pytest.raises(TypeError, match="no SQL literal for object"):
        sql_literal(object())


def run_transforms(spark: SparkSession, path: Path, layout: str, month: Month):
    lineage = bronze_lineage(LAYOUTS[layout], month, f"raw/{path.name}", "sha", NOW)
    lines = read_lines(spark, [str(path)])
    bronze = bronze_rows(lines, LAYOUTS[layout], lineage_frame(spark, [lineage]))
    judged = judge(bronze, LAYOUTS[layout])
    silver = silver_rows(judged, "test", NOW)
    rejects = rejected_rows(judged, bronze, LAYOUTS[layout], "test", NOW)
    gold = kpis(silver, month_sources(spark, {month: (f"raw/{path.name}", "sha")}), "test", NOW)
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


def test_months_of_one_batch_are_numbered_judged_and_summed_each_on_its_own(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A range's months go through the transforms together: each file's lines numbered on
    their own (across many splits, several files in one), each row judged against its own
    month, each month's KPIs and measures apart."""
    layout = LAYOUTS["b"]
    csvs = {
        Month(2024, 3): generate_month(MonthSpec(2024, 3, "b", n_funds=80, seed=1, dirt=True)),
        Month(2024, 4): generate_month(MonthSpec(2024, 4, "b", n_funds=50, seed=2, dirt=True)),
        Month(2024, 5): generate_month(MonthSpec(2024, 5, "b", n_funds=3, seed=3)),
    }
    paths = {}
    for month, csv in csvs.items():
        paths[month] = tmp_path / f"inf_diario_fi_{month.compact}.csv"
        paths[month].write_bytes(csv)
    lineages = [
        bronze_lineage(layout, m, f"raw/{p.name}", f"sha-{m.key}", NOW) for m, p in paths.items()
    ]
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # many splits, files share some
    try:
        lines = read_lines(spark, [str(p) for p in paths.values()])
        bronze = bronze_rows(lines, layout, lineage_frame(spark, lineages)).cache()
        judged = judge(bronze, layout)
        silver = silver_rows(judged, "test", NOW).cache()
        rejects = rejected_rows(judged, bronze, layout, "test", NOW)
        sources = {m: (f"raw/{p.name}", f"sha-{m.key}") for m, p in paths.items()}
        gold = kpis(silver, month_sources(spark, sources), "test", NOW)
        quality = silver_quality(silver, list(csvs))
        totals = silver_totals(silver)
        for month, csv in csvs.items():
            expected = expected_month(csv, month.ano, month.mes)
            where = f"ano = {month.ano} AND mes = {month.mes}"
            got = sorted((r["numero_linha"], r["qtd_campos"]) for r in rows(bronze.where(where)))
            assert got == [(b.numero_linha, len(b.campos)) for b in expected.bronze]
            assert {r["arquivo_sha256"] for r in rows(bronze.where(where))} == {f"sha-{month.key}"}
            assert_silver(rows(silver.where(where)), expected.silver)
            assert_rejects(rows(rejects.where(where)), expected)
            assert_gold(rows(gold.where(where)), expected.gold)
            assert quality[month].rows == len(expected.silver)
            assert totals[month][3] == len(expected.silver)
        assert any(r.motivo == "fora_do_mes" for m in csvs for r in expected_month(
            csvs[m], m.ano, m.mes).rejects)  # fmt: skip
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)


# Funds past the reconciliation's bounds (reference.py): a quota ≤ 0 or missing, a product of
# PL in cents and Δquota past 38 digits, a return past DECIMAL(27,2); and one just inside.
BOUNDS = [  # (CNPJ, its quotas on consecutive days, its unchanged net assets)
    ("66.666.666/0001-66", ("-1", "1"), "1000.00"),
    ("13.131.313/0001-13", ("0", "1"), "1000.00"),
    ("77.777.777/0001-77", ("1", ""), "1000.00"),
    ("88.888.888/0001-88", ("1", "10000000000"), "999999999999999.99"),
    ("99.999.999/0001-99", ("0.000000000001", "1"), "999999999999999.99"),
    ("12.121.212/0001-12", ("1", "10000"), "999999999999999.99"),
]


@pytest.mark.parametrize("precision_loss", ["true", "false"])
def test_reconciliation_of_hand_made_months_exact_whatever_decimal_precision_loss(
    spark: SparkSession, tmp_path: Path, precision_loss: str
) -> None:
    """The known answers of the hand-made months (a clean fund, a missing day, a jump without
    flows, a fund near DECIMAL(17,2)'s limit, one report), and the oracle's bounds, to the
    cent, with Spark's decimal precision loss on (its default) or off."""
    bounds = [
        f"FI;{cnpj};2025-02-0{3 + n};1;{quota};{pl};0;0;1"
        for cnpj, quotas, pl in BOUNDS
        for n, quota in enumerate(quotas)
    ]
    data = RECONCILE_CSV + csv_of(*bounds, layout="b").split(b"\n", 1)[1]
    path = tmp_path / "inf_diario_fi_202502.csv"
    path.write_bytes(data)
    key = "spark.sql.decimalOperations.allowPrecisionLoss"
    previous = spark.conf.get(key)
    spark.conf.set(key, precision_loss)
    february = Month(2025, 2)
    try:
        _, silver, _, gold = run_transforms(spark, path, "b", february)
        got = {r["cnpj_fundo"]: r for r in rows(gold)}
        assert_gold(list(got.values()), expected_month(data, 2025, 2).gold)
        quality = gold_quality(gold, silver_totals(silver), [february])[february]
        largest = largest_residuals(gold, gold_asset.RESIDUAL_COLUMNS, 10)[february]
    finally:
        spark.conf.set(key, previous)
    for cnpj, (rendimento, residuo) in RECONCILED.items():
        assert (got[cnpj]["rendimento"], got[cnpj]["residuo_conciliacao"]) == (rendimento, residuo)
    assert got["22222222000122"]["residuo_pct_pl"] == pytest.approx(-30000 / 991616.7525)
    bounded = [got[c.replace(".", "").replace("/", "").replace("-", "")] for c, *_ in BOUNDS]
    assert [r["rendimento"] for r in bounded] == [None] * 5 + [Decimal("9998999999999999900.01")]
    # Five fund-months have a residual; beyond the tolerance: the fund past DECIMAL(17,2)'s
    # limit whose quota moves 10000-fold without its net assets, the jump, the missing day
    # (30000.00 > 1 % of 991616.75). The five past the bounds cannot be reconciled.
    assert (quality.reconciled, quality.over_tolerance, quality.not_reconcilable) == (5, 3, 5)
    assert [(r["cnpj_fundo"], r["residuo_conciliacao"]) for r in largest] == [
        ("12121212000112", Decimal("-9998999999999999900.01")),
        ("33333333000133", Decimal("500000.00")),
        ("22222222000122", Decimal("-30000.00")),
    ]
    outcome = gold_asset.evaluate_reconciliation(quality, largest)
    assert not outcome.passed
    assert outcome.metadata["fund_months_over_tolerance"] == 3


def _return_cases() -> list[tuple[Decimal | None, Decimal | None, Decimal | None]]:
    """(pl_anterior, cota_anterior, cota) at the fast path's boundaries: exact half cents and
    fractions just inside and outside its error bound, results near its magnitude limit, the
    largest PL and the bounds of the exact path, signs, zeros and NULLs; and a sweep of random
    funds from R$ 1 to R$ 10¹⁵ and returns from 10⁻¹² to ×10⁴."""
    q = Decimal("1e-12")
    cases: list[tuple[Decimal | None, Decimal | None, Decimal | None]] = []
    one, pl = Decimal(1), Decimal("1000000.00")  # 10⁸ cents: a quota step is 10⁻⁴ cent
    for n in (4999, 5000, 5001, 14999, 15000, 15001):  # 0.5 and 1.5 cents, and ± 10⁻⁴
        cases += [(pl, one, one + n * q), (pl, one, one - n * q), (-pl, one, one + n * q)]
    # A R$ 10⁷ fund with a quota of 1234.567890123: a step is 8.1 × 10⁻⁷ cent, the bound
    # 3.6 × 10⁻⁶: the fractions 3 steps from ½ go the exact path, those 6 steps away the fast.
    a, pl = Decimal("1234.567890123"), Decimal("10000000.00")
    middle = int(((Decimal(12345) + Decimal("0.5")) * a / (pl * 100 * q)).to_integral_value())
    cases += [(pl, a, a + (middle + k) * q) for k in range(-8, 9)]
    # Near |y| = 2⁴⁶..2⁵⁰ cents, where the bound nears ½ cent.
    for e in (44, 46, 48, 50, 51):
        pl = Decimal(2**e) / 100
        cases += [(pl, Decimal(3), Decimal("4.5")), (pl, Decimal("0.3"), Decimal("0.600000000001"))]
        cases += [(pl, Decimal("1.000000000007"), Decimal("1.999999999993"))]
    big = Decimal("999999999999999.99")
    cases += [
        (big, one, Decimal(10000)),  # 9998999999999999900.01: the exact path
        (big, one, Decimal(10**10)),  # past 38 digits: NULL
        (big, q, one),  # a return of R$ 10²⁷: NULL
        (big, Decimal("1.234567890123"), Decimal("1.234567890124")),
        (Decimal("900000000000000.00"), Decimal("1.234567890123"), Decimal("1.234567890124")),
        (Decimal("900000000000729.00"), Decimal("1.234567890124"), Decimal("1.24")),
        (Decimal("1000.00"), Decimal(0), one),
        (Decimal("1000.00"), one, Decimal(0)),
        (Decimal("1000.00"), Decimal(-1), one),
        (Decimal("1000.00"), one, None),
        (Decimal("1000.00"), None, one),
        (None, one, Decimal("1.1")),
        (Decimal("0.00"), one, Decimal("1.1")),
        (Decimal("-0.01"), one, Decimal("1.5")),
    ]
    rng = random.Random(210)
    steps = ("1e-12", "1e-9", "1e-6", "1e-4", "1e-2", "0.5", "10", "1e4")
    with localcontext(prec=60):
        for _ in range(3000):
            pl = Decimal(rng.randrange(1, 10**17)).scaleb(-2 - rng.randrange(0, 16))
            a = Decimal(rng.randrange(1, 10**15)).scaleb(-rng.randrange(0, 14)).quantize(q)
            step = Decimal(rng.choice(steps)) * Decimal(repr(rng.random())) * rng.choice((-1, 1))
            b = min(max((a * (1 + step)).quantize(q), q), Decimal("999999999999999"))
            cases.append((pl.quantize(Decimal("0.01")), a, b))
    return cases


def test_fast_daily_return_equals_the_exact_one_on_both_sides_of_its_bound(
    spark: SparkSession,
) -> None:
    """The DOUBLE fast path of the daily return, the exact path and the whole CASE against
    Python's exact Decimal (the reference's `_rendimento_dia`), row by row. Exact half cents and
    fractions well within the error bound E of ½ take the exact path; those well outside it,
    with the result below 2⁵⁰ cents, the fast one; each path takes many rows."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StructField, StructType

    from cvm210_assets.lake.schemas import MONEY, QUOTA
    from cvm210_assets.transforms.gold import _exact_return, _fast_return, _return_of_the_day
    from cvm210_assets_tests.reference import _rendimento_dia

    cases = _return_cases()
    schema = StructType(
        [
            StructField("i", IntegerType()),
            StructField("pl", MONEY),
            StructField("a", QUOTA),
            StructField("b", QUOTA),
        ]
    )
    args = (F.col("pl"), F.col("a"), F.col("b"))
    applies, _ = _fast_return(*args)
    got = {
        r["i"]: r
        for r in spark.createDataFrame([(i, *c) for i, c in enumerate(cases)], schema)
        .select(
            "i",
            applies.alias("fast"),
            _return_of_the_day(*args).alias("value"),
            _exact_return(*args).alias("exact"),
        )
        .collect()
    }
    fast = slow = 0
    for i, (pl, a, b) in enumerate(cases):
        expected = None if pl is None else _rendimento_dia(pl, a, b)
        row = got[i]
        assert (row["value"], row["exact"]) == (expected, expected), (pl, a, b)
        if pl is None or a is None or b is None or a <= 0 or b <= 0:
            continue
        with localcontext(prec=60):
            r = abs(pl * 100 * (b - a) / a)
            distance = abs(r - int(r) - Decimal("0.5"))
            bound = pl.copy_abs() * 100 * (a + b) / a * Decimal(2) ** -49
        if distance == 0 or distance < bound / 2:
            assert not row["fast"], (pl, a, b)
        elif distance > bound * 2 and r < 2**49 and pl.copy_abs() * 100 * (a + b) < 10**24:
            assert row["fast"], (pl, a, b)
        fast, slow = fast + bool(row["fast"]), slow + (not row["fast"])
    assert fast > 2000 and slow > 500, (fast, slow)


def test_a_month_of_fast_and_exact_daily_returns_sums_both(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A month mixes days whose return takes the fast path with days that take the exact one
    (a return of exactly half a cent; a PL near R$ 2 × 10¹³, whose bound is wide) and flows of
    R$ 3 × 10¹³: gold's sums equal the 50-digit reference's to the cent."""
    days = ("03", "04", "05", "06", "07")

    def fund(cnpj: str, *values: tuple[str, str, str, str]) -> list[str]:
        return [
            f"FI;{cnpj};2025-02-{d};1;{quota};{pl};{captc};{resg};1"
            for d, (quota, pl, captc, resg) in zip(days, values, strict=True)
        ]

    lines = fund(  # 1000000.00 × 5 × 10⁻⁹ = 0.005: a half cent on the 4th, the exact path
        "11.111.111/0001-11",
        ("1", "1000000.00", "0", "0"),
        ("1.000000005", "1000000.01", "0", "0"),
        ("1.000100005", "1000100.02", "5.00", "0"),
        ("1.000200000", "1000195.00", "0", "2.50"),
        ("1.000150000", "1000145.03", "0", "0"),
    )
    lines += fund(  # crosses R$ 2 × 10¹³ on the 5th and back on the 7th
        "22.222.222/0001-22",
        ("1.234567890123", "19999999999999.99", "0", "0"),
        ("1.234567890124", "19999999999999.98", "0", "0"),
        ("1.234600000000", "20000520000000.01", "0", "0"),
        ("1.234500000000", "19998900000000.00", "0", "0"),
        ("1.234500000001", "19998900000000.13", "0", "0"),
    )
    lines += fund(  # an ordinary fund with one inflow past R$ 2 × 10¹³
        "33.333.333/0001-33",
        ("2", "500000.00", "0", "0"),
        ("2.001", "30000000500250.00", "30000000000000.00", "0"),
        ("2.002", "500500.00", "0", "30000000000000.00"),
        ("2.003", "500750.25", "0", "0"),
        ("2.0035", "500875.37", "0", "0"),
    )
    data = csv_of(*lines, layout="b")
    path = tmp_path / "inf_diario_fi_202502.csv"
    path.write_bytes(data)
    _, _, _, gold = run_transforms(spark, path, "b", Month(2025, 2))
    got = rows(gold)
    assert_gold(got, expected_month(data, 2025, 2).gold)
    assert all(r["rendimento"] is not None for r in got)


def test_a_lake_with_gold_from_before_the_reconciliation_keeps_working(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A user's gold_kpis written before the reconciliation's columns: the report says they
    are not computed yet; rewriting a month (PIPELINE_VERSION makes every month recompute)
    adds them by schema evolution, and the report lists the month's residuals."""
    path = tmp_path / "inf_diario_fi_202502.csv"
    path.write_bytes(RECONCILE_CSV)
    february = Month(2025, 2)
    _, _, _, gold = run_transforms(spark, path, "b", february)
    storage = LocalStorage(tmp_path / "lake")
    tables, rs_tables = SparkDeltaTables(storage, spark), DeltaRsTables(storage)
    new = ("rendimento", "residuo_conciliacao", "residuo_pct_pl")
    tables.replace_months("gold_kpis", gold.drop(*new), [february], {})
    assert report_data(rs_tables, february)["residuals"] is None

    tables.replace_months("gold_kpis", gold, [february], {})

    written = {
        r["cnpj_fundo"]: r for r in rs_tables.read_month_arrow("gold_kpis", february).to_pylist()
    }
    assert {
        k: (r["rendimento"], r["residuo_conciliacao"]) for k, r in written.items()
    } == RECONCILED
    residuals = report_data(rs_tables, february)["residuals"]
    assert [(r["cnpj_fundo"], r["residuo_conciliacao"]) for r in residuals] == [
        ("33333333000133", Decimal("500000.00")),
        ("22222222000122", Decimal("-30000.00")),
    ]
    assert "-30,000.00" in render_report(february, report_data(rs_tables, february), NOW)


def test_flows_reconcile_warns_with_the_count_and_the_largest_residuals() -> None:
    """The check passes when no fund-month is beyond the tolerance; otherwise it says how many
    (and what share of those with a residual) and lists the largest; a warning, never a block.
    An unchanged month repeats it from the state record, table included."""
    quality = GoldQuality(
        rows=4, duplicate_keys=0, gold_totals=(0, 0, 0, 4), silver_totals=(0, 0, 0, 4),
        reconciled=3, over_tolerance=0, not_reconcilable=1,
    )  # fmt: skip
    clean = gold_asset.evaluate_reconciliation(quality, [])
    assert clean.passed
    assert (clean.check.blocking, clean.check.severity) == (False, AssetCheckSeverity.WARN)
    assert clean.metadata["fund_months_checked"] == 3
    assert clean.metadata["fund_months_not_reconcilable"] == 1
    assert clean.metadata["tolerance"] == (
        "|residuo_conciliacao| > max(1% of patrimonio_medio, R$ 1.00)"
    )
    missing_day = {
        "cnpj_fundo": "22222222000122", "id_subclasse": None, "dias_com_informe": 4,
        "patrimonio_medio": Decimal("991616.752500"), "fluxo_liquido": Decimal("-20000.00"),
        "rendimento": Decimal("1968.51"), "residuo_conciliacao": Decimal("-30000.00"),
        "residuo_pct_pl": -30000 / 991616.7525,
    }  # fmt: skip
    flagged = gold_asset.evaluate_reconciliation(
        dataclasses.replace(quality, over_tolerance=1), [missing_day]
    )
    assert not flagged.passed
    assert flagged.metadata["fund_months_over_tolerance"] == 1
    assert flagged.metadata["share_over_tolerance"] == pytest.approx(1 / 3)
    table = flagged.metadata["largest_residuals"]
    assert isinstance(table, MarkdownMetadataValue)
    assert table.md_str.splitlines()[2] == (
        "| 22222222000122 |  | 4 | 991616.752500 | -20000.00 | 1968.51 | -30000.00 | -3.03 % |"
    )
    stored = json.loads(json.dumps({"checks": [flagged.record()]}, default=str))
    (again,) = outcomes_from_record(gold_asset.CHECKS, stored)
    assert again == flagged


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


def test_one_final_cr_is_removed_as_s3_csv_counts_the_lines(
    spark: SparkSession, tmp_path: Path
) -> None:
    """CRLF, an empty CRLF line, a line ending in two CRs and a CR inside a field: bronze
    has exactly the lines s3_csv counted, each without one final CR."""
    header = LAYOUTS["b"].header
    good = "FI;00.017.024/0001-53;2024-03-01;1;1;1;0;0;1"
    data = f"{header}\r\n{good}\r\n\r\n\r\r\n{good}\r\r\nFI;a\rb\r\n{good}\r".encode("latin-1")
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    bronze, *_ = run_transforms(spark, path, "b", MARCH)
    found = {r["numero_linha"]: (r["TP_FUNDO"], r["qtd_campos"]) for r in rows(bronze)}
    assert found == {
        2: ("FI", 9),
        4: ("\r", 1),
        5: ("FI", 9),
        6: ("FI", 2),
        7: ("FI", 9),
    }
    # ...the lines s3_csv counts in the CSV it extracts (source/archive.py), header aside.
    assert len(found) == _data_lines(io.BytesIO(data).readlines()) - 1
    (last_value,) = [r["NR_COTST"] for r in rows(bronze) if r["numero_linha"] == 5]
    assert last_value == "1\r"


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
    quality = silver_quality(bad_silver, [MARCH])[MARCH]
    outcomes = {o.check.name: o for o in silver_asset.evaluate(quality, 9, 4)}
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
    assert quality.latest_dt_comptc == "2024-04-01"


def test_gold_checks_fail_when_totals_or_keys_disagree(bad_silver) -> None:
    from pyspark.sql import functions as F

    silver = bad_silver.where("cnpj_fundo IS NOT NULL").dropDuplicates(
        ["cnpj_fundo", "id_subclasse", "dt_comptc"]
    )
    gold = kpis(silver, month_sources(silver.sparkSession, {MARCH: ("f", "s")}), "t", NOW)
    sums = silver_totals(silver)

    def gold_quality_of(frame):
        return gold_quality(frame, sums, [MARCH])[MARCH]

    assert all(o.passed for o in gold_asset.evaluate(gold_quality_of(gold)))
    skewed = gold.withColumn("total_captacao", F.col("total_captacao") + F.lit(Decimal("0.01")))
    totals, _ = gold_asset.evaluate(gold_quality_of(skewed))
    _, keys = gold_asset.evaluate(gold_quality_of(gold.unionByName(gold)))
    assert not totals.passed
    assert totals.metadata["captacao_gold"] == str(
        sum(r["total_captacao"] for r in gold.collect()) + Decimal("0.01") * gold.count()
    )
    assert not keys.passed and keys.metadata == {"duplicate_keys": 2}


def _check_digits_rule(cnpj: str) -> bool:
    """The modulo-11 rule, one CNPJ at a time in plain Python: the reference."""
    if len(cnpj) != 14 or not (cnpj.isascii() and cnpj.isdigit()):
        return False
    digits = [int(c) for c in cnpj]
    first = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    for n, weights in ((12, first), (13, [6, *first])):
        rest = sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
        if digits[n] != (0 if rest < 2 else 11 - rest):
            return False
    return True


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
    assert sorted(bad_check_digits(good + flipped + odd)) == sorted(
        c for c in good + flipped + odd if not _check_digits_rule(c)
    )

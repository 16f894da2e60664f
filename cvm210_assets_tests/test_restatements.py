"""silver_changes: what each restatement changed, key by key, in money, and recorded once."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from cvm210_assets.cli import main
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.partitions import Month
from cvm210_assets.transforms.changes import Restatement, restatement_changes
from cvm210_assets_tests.conftest import Pipeline, materialization_metadata
from cvm210_assets_tests.reference import SilverRow, expected_month

JAN = Month(2025, 1)


def oracle_changes(old: list[SilverRow], new: list[SilverRow]) -> dict[tuple, str]:
    before = {r.key: r for r in old}
    after = {r.key: r for r in new}
    changes = {k: "inserida" for k in after.keys() - before.keys()}
    changes |= {k: "removida" for k in before.keys() - after.keys()}
    changes |= {
        k: "alterada" for k in after.keys() & before.keys() if after[k].data() != before[k].data()
    }
    return changes


def net_flow(rows: list[SilverRow]) -> Decimal:
    return sum(((r.captc_dia or 0) - (r.resg_dia or 0) for r in rows), Decimal(0))


def changes_of(pipeline: Pipeline, sha: str) -> dict[tuple, dict]:
    rows = [
        r for r in pipeline.rows("silver_changes", "2025-01") if r["arquivo_sha256_novo"] == sha
    ]
    keyed = {(r["cnpj_fundo"], r["id_subclasse"], r["dt_comptc"]): r for r in rows}
    assert len(keyed) == len(rows)  # no key twice for one restatement
    return keyed


def test_each_restatement_is_recorded_with_its_changes_and_money(
    pipeline: Pipeline, fake_cvm: FakeCvm, capsys: pytest.CaptureFixture
) -> None:
    first = generate_month(MonthSpec(2025, 1, "c", n_funds=40, seed=13, subclass_share=0.3))
    fake_cvm.publish_month(2025, 1, first, last_modified=dt.datetime(2025, 2, 3, 8, 0))
    initial = pipeline.run("2025-01")
    assert materialization_metadata(initial, "silver")["restated"] is False
    assert pipeline.rows("silver_changes", "2025-01") == []

    second = restate(first, seed=4, change_share=0.1, n_add=5, n_remove=3)
    fake_cvm.publish_month(2025, 1, second, last_modified=dt.datetime(2025, 3, 4, 8, 0))
    result = pipeline.run("2025-01")

    v1, v2 = expected_month(first, 2025, 1), expected_month(second, 2025, 1)
    wanted = oracle_changes(v1.silver, v2.silver)
    got = changes_of(pipeline, v2.sha256)
    assert {k: r["mudanca"] for k, r in got.items()} == wanted
    assert sum(r["variacao_fluxo_liquido"] for r in got.values()) == net_flow(v2.silver) - net_flow(
        v1.silver
    )
    before = {r.key: r for r in v1.silver}
    for key, row in got.items():
        assert row["arquivo_sha256_anterior"] == v1.sha256
        assert row["dh_publicacao_cvm"] == dt.datetime(2025, 3, 4, 8, 0, tzinfo=dt.timezone.utc)
        if row["mudanca"] == "removida":
            assert row["vl_patrim_liq_novo"] is None
            assert row["vl_patrim_liq_anterior"] == before[key].vl_patrim_liq
    metadata = materialization_metadata(result, "silver")
    assert metadata["restated"] is True
    assert Decimal(metadata["restated_net_flow_change"]) == net_flow(v2.silver) - net_flow(
        v1.silver
    )
    assert metadata["restated_funds_changed"] == len({k[0] for k in wanted})

    # A third version: the second restatement is added, the first one kept.
    third = restate(second, seed=9, change_share=0.05, n_add=1, n_remove=1)
    fake_cvm.publish_month(2025, 1, third)
    pipeline.run("2025-01")
    v3 = expected_month(third, 2025, 1)
    assert {k: r["mudanca"] for k, r in changes_of(pipeline, v3.sha256).items()} == oracle_changes(
        v2.silver, v3.silver
    )
    assert {k: r["mudanca"] for k, r in changes_of(pipeline, v2.sha256).items()} == wanted

    # The README's question: which months did CVM restate that week, and which funds?
    query = (
        "SELECT ano, mes, count(DISTINCT cnpj_fundo) AS fundos, sum(variacao_fluxo_liquido) AS"
        " variacao FROM cvm_p210.silver_changes WHERE dh_publicacao_cvm BETWEEN TIMESTAMP"
        " '2025-03-01' AND TIMESTAMP '2025-03-08' GROUP BY ano, mes"
    )
    assert main(["sql", query, "--lake", pipeline.settings.lake_uri, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "ano": 2025,
            "mes": 1,
            "fundos": len({k[0] for k in wanted}),
            "variacao": str(net_flow(v2.silver) - net_flow(v1.silver)),
        }
    ]


def test_a_run_that_dies_before_the_merge_records_the_restatement_once(
    pipeline: Pipeline, fake_cvm: FakeCvm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cvm210_assets.lake.spark_tables import SparkDeltaTables

    first = generate_month(MonthSpec(2025, 1, "b", n_funds=30, seed=2))
    fake_cvm.publish_month(2025, 1, first)
    pipeline.run("2025-01")
    second = restate(first, seed=6, change_share=0.1, n_add=2, n_remove=2)
    fake_cvm.publish_month(2025, 1, second)
    merge = SparkDeltaTables.merge_months

    def dies(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(SparkDeltaTables, "merge_months", dies)
    assert not pipeline.run("2025-01", raise_on_error=False).success
    monkeypatch.setattr(SparkDeltaTables, "merge_months", merge)
    pipeline.run("2025-01")

    v1, v2 = expected_month(first, 2025, 1), expected_month(second, 2025, 1)
    got = changes_of(pipeline, v2.sha256)
    assert {k: r["mudanca"] for k, r in got.items()} == oracle_changes(v1.silver, v2.silver)


def test_changes_compare_keys_null_safely_and_name_changed_columns(spark) -> None:
    from pyspark.sql.types import StructType

    from cvm210_assets.lake.schemas import SILVER

    def row(cnpj, sub, day, pl, captc="0.00"):
        return {
            "tp_fundo": "FI", "cnpj_fundo": cnpj, "id_subclasse": sub,
            "dt_comptc": dt.date(2025, 1, day), "vl_total": Decimal(pl),
            "vl_quota": Decimal("1.000000000000"), "vl_patrim_liq": Decimal(pl),
            "captc_dia": Decimal(captc), "resg_dia": Decimal("0.00"), "nr_cotst": 3,
        }  # fmt: skip

    schema = StructType(SILVER.fields[:10])

    def frame(rows):
        return spark.createDataFrame(rows, schema=schema)

    before = frame(
        [row("1", None, 2, "10.00"), row("2", "S1", 2, "5.00"), row("3", None, 3, "7.00")]
    )
    after = frame(
        [
            row("1", None, 2, "10.00"),
            row("2", "S1", 2, "6.00", captc="1.50"),
            row("4", None, 3, "1.00"),
        ]
    )
    restatement = Restatement("a" * 64, "b" * 64, None, dt.datetime(2025, 2, 1))

    got = {
        (r["cnpj_fundo"], r["id_subclasse"]): r
        for r in (
            x.asDict() for x in restatement_changes(before, after, JAN, restatement).collect()
        )
    }

    assert {k: v["mudanca"] for k, v in got.items()} == {
        ("2", "S1"): "alterada",
        ("3", None): "removida",
        ("4", None): "inserida",
    }  # ("1", None) is unchanged: its NULL subclass matched
    assert got[("2", "S1")]["colunas_alteradas"] == "vl_total,vl_patrim_liq,captc_dia"
    assert got[("2", "S1")]["variacao_fluxo_liquido"] == Decimal("1.50")
    assert got[("3", None)]["variacao_fluxo_liquido"] == Decimal("0.00")
    assert got[("3", None)]["vl_patrim_liq_anterior"] == Decimal("7.00")

    # Values changed, keys kept (the common restatement): one row, the changed one.
    same_keys = frame(
        [
            row("1", None, 2, "10.00"),
            row("2", "S1", 2, "5.00", captc="2.25"),
            row("3", None, 3, "7.00"),
        ]
    )
    (only,) = [
        r.asDict() for r in restatement_changes(before, same_keys, JAN, restatement).collect()
    ]
    assert (only["cnpj_fundo"], only["mudanca"], only["colunas_alteradas"]) == (
        "2",
        "alterada",
        "captc_dia",
    )
    assert only["variacao_fluxo_liquido"] == Decimal("2.25")
    assert only["dh_processamento"] == dt.datetime(2025, 2, 1)  # Spark: naive UTC

"""gold_breakdowns, the gold_fundos view and gold's catalog metadata, through the pipeline.

Three months (2024-01..03) of generated funds and their fake registry go through the whole
chain once for the module. Every figure is recomputed here from the oracle's gold
(reference.py, from the very CSVs served) and the registry the fake meant to publish.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from dagster import AssetKey, materialize

from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.assets.registry import CvmRegistry, fund_registry
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.registry import RegistryFiles, registry_files
from cvm210_assets.fake_cvm.server import CAD_PATH, FakeCvm
from cvm210_assets.lake.schemas import GOLD_BREAKDOWNS
from cvm210_assets.sql import execute, gold_fundos_sql, spark_view_statements
from cvm210_assets_tests.conftest import (
    Pipeline,
    check_results,
    make_pipeline,
    materialization_metadata,
)
from cvm210_assets_tests.reference import GoldRow, expected_month

MONTHS = ("2024-01", "2024-02", "2024-03")
FLOWS = ("total_captacao", "total_resgate", "fluxo_liquido")


class Flow:
    """The pipeline run once for the module: the lake, each month's oracle and results."""

    def __init__(self, pipeline: Pipeline, files: RegistryFiles) -> None:
        self.pipeline = pipeline
        self.files = files
        self.gold: dict[str, list[GoldRow]] = {}
        self.results: dict[str, Any] = {}


@pytest.fixture(scope="module")
def flow(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    from cvm210_assets.definitions import ASSETS

    csvs = {}
    for key in MONTHS:
        ano, mes = map(int, key.split("-"))
        spec = MonthSpec(ano, mes, "c", n_funds=120, seed=11, subclass_share=0.05)
        csvs[key] = generate_month(spec)
    files = registry_files(csvs.values(), seed=11)
    with FakeCvm() as fake:
        for key, csv in csvs.items():
            fake.publish_month(*map(int, key.split("-")), csv)
        fake.publish_registry(files)
        pipeline = make_pipeline(str(tmp_path_factory.mktemp("flow") / "lake"), fake.base_url)
        pipeline.resources["cvm_registry"] = CvmRegistry(
            zip_url=fake.url(f"{CAD_PATH}/registro_fundo_classe.zip")
        )
        flow = Flow(pipeline, files)
        materialize([fund_registry], resources=pipeline.resources, instance=pipeline.instance)
        for key in MONTHS:
            flow.results[key] = materialize(
                [*ASSETS, gold_breakdowns],
                partition_key=key,
                resources=pipeline.resources,
                instance=pipeline.instance,
            )
            flow.gold[key] = expected_month(csvs[key], *map(int, key.split("-"))).gold
        yield flow


def _entry(files: RegistryFiles, row: GoldRow) -> dict[str, Any]:
    """The registry entry a gold row belongs to: its subclass's, else its class's."""
    return (
        files.expected.get((row.cnpj_fundo, row.id_subclasse))
        or files.expected.get((row.cnpj_fundo, None))
        or {}
    )


def _monthly(files: RegistryFiles, gold: list[GoldRow]) -> dict[tuple, dict[str, Any]]:
    """(escopo, dimensao, valor) -> fundos, Σ flows and Σ patrimonio_inicial, by hand."""
    groups: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {"fundos": 0, **{c: Decimal("0.00") for c in (*FLOWS, "patrimonio_inicial")}}
    )
    for row in gold:
        entry = _entry(files, row)
        scopes = ["todos"] if entry.get("fundo_de_cotas") else ["todos", "sem_fundos_de_cotas"]
        for escopo in scopes:
            keys = [("mercado", "total")] + [
                (d, entry.get(d) or "não informado") for d in ("classe", "gestor", "administrador")
            ]
            for dimensao, valor in keys:
                group = groups[(escopo, dimensao, valor)]
                group["fundos"] += 1
                for column in (*FLOWS, "patrimonio_inicial"):
                    group[column] += getattr(row, column)
    return dict(groups)


def _ratio(flow: Decimal, start: Decimal) -> float | None:
    return float(flow / start) if start > 0 else None


def _rows(flow: Flow, key: str) -> dict[tuple, dict[str, Any]]:
    return {
        (r["escopo"], r["dimensao"], r["valor"]): r
        for r in flow.pipeline.rows("gold_breakdowns", key)
    }


def _close(got: float | None, want: float | None) -> bool:
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= 1e-9 * max(1.0, abs(want))


def test_the_months_breakdowns_equal_sums_of_the_oracles_gold(flow: Flow) -> None:
    got = _rows(flow, "2024-03")
    want = _monthly(flow.files, flow.gold["2024-03"])
    assert got.keys() == want.keys()
    # Both scopes, all four dimensions, and funds of funds present to be left out.
    assert {k[1] for k in got} == {"mercado", "classe", "gestor", "administrador"}
    todos, sem = (
        got[("todos", "mercado", "total")],
        got[("sem_fundos_de_cotas", "mercado", "total")],
    )
    assert sem["fundos"] < todos["fundos"]
    assert ("todos", "classe", "não informado") in got  # funds the registry leaves out
    for key, w in want.items():
        g = got[key]
        assert {c: g[c] for c in ("fundos", *FLOWS, "patrimonio_inicial")} == w, key
        assert _close(
            g["crescimento_organico"], _ratio(w["fluxo_liquido"], w["patrimonio_inicial"])
        )


def test_rolling_windows_sum_complete_windows_and_are_null_when_months_are_missing(
    flow: Flow,
) -> None:
    january, february, march = (_monthly(flow.files, flow.gold[k]) for k in MONTHS)
    got = _rows(flow, "2024-03")
    for key, row in got.items():
        months = [m.get(key) for m in (january, february, march)]
        for column in FLOWS:
            assert row[f"{column}_3m"] == sum((m[column] for m in months if m), Decimal("0.00")), (
                key,
                column,
            )
        start = january[key]["patrimonio_inicial"] if key in january else Decimal("0.00")
        assert row["patrimonio_inicial_3m"] == start, key
        assert _close(row["crescimento_organico_3m"], _ratio(row["fluxo_liquido_3m"], start))
        assert row["meses_3m"] == 3
        # Only three of the twelve months are in gold: the 12-month window is not made up.
        assert row["meses_12m"] == 3
        assert row["fluxo_liquido_12m"] is None and row["crescimento_organico_12m"] is None
    # January's 3-month window lacks 2023-11 and 2023-12.
    first = _rows(flow, "2024-01")
    assert {r["meses_3m"] for r in first.values()} == {1}
    assert all(r["fluxo_liquido_3m"] is None for r in first.values())
    assert check_results(flow.results["2024-03"])["gold_breakdowns:groups_add_up_to_market"]


def test_gold_fundos_carries_each_funds_registry_entry_in_duckdb_and_spark(
    flow: Flow, spark
) -> None:
    _, rows = execute(
        flow.pipeline.tables,
        "SELECT cnpj_fundo, id_subclasse, nome, classe, gestor, administrador"
        " FROM cvm_p210.gold_fundos WHERE ano = 2024 AND mes = 3",
    )
    got = {(r[0], r[1]): r[2:] for r in rows}
    gold = flow.gold["2024-03"]
    assert len(rows) == len(gold)  # one row of gold, one row of the view
    for row in gold:
        entry = _entry(flow.files, row)
        want = tuple(entry.get(c) for c in ("nome", "classe", "gestor", "administrador"))
        assert got[(row.cnpj_fundo, row.id_subclasse)] == want
    assert any(row.id_subclasse for row in gold)
    _, rows = execute(
        flow.pipeline.tables,
        "SELECT cnpj_fundo, id_subclasse, rendimento, residuo_conciliacao"
        " FROM cvm_p210.gold_fundos WHERE ano = 2024 AND mes = 3",
    )
    assert {(r[0], r[1]): r[2:] for r in rows} == {
        (g.cnpj_fundo, g.id_subclasse): (g.rendimento, g.residuo_conciliacao) for g in gold
    }

    # The same SELECT on Spark (Databricks' views are rendered from it) gives the same rows.
    tables = flow.pipeline.tables
    for table in ("gold_kpis", "fund_registry"):
        spark.createDataFrame(tables.dataset(table).to_table()).createOrReplaceTempView(
            f"t_{table}"
        )
    relations = {"gold_kpis": "t_gold_kpis", "fund_registry": "t_fund_registry"}
    on_spark = spark.sql(
        f"SELECT cnpj_fundo, id_subclasse, nome, classe, gestor, administrador"
        f" FROM ({gold_fundos_sql(relations)}) WHERE ano = 2024 AND mes = 3"
    ).collect()
    assert {(r[0], r[1]): tuple(r[2:]) for r in on_spark} == got
    assert any(
        s.startswith("CREATE OR REPLACE VIEW cvm_p210.gold_fundos AS SELECT g.*")
        for s in spark_view_statements(relations)
    )


def test_gold_shows_the_market_net_flow_chart_and_the_largest_outflows(flow: Flow) -> None:
    metadata = materialization_metadata(flow.results["2024-03"], "gold_kpis")
    chart = metadata["net_flow_12_months"]  # markdown, which the UI renders: no JSON spec
    assert chart.startswith("**Fluxo líquido do mercado, R$ (2024-01 a 2024-03)**")
    want = [(k, sum((g.fluxo_liquido for g in flow.gold[k]), Decimal("0.00"))) for k in MONTHS]
    rows = [line.split("|") for line in chart.splitlines() if line.startswith("| 20")]
    assert [(c[1].strip(), Decimal(c[2].strip().replace(",", ""))) for c in rows] == want
    # January's chart only has January: the months the lake held then.
    january = materialization_metadata(flow.results["2024-01"], "gold_kpis")
    assert [
        line.split("|")[1].strip()
        for line in january["net_flow_12_months"].splitlines()
        if line.startswith("| 20")
    ] == ["2024-01"]

    lines = metadata["largest_net_outflows"].splitlines()[2:]
    cells = [line.split("|") for line in lines]
    shown = [(c[1].strip(), Decimal(c[4].strip())) for c in cells]
    outflows = sorted(
        (g for g in flow.gold["2024-03"] if g.fluxo_liquido < 0), key=lambda g: g.fluxo_liquido
    )
    assert shown == [(g.cnpj_fundo, g.fluxo_liquido) for g in outflows[:10]]
    # Ratios as percentages, not 17 decimals.
    assert all(re.fullmatch(r"-?\d+\.\d\d %", c[7].strip()) for c in cells), cells
    for dimension in ("classe", "gestor"):
        table = materialization_metadata(flow.results["2024-03"], "gold_breakdowns")[
            f"net_flow_by_{dimension}"
        ]
        ratios = [line.split("|")[5:7] for line in table.splitlines()[2:]]
        assert ratios and all(
            re.fullmatch(r"(-?\d+\.\d\d %)?", r.strip()) for pair in ratios for r in pair
        ), table


def test_the_new_tables_hold_the_columns_their_catalog_entry_declares(flow: Flow) -> None:
    from cvm210_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for asset in ("fund_registry", "gold_breakdowns", "gold_kpis"):
        node = graph.get(AssetKey(asset))
        declared = [c.name for c in node.metadata["dagster/column_schema"].columns]
        written = flow.pipeline.tables.dataset(asset).schema.names
        assert sorted(written) == sorted(declared), asset
    assert [f.name for f in GOLD_BREAKDOWNS][-2:] == ["ano", "mes"]
    gold = {
        c.name: c
        for c in graph.get(AssetKey("gold_kpis")).metadata["dagster/column_schema"].columns
    }
    assert gold["residuo_conciliacao"].type == "decimal(27,2)"
    assert "docs/analytics.md" in gold["rendimento"].description
    row = flow.pipeline.rows("gold_breakdowns", "2024-03")[0]
    assert isinstance(row["dh_processamento"], dt.datetime)


def test_breakdowns_are_skipped_when_no_input_changed(flow: Flow) -> None:
    from cvm210_assets.definitions import ASSETS

    pipeline = flow.pipeline
    version = pipeline.tables.version("gold_breakdowns")
    rerun = materialize(
        [*ASSETS, gold_breakdowns],
        partition_key="2024-02",
        resources=pipeline.resources,
        instance=pipeline.instance,
    )
    assert materialization_metadata(rerun, "gold_breakdowns")["cvm210/unchanged"] is True
    assert pipeline.tables.version("gold_breakdowns") == version

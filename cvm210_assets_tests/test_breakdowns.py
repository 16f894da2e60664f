"""gold_breakdowns, gold_pares (and the peer alert rule on it), the gold_fundos view and gold's
catalog metadata, through the pipeline.

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

from cvm210_assets.alerts.channels import OutflowRules
from cvm210_assets.assets.alerts import outflow_alerts
from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.assets.registry import CvmRegistry, fund_registry
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.registry import RegistryFiles, registry_files
from cvm210_assets.fake_cvm.server import CAD_PATH, FakeCvm
from cvm210_assets.gold_rules import PARES_MINIMO
from cvm210_assets.lake.schemas import GOLD_BREAKDOWNS, GOLD_PARES
from cvm210_assets.partitions import Month
from cvm210_assets.report import render_report, report_data
from cvm210_assets.sql.duckdb_engine import execute
from cvm210_assets.sql.spark import spark_view_statements
from cvm210_assets.sql.views import PARES_COLUMNS, gold_fundos_sql
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
    columns = "cnpj_fundo, id_subclasse, nome, classe, gestor, administrador, posicao_classe"
    _, rows = execute(
        flow.pipeline.tables,
        f"SELECT {columns} FROM cvm_p210.gold_fundos WHERE ano = 2024 AND mes = 3",
    )
    got = {(r[0], r[1]): r[2:] for r in rows}
    gold = flow.gold["2024-03"]
    assert len(rows) == len(gold)  # one row of gold, one row of the view
    for row in gold:
        entry = _entry(flow.files, row)
        want = tuple(entry.get(c) for c in ("nome", "classe", "gestor", "administrador"))
        assert got[(row.cnpj_fundo, row.id_subclasse)][:4] == want
    assert any(row.id_subclasse for row in gold)
    _, rows = execute(
        flow.pipeline.tables,
        "SELECT cnpj_fundo, id_subclasse, rendimento, residuo_conciliacao"
        " FROM cvm_p210.gold_fundos WHERE ano = 2024 AND mes = 3",
    )
    assert {(r[0], r[1]): r[2:] for r in rows} == {
        (g.cnpj_fundo, g.id_subclasse): (g.rendimento, g.residuo_conciliacao) for g in gold
    }

    # The same SELECT on Spark (Databricks' views are rendered from it) gives the same rows,
    # with gold_pares joined (subclasses: NULL-safe) and before it exists (NULL standings).
    tables = flow.pipeline.tables
    for table in ("gold_kpis", "fund_registry", "gold_pares"):
        spark.createDataFrame(tables.dataset(table).to_table()).createOrReplaceTempView(
            f"t_{table}"
        )
    relations = {t: f"t_{t}" for t in ("gold_kpis", "fund_registry", "gold_pares")}
    on_spark = spark.sql(
        f"SELECT {columns} FROM ({gold_fundos_sql(relations)}) WHERE ano = 2024 AND mes = 3"
    ).collect()
    assert {(r[0], r[1]): tuple(r[2:]) for r in on_spark} == got
    assert any(v[-1] is not None for v in got.values())
    del relations["gold_pares"]
    without = spark.sql(
        f"SELECT {columns} FROM ({gold_fundos_sql(relations)}) WHERE ano = 2024 AND mes = 3"
    ).collect()
    assert {(r[0], r[1]): tuple(r[2:]) for r in without} == {
        k: (*v[:-1], None) for k, v in got.items()
    }
    assert any(
        s.startswith("CREATE OR REPLACE VIEW cvm_p210.gold_fundos AS SELECT g.*")
        for s in spark_view_statements(relations)
    )


def _standing(files: RegistryFiles, gold: list[GoldRow]) -> dict[tuple, dict[str, Any]]:
    """Each gold row's peers, place and percentile in its class and manager, by hand: place =
    1 + the group's funds with a strictly lower fluxo_liquido_pct_pl."""
    groups: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for row in gold:
        for group in ("classe", "gestor"):
            value = _entry(files, row).get(group)
            if value is not None and row.fluxo_liquido_pct_pl is not None:
                groups[(group, value)].append(row.fluxo_liquido_pct_pl)
    want = {}
    for row in gold:
        standing: dict[str, Any] = {}
        for group in ("classe", "gestor"):
            value = _entry(files, row).get(group)
            ratios = groups.get((group, value), [])
            ranked = row.fluxo_liquido_pct_pl is not None and value is not None
            n = len(ratios) if ranked else None
            place = 1 + sum(r < row.fluxo_liquido_pct_pl for r in ratios) if ranked else None
            enough = ranked and n >= PARES_MINIMO
            standing[f"pares_{group}"] = n
            standing[f"posicao_{group}"] = place if enough else None
            standing[f"percentil_{group}"] = (place - 1) / (n - 1) if enough else None
        want[(row.cnpj_fundo, row.id_subclasse)] = standing
    return want


def test_gold_pares_ranks_each_fund_in_its_class_and_manager_and_gold_fundos_shows_it(
    flow: Flow,
) -> None:
    gold = flow.gold["2024-03"]
    want = _standing(flow.files, gold)
    written = flow.pipeline.rows("gold_pares", "2024-03")
    got = {(r["cnpj_fundo"], r["id_subclasse"]): r for r in written}
    assert got.keys() == want.keys() and len(written) == len(gold)
    for key, w in want.items():
        g = got[key]
        for column, value in w.items():
            assert _close(g[column], value) if "percentil" in column else g[column] == value, (
                key,
                column,
            )
    # The fake's classes and managers are large enough to rank, and some funds have no class.
    for group in ("classe", "gestor"):
        assert sum(w[f"percentil_{group}"] is not None for w in want.values()) > len(gold) // 2
        assert {w[f"percentil_{group}"] for w in want.values()} >= {0.0, 1.0}
    assert any(w["pares_classe"] is None for w in want.values())

    _, rows = execute(
        flow.pipeline.tables,
        f"SELECT cnpj_fundo, id_subclasse, {', '.join(PARES_COLUMNS)}"
        " FROM cvm_p210.gold_fundos WHERE ano = 2024 AND mes = 3",
    )
    assert len(rows) == len(gold)
    shown = {(r[0], r[1]): dict(zip(PARES_COLUMNS, r[2:], strict=True)) for r in rows}
    assert shown == {k: {c: got[k][c] for c in PARES_COLUMNS} for k in got}
    _, (ranked,) = execute(
        flow.pipeline.tables,
        "SELECT count(percentil_classe) FROM cvm_p210.gold_pares WHERE ano = 2024 AND mes = 3",
    )
    metadata = materialization_metadata(flow.results["2024-03"], "gold_breakdowns")
    assert metadata["pares_ranked_classe"] == ranked[0]
    assert metadata["pares_rows"] == len(gold)


def test_the_report_shows_each_large_outflows_percentiles_in_class_and_manager(flow: Flow) -> None:
    data = report_data(flow.pipeline.tables, Month(2024, 3))
    standing = _standing(flow.files, flow.gold["2024-03"])
    assert data["outflows"]
    for row in data["outflows"]:
        want = standing[(row["cnpj_fundo"], row["id_subclasse"])]
        for group in ("classe", "gestor"):
            assert row[f"pares_{group}"] == want[f"pares_{group}"]
            assert _close(row[f"percentil_{group}"], want[f"percentil_{group}"])
    page = render_report(Month(2024, 3), data, dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc))
    assert "<th>Percentile in class</th><th>Percentile in manager</th>" in page
    ranked = next(r for r in data["outflows"] if r["percentil_classe"] is not None)
    assert f"{ranked['percentil_classe'] * 100:.2f} % of {ranked['pares_classe']}</td>" in page


PEER_RULES = """min_net_assets: 0
net_outflow_pct: null
net_outflow_amount: null
consecutive_outflow_days: null
holders_drop_pct: null
peer_percentile: 25
peer_percentile_months: 2
peer_group: classe
"""


def test_the_peer_rule_alerts_funds_in_their_class_worst_quarter_two_months_running(
    flow: Flow, tmp_path
) -> None:
    pipeline = flow.pipeline
    rules = tmp_path / "rules.yaml"
    rules.write_text(PEER_RULES)
    resources = {**pipeline.resources, "outflow_rules": OutflowRules.from_file(str(rules))}

    def run():
        return materialize(
            [outflow_alerts],
            partition_key="2024-03",
            resources=resources,
            instance=pipeline.instance,
        )

    first = run()
    february, march = (_standing(flow.files, flow.gold[k]) for k in ("2024-02", "2024-03"))
    ratios = {k: {(g.cnpj_fundo, g.id_subclasse): g.fluxo_liquido_pct_pl for g in flow.gold[k]}
              for k in ("2024-02", "2024-03")}  # fmt: skip

    def worst(standing: dict[str, Any], ratio: Decimal | None) -> bool:
        place, n = standing["posicao_classe"], standing["pares_classe"]
        return place is not None and (place - 1) * 100 <= 25 * (n - 1) and ratio < 0

    want = {
        key
        for key, s in march.items()
        if worst(s, ratios["2024-03"][key])
        and key in february
        and worst(february[key], ratios["2024-02"][key])
    }
    alerts = pipeline.rows("outflow_alerts", "2024-03")
    assert want and {(a["cnpj_fundo"], a["id_subclasse"]) for a in alerts} == want
    assert {a["regras"] for a in alerts} == {"peer_percentile"}
    for alert in alerts:
        key = (alert["cnpj_fundo"], alert["id_subclasse"])
        (detail,) = alert["detalhes"]
        assert detail["valor"] == f"{march[key]['percentil_classe'] * 100:,.2f}"
        assert (
            f"2024-02 place {february[key]['posicao_classe']} of {february[key]['pares_classe']}"
            in detail["texto"]
        )
    assert materialization_metadata(first, "outflow_alerts")["alerts_peer_percentile"] == len(want)
    # The month's fingerprint holds the two months' gold_pares: unchanged, nothing is redone.
    assert materialization_metadata(run(), "outflow_alerts")["cvm210/unchanged"] is True


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
    # gold_pares, written by gold_breakdowns' step, is in its catalog entry with descriptions.
    pares = graph.get(AssetKey("gold_breakdowns")).metadata["pares_columns"].schema.columns
    assert [c.name for c in pares] == flow.pipeline.tables.dataset("gold_pares").schema.names
    assert all(c.description for c in pares)
    assert set(PARES_COLUMNS) <= {f.name for f in GOLD_PARES}
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

    def rerun() -> bool:
        result = materialize(
            [*ASSETS, gold_breakdowns],
            partition_key="2024-02",
            resources=pipeline.resources,
            instance=pipeline.instance,
        )
        return materialization_metadata(result, "gold_breakdowns")["cvm210/unchanged"]

    # March's gold arrived after February's breakdowns: the registry's event reads it (a key
    # reporting in March did not close in February), so February is redone once.
    assert rerun() is False
    version = pipeline.tables.version("gold_breakdowns")
    assert rerun() is True
    assert pipeline.tables.version("gold_breakdowns") == version

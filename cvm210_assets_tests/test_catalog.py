"""The catalog documents itself: what Dagster's UI shows for each table, without running it.

(What a gold materialization shows, its chart and largest outflows, is checked against the
oracle in test_breakdowns.py, on the module's pipeline run.)
"""

from __future__ import annotations

from decimal import Decimal

from dagster import AssetKey, TableSchema, TimeWindowPartitionMapping

from cvm210_assets.assets.catalog import net_flow_markdown, percent

# Every table asset, with the tables each is computed from.
TABLE_ASSETS = {
    "bronze": {"s3_csv_partition"},
    "silver": {"bronze"},
    "gold_kpis": {"silver"},
    "fund_registry": set(),  # from CVM's registry files, read by the asset itself
    "gold_breakdowns": {"gold_kpis", "fund_registry"},
    "outflow_alerts": {"silver", "gold_kpis", "fund_registry", "gold_breakdowns"},
    "alert_deliveries": {"outflow_alerts"},
}


def test_every_table_asset_has_a_description_a_described_column_schema_and_lineage() -> None:
    from cvm210_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for asset, parents in TABLE_ASSETS.items():
        node = graph.get(AssetKey(asset))
        assert node.description and len(node.description) > 40, asset
        schema = node.metadata["dagster/column_schema"]
        assert isinstance(schema, TableSchema), asset
        undescribed = [c.name for c in schema.columns if not (c.description or "").strip()]
        assert not undescribed, (asset, undescribed)
        assert all(c.type for c in schema.columns), asset
        assert node.metadata["dagster/table_name"].startswith("cvm_p210."), asset
        assert {p.to_user_string() for p in node.parent_keys} == parents, asset


def test_breakdowns_declare_the_twelve_months_of_gold_they_read() -> None:
    from cvm210_assets.assets.breakdowns import gold_breakdowns

    mapping = gold_breakdowns.get_partition_mapping(AssetKey("gold_kpis"))
    assert isinstance(mapping, TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-11, 0)


def test_the_net_flow_chart_is_markdown_with_a_bar_per_month_and_exact_values() -> None:
    chart = net_flow_markdown(
        [
            ("2024-11", Decimal("-1234567.89")),
            ("2024-12", Decimal("-1234.56")),
            ("2025-01", Decimal("617283.94")),
        ]
    )
    lines = chart.splitlines()
    assert lines[0] == "**Fluxo líquido do mercado, R$ (2024-11 a 2025-01)** ▁▆█"
    assert lines[2:] == [
        "| mês | fluxo líquido (R$) | saídas | entradas |",
        "|---|---:|---:|:---|",
        "| 2024-11 | -1,234,567.89 | ████████████ |  |",
        "| 2024-12 | -1,234.56 | █ |  |",  # too small to draw: one block, still seen
        "| 2025-01 | 617,283.94 |  | ██████ |",
    ]
    assert "{" not in chart  # no JSON: Dagster's UI renders this
    assert net_flow_markdown([]) == "**Fluxo líquido do mercado, R$**: sem meses no lago ainda."
    assert net_flow_markdown([("2025-01", Decimal("0.00"))]).endswith("| 2025-01 | 0.00 |  |  |")


def test_ratios_show_as_percentages() -> None:
    assert percent(-0.12345678901234567) == "-12.35 %"
    assert percent(0.5) == "50.00 %"
    assert percent(None) is None

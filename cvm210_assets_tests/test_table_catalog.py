"""The catalog of tables is the one list: the assets, `cvm210 sql`, its help and the schemas
agree with it (no Spark started)."""

from __future__ import annotations

import re

import pytest
from dagster import AssetKey

from cvm210_assets.alerts.channels import delivery_log_schema
from cvm210_assets.cli import main
from cvm210_assets.lake import schemas
from cvm210_assets.lake.table_catalog import (
    JOINED_VIEWS,
    LAKE_TABLES,
    PARTITION_COLUMNS,
    SILVER_TABLE,
    TABLES,
    sql_names,
    view_names,
)
from cvm210_assets.sql.views import JOINED_VIEWS as SQL_JOINED_VIEWS
from cvm210_assets.sql.views import VIEWS
from cvm210_assets.transforms.alerts import OUTFLOW_ALERTS

# Each table's columns as its writer declares them (bronze: its lineage; the CSV's come as read).
COLUMNS = {
    "bronze": schemas.BRONZE_LINEAGE.fieldNames(),
    "silver": schemas.SILVER.fieldNames(),
    "silver_rejects": schemas.SILVER_REJECTS.fieldNames(),
    "silver_changes": schemas.SILVER_CHANGES.fieldNames(),
    "gold_kpis": schemas.GOLD.fieldNames(),
    "gold_breakdowns": schemas.GOLD_BREAKDOWNS.fieldNames(),
    "gold_pares": schemas.GOLD_PARES.fieldNames(),
    "outflow_alerts": OUTFLOW_ALERTS.fieldNames(),
    "alert_deliveries": delivery_log_schema().names,
    "fund_registry": schemas.FUND_REGISTRY.fieldNames(),
}


def test_every_table_is_named_once() -> None:
    for field in ("name", "view"):
        names = [getattr(t, field) for t in LAKE_TABLES]
        assert len(names) == len(set(names)), field
    assert sorted(COLUMNS) == sorted(TABLES)


def test_each_table_asset_shows_its_catalog_sql_name_and_writes_its_side_tables() -> None:
    from cvm210_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    shown = {
        key.to_user_string(): graph.get(key).metadata["dagster/table_name"]
        for key in graph.get_all_asset_keys()
        if "dagster/table_name" in graph.get(key).metadata
    }
    # An asset shows the table named after it; the tables its step also writes name it.
    assert shown == {t.asset: t.sql_name for t in LAKE_TABLES if t.name == t.asset}
    assert all(graph.has(AssetKey(t.asset)) for t in LAKE_TABLES)


def test_cvm210_sql_knows_every_catalog_name() -> None:
    assert {f"cvm_p210.{v}" for v in (*VIEWS, *SQL_JOINED_VIEWS)} == set(view_names())
    assert {VIEWS[t.view].table for t in LAKE_TABLES} == set(TABLES)
    assert all(VIEWS[t.view].table == t.name for t in LAKE_TABLES)
    for view in JOINED_VIEWS:
        needs, _ = SQL_JOINED_VIEWS[view.view]
        assert needs == tuple(t.name for t in view.tables)


def test_the_sql_help_lists_every_table_and_view(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["sql", "--help"])
    assert done.value.code == 0
    words = set(re.findall(r"[\w.]+", capsys.readouterr().out))
    assert set(sql_names()) <= words


@pytest.mark.parametrize("table", LAKE_TABLES, ids=lambda t: t.name)
def test_partition_sort_and_zorder_columns_are_the_tables_own(table) -> None:
    columns = set(COLUMNS[table.name])
    monthly = set(PARTITION_COLUMNS) <= columns
    assert table.partition_by == (PARTITION_COLUMNS if monthly else ())
    assert {*table.cluster_by, *table.zorder_by} <= columns - set(PARTITION_COLUMNS)


def test_silver_files_are_sorted_by_its_key() -> None:
    assert SILVER_TABLE.cluster_by == schemas.SILVER_KEY

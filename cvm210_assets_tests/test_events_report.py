"""Events outside Spark: what analysts read (cvm_p210.gold_fundos and the report, over a small
lake that delta-rs writes) and the fingerprints that recompute gold for them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake
from pyspark.sql.pandas.types import to_arrow_schema

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.alerts.config import AlertRules
from cvm210_assets.assets.alerts import OutflowAlerts
from cvm210_assets.assets.bronze import Bronze
from cvm210_assets.assets.common import is_current
from cvm210_assets.assets.gold import GoldKpis
from cvm210_assets.assets.silver import Silver
from cvm210_assets.lake.schemas import FUND_REGISTRY, GOLD
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.lake.table_catalog import GOLD_TABLE, REGISTRY_TABLE
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.report import render_report, report_data
from cvm210_assets.sql.duckdb_engine import connect, run
from cvm210_assets.transforms.events import REGRAS_EVENTOS
from cvm210_assets_tests.conftest import make_pipeline

MARCH = Month(2024, 3)


def _write(tables: DeltaRsTables, table: str, schema, rows: list[dict]) -> None:
    arrow = to_arrow_schema(schema, timezone="UTC")
    full = [{f.name: r.get(f.name) for f in schema} for r in rows]
    write_deltalake(tables.uri(table), pa.Table.from_pylist(full, schema=arrow))


def _lake(tmp_path: Path) -> DeltaRsTables:
    tables = DeltaRsTables(LocalStorage(tmp_path))
    gold = [
        {"cnpj_fundo": "11111111000111", "evento": "transferencia",
         "contraparte_cnpj": "22222222000122", "contraparte_id_subclasse": "S1",
         "fluxo_liquido": Decimal("-100000000.00")},
        {"cnpj_fundo": "22222222000122", "id_subclasse": "S1", "evento": "transferencia",
         "contraparte_cnpj": "11111111000111", "fluxo_liquido": Decimal("100000000.00")},
        {"cnpj_fundo": "33333333000133", "fluxo_liquido": Decimal("-5000000.00")},
        # cancelled in April: March, its last month, is its encerramento; February is not
        {"cnpj_fundo": "44444444000144", "mes": 2, "fluxo_liquido": Decimal("-1000000.00")},
        {"cnpj_fundo": "44444444000144", "fluxo_liquido": Decimal("-9000000.00")},
    ]  # fmt: skip
    for row in gold:
        row |= {"total_captacao": Decimal(0), "total_resgate": Decimal(0)}
        row |= {"ano": 2024, "mes": row.get("mes", 3)}
    _write(tables, GOLD_TABLE.name, GOLD, gold)
    registry = [
        {"cnpj_fundo": "11111111000111", "nome": "Fundo Antigo FI"},
        {"cnpj_fundo": "33333333000133", "situacao": "CANCELADA",  # two years later
         "data_cancelamento": dt.date(2026, 3, 2)},
        {"cnpj_fundo": "44444444000144", "nome": "Fundo Liquidado FI", "situacao": "CANCELADA",
         "data_cancelamento": dt.date(2024, 4, 10)},
    ]  # fmt: skip
    _write(tables, REGISTRY_TABLE.name, FUND_REGISTRY, registry)
    return tables


def test_gold_fundos_and_the_report_show_the_months_events(tmp_path: Path) -> None:
    tables = _lake(tmp_path)
    _, rows = run(
        connect(tables),
        "SELECT cnpj_fundo, mes, evento, contraparte_cnpj, contraparte_id_subclasse, nome,"
        " evento_registro FROM cvm_p210.gold_fundos ORDER BY cnpj_fundo, mes",
    )
    assert rows == [
        ("11111111000111", 3, "transferencia", "22222222000122", "S1", "Fundo Antigo FI", None),
        ("22222222000122", 3, "transferencia", "11111111000111", None, None, None),
        ("33333333000133", 3, None, None, None, None, None),
        ("44444444000144", 2, None, None, None, "Fundo Liquidado FI", None),
        ("44444444000144", 3, None, None, None, "Fundo Liquidado FI", "encerramento"),
    ]
    data = report_data(tables, MARCH)
    assert [(e["cnpj_fundo"], e["evento"], e["fluxo_liquido"]) for e in data["events"]] == [
        ("11111111000111", "transferencia", Decimal("-100000000.00")),
        ("44444444000144", "encerramento", Decimal("-9000000.00")),
        ("22222222000122", "transferencia", Decimal("100000000.00")),
    ]
    page = render_report(MARCH, data, dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc))
    events = page.split("<h2>Events")[1]
    assert "11.111.111/0001-11" in events and "22.222.222/0001-22 / S1" in events
    assert "Fundo Antigo FI" in events and "33.333.333/0001-33" not in events
    assert "liquidation (encerramento)" in events and "44.444.444/0001-44" in events


def test_a_registry_written_before_its_dates_shows_no_registry_event(tmp_path: Path) -> None:
    # A lake whose fund_registry predates data_situacao and data_cancelamento: the view and
    # the report still work, with gold's events alone, until the registry's next run.
    tables = _lake(tmp_path)
    dates = ("data_situacao", "data_cancelamento")
    columns = [c for c in FUND_REGISTRY.fieldNames() if c not in dates]
    write_deltalake(
        tables.uri(REGISTRY_TABLE.name),
        tables.dataset(REGISTRY_TABLE.name).to_table(columns=columns),
        mode="overwrite",
        schema_mode="overwrite",
    )
    _, rows = run(
        connect(tables),
        "SELECT count(*), count(evento_registro), count(data_cancelamento)"
        " FROM cvm_p210.gold_fundos",
    )
    assert rows == [(5, 0, 0)]
    events = report_data(tables, MARCH)["events"]
    assert [e["evento"] for e in events] == ["transferencia", "transferencia"]


def test_a_month_written_before_events_is_recomputed_from_silver_alone(tmp_path: Path) -> None:
    # gold's and the alerts' fingerprints name the rules' version; bronze's and silver's do not.
    lake = make_pipeline(str(tmp_path / "lake"), "http://127.0.0.1:1").resources["lake"]
    upstream = {"source_sha256": "abc", "csv_sha256": "abc"}
    before = {"source_sha256": "abc", "versao_pipeline": PIPELINE_VERSION}
    for asset in (GoldKpis(), OutflowAlerts(AlertRules())):
        wanted = asset.wanted(lake, MARCH, upstream)
        assert wanted["regras_eventos"] == REGRAS_EVENTOS
        assert not is_current(before, wanted)
    for asset in (Bronze(), Silver()):
        assert is_current(before, asset.wanted(lake, MARCH, upstream))

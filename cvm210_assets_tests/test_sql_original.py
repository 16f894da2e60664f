"""The original design's SQL statements, run as written through `cvm210 sql` on a lake that the
pipeline filled, compared with the oracle (reference.py) or with Delta's own log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from cvm210_assets.cli import main
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.maintenance import keep_time_travel
from cvm210_assets.lake.schemas import GOLD
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.lake.table_catalog import TABLES
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.sql.charts import chart_data
from cvm210_assets.sql.duckdb_engine import execute
from cvm210_assets.sql.render import render
from cvm210_assets.sql.spark import run_spark
from cvm210_assets.sql.views import VIEWS
from cvm210_assets_tests.conftest import fragment_month, make_pipeline
from cvm210_assets_tests.expectations import assert_silver
from cvm210_assets_tests.reference import ExpectedMonth, GoldRow, diff_silver, expected_month

BY_INFLOWS_AND_OUTFLOWS = """SELECT CNPJ_FUNDO, dias_negociacao, total_captacao, total_resgate, fluxo_liquido, valor_total_movimentado
FROM cvm_p210.gold_cvm210_analytics ORDER BY valor_total_movimentado DESC;"""  # noqa: E501
LARGEST_NET_OUTFLOWS = """SELECT CNPJ_FUNDO, total_captacao, total_resgate, fluxo_liquido, patrimonio_medio
FROM cvm_p210.gold_cvm210_analytics WHERE fluxo_liquido < 0 ORDER BY fluxo_liquido ASC LIMIT 10;"""  # noqa: E501
MONTHLY_TREND = """SELECT ano, mes, SUM(total_captacao) AS monthly_inflow, SUM(total_resgate) AS monthly_redemption,
       SUM(fluxo_liquido) AS monthly_net_balance
FROM cvm_p210.gold_cvm210_analytics GROUP BY ano, mes ORDER BY ano DESC, mes DESC;"""  # noqa: E501
BEST_QUOTA_RETURNS = """SELECT CNPJ_FUNDO, variacao_cota_mes, patrimonio_medio
FROM cvm_p210.gold_cvm210_analytics ORDER BY variacao_cota_mes DESC LIMIT 20;"""
VERSION_1 = "SELECT * FROM cvm_p210.silver_inf_diario VERSION AS OF 1;"
AS_OF_JANUARY_10 = "SELECT * FROM cvm_p210.silver_inf_diario TIMESTAMP AS OF '2026-01-10';"
HISTORY = "DESCRIBE HISTORY cvm_p210.silver_inf_diario;"
OPTIMIZE = "OPTIMIZE cvm_p210.silver_inf_diario ZORDER BY (CNPJ_FUNDO);"
SILVER_ORDER = " ORDER BY cnpj_fundo, id_subclasse NULLS FIRST, dt_comptc"


@dataclass(frozen=True)
class FilledLake:
    """2024-03 (layout b), then 2025-01 (layout c, subclasses), then 2025-01 restated: silver
    versions 0, 1 and 2 (a MERGE)."""

    root: Path
    march: ExpectedMonth
    january: ExpectedMonth
    restated: ExpectedMonth

    @property
    def uri(self) -> str:
        return str(self.root)

    @property
    def tables(self) -> DeltaRsTables:
        return DeltaRsTables(LocalStorage(self.root))

    @property
    def gold(self) -> list[GoldRow]:
        return self.march.gold + self.restated.gold

    def copy(self, to: Path) -> FilledLake:
        """A copy to change (OPTIMIZE, RESTORE) without touching the module's lake."""
        shutil.copytree(self.root, to)
        return dataclasses.replace(self, root=to)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilledLake]:
    """One lake for the module, filled by the real pipeline (three runs) from the fake CVM."""
    march = generate_month(MonthSpec(2024, 3, "b", n_funds=120, seed=3, dirt=True))
    january = generate_month(MonthSpec(2025, 1, "c", n_funds=150, seed=4, dirt=True))
    restated = restate(january, seed=7, change_share=0.05, n_add=6, n_remove=4)
    root = tmp_path_factory.mktemp("original") / "lake"
    with FakeCvm() as fake:
        pipeline = make_pipeline(str(root), fake.base_url)
        for ano, mes, csv_bytes in ((2024, 3, march), (2025, 1, january), (2025, 1, restated)):
            fake.publish_month(ano, mes, csv_bytes)
            pipeline.run(f"{ano}-{mes:02d}")
    yield FilledLake(
        root,
        expected_month(march, 2024, 3),
        expected_month(january, 2025, 1),
        expected_month(restated, 2025, 1),
    )


def records(columns: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def cli(lake: FilledLake, statement: str, capsys, *options: str) -> tuple[int, str, str]:
    code = main(["sql", statement, "--lake", lake.uri, *options])
    out = capsys.readouterr()
    return code, out.out, out.err


def commit_times(lake: FilledLake, table: str) -> dict[int, dt.datetime]:
    history = DeltaTable(str(lake.root / table)).history()
    return {
        c["version"]: dt.datetime.fromtimestamp(c["timestamp"] / 1000, dt.timezone.utc)
        for c in history
    }


def silver_rows(lake: FilledLake, statement: str) -> list[dict[str, Any]]:
    return records(*execute(lake.tables, statement))


# --- the four gold statements -----------------------------------------------------------------


def test_funds_by_money_moved(lake: FilledLake) -> None:
    columns, rows = execute(lake.tables, BY_INFLOWS_AND_OUTFLOWS)

    assert columns == [
        "cnpj_fundo",
        "dias_negociacao",
        "total_captacao",
        "total_resgate",
        "fluxo_liquido",
        "valor_total_movimentado",
    ]
    expected = [
        (
            g.cnpj_fundo,
            g.dias_com_informe,
            g.total_captacao,
            g.total_resgate,
            g.fluxo_liquido,
            g.total_captacao + g.total_resgate,
        )
        for g in lake.gold
    ]
    assert sorted(rows) == sorted(expected)
    moved = [row[-1] for row in rows]
    assert moved == sorted(moved, reverse=True)
    assert all(isinstance(value, Decimal) for value in moved)


def test_largest_net_outflows(lake: FilledLake) -> None:
    rows = execute(lake.tables, LARGEST_NET_OUTFLOWS)[1]

    outflows = sorted((g for g in lake.gold if g.fluxo_liquido < 0), key=lambda g: g.fluxo_liquido)
    assert len(outflows) > 10
    assert [r[:4] for r in rows] == [
        (g.cnpj_fundo, g.total_captacao, g.total_resgate, g.fluxo_liquido) for g in outflows[:10]
    ]
    for row, g in zip(rows, outflows, strict=False):
        assert abs(row[4] - g.patrimonio_medio) <= Decimal("0.0000005")


def test_monthly_inflow_and_redemption(lake: FilledLake) -> None:
    columns, rows = execute(lake.tables, MONTHLY_TREND)

    assert columns == ["ano", "mes", "monthly_inflow", "monthly_redemption", "monthly_net_balance"]
    expected = []
    for month in (lake.restated, lake.march):  # ORDER BY ano DESC, mes DESC
        inflow = sum((g.total_captacao for g in month.gold), Decimal(0))
        outflow = sum((g.total_resgate for g in month.gold), Decimal(0))
        expected.append((month.ano, month.mes, inflow, outflow, inflow - outflow))
    assert rows == expected


def test_best_quota_returns_in_percent(lake: FilledLake) -> None:
    columns, rows = execute(lake.tables, BEST_QUOTA_RETURNS)

    assert columns == ["cnpj_fundo", "variacao_cota_mes", "patrimonio_medio"]
    ranked = sorted(
        (g for g in lake.gold if g.variacao_cota is not None),
        key=lambda g: g.variacao_cota,
        reverse=True,
    )[:20]
    assert [r[0] for r in rows] == [g.cnpj_fundo for g in ranked]
    for row, g in zip(rows, ranked, strict=True):
        expected = float(100 * g.variacao_cota)
        assert abs(row[1] - expected) <= 1e-9 * max(1.0, abs(expected))
        assert abs(row[2] - g.patrimonio_medio) <= Decimal("0.0000005")


def test_original_columns_come_from_gold_and_silver(lake: FilledLake) -> None:
    rows = records(
        *execute(
            lake.tables,
            "SELECT CNPJ_FUNDO, Id_Subclasse, ano, mes, Cota_Maxima, COTA_MINIMA,"
            " dh_geracao_analytics, dh_processamento, versao_pipeline"
            " FROM CVM_P210.GOLD_CVM210_ANALYTICS",
        )
    )
    quotas: dict[tuple, list[Decimal]] = {}
    for s in lake.march.silver + lake.restated.silver:
        if s.vl_quota is not None:
            quotas.setdefault((s.cnpj_fundo, s.id_subclasse, s.ano, s.mes), []).append(s.vl_quota)
    got = {(r["cnpj_fundo"], r["id_subclasse"], r["ano"], r["mes"]): r for r in rows}
    assert got.keys() == {(g.cnpj_fundo, g.id_subclasse, g.ano, g.mes) for g in lake.gold}
    assert any(len(set(q)) > 1 for q in quotas.values())
    for key, row in got.items():
        assert (row["cota_maxima"], row["cota_minima"]) == (
            (max(quotas[key]), min(quotas[key])) if key in quotas else (None, None)
        ), key
        assert row["dh_geracao_analytics"] == row["dh_processamento"] is not None
        assert row["versao_pipeline"]

    silver = silver_rows(
        lake,
        "SELECT dh_processamento_silver = dh_processamento AS same FROM cvm_p210.silver_inf_diario",
    )
    assert silver and all(r["same"] for r in silver)


def test_view_columns_are_gold_plus_the_extras_once(lake: FilledLake) -> None:
    columns, _ = execute(lake.tables, "SELECT * FROM cvm_p210.gold_cvm210_analytics LIMIT 0")
    view = VIEWS["gold_cvm210_analytics"]
    assert columns == [f.name for f in GOLD.fields] + [*view.columns]


# --- time travel, history ---------------------------------------------------------------------


def test_version_as_of_returns_the_rows_before_the_restatement(lake: FilledLake) -> None:
    assert lake.january.silver != lake.restated.silver
    old = silver_rows(lake, VERSION_1)
    current = silver_rows(lake, "SELECT * FROM cvm_p210.silver_inf_diario")

    assert_silver(old, lake.march.silver + lake.january.silver)
    assert_silver(current, lake.march.silver + lake.restated.silver, with_line=False)
    assert "dh_processamento_silver" in old[0]


def test_timestamp_as_of_a_time_between_two_commits(lake: FilledLake) -> None:
    times = commit_times(lake, "silver")
    between = times[1] + (times[2] - times[1]) / 2
    at_v2 = times[2]

    old = silver_rows(
        lake, f"SELECT * FROM silver TIMESTAMP AS OF '{between:%Y-%m-%d %H:%M:%S.%f}'"
    )
    assert_silver(old, lake.march.silver + lake.january.silver)
    new = silver_rows(lake, f"SELECT * FROM silver TIMESTAMP AS OF '{at_v2.isoformat()}'")
    assert_silver(new, lake.march.silver + lake.restated.silver, with_line=False)


def test_the_statement_dated_2026_01_10_on_a_lake_written_then(lake: FilledLake, tmp_path) -> None:
    """The verbatim statement, on a copy whose silver commits are dated 5, 8 and 12 January."""
    copy = lake.copy(tmp_path / "lake")
    for version, day in ((0, 5), (1, 8), (2, 12)):
        log = copy.root / "silver" / "_delta_log" / f"{version:020d}.json"
        actions = [json.loads(line) for line in log.read_text().splitlines()]
        millis = int(dt.datetime(2026, 1, day, 9, tzinfo=dt.timezone.utc).timestamp() * 1000)
        for action in actions:
            if "commitInfo" in action:
                action["commitInfo"]["timestamp"] = millis
        log.write_text("\n".join(json.dumps(a) for a in actions) + "\n")

    assert_silver(silver_rows(copy, AS_OF_JANUARY_10), lake.march.silver + lake.january.silver)


def test_gold_as_of_a_version_takes_silver_as_of_that_commit(lake: FilledLake) -> None:
    rows = records(
        *execute(
            lake.tables,
            "SELECT g.cnpj_fundo, g.id_subclasse, g.ano, g.mes, g.total_captacao, g.cota_maxima"
            " FROM cvm_p210.gold_cvm210_analytics VERSION AS OF 1 AS g",
        )
    )
    silver = lake.march.silver + lake.january.silver
    expected = {
        (g.cnpj_fundo, g.id_subclasse, g.ano, g.mes): (
            g.total_captacao,
            max(
                (
                    s.vl_quota
                    for s in silver
                    if (s.cnpj_fundo, s.id_subclasse, s.ano, s.mes)
                    == (g.cnpj_fundo, g.id_subclasse, g.ano, g.mes)
                    and s.vl_quota is not None
                ),
                default=None,
            ),
        )
        for g in lake.march.gold + lake.january.gold
    }
    got = {
        (r["cnpj_fundo"], r["id_subclasse"], r["ano"], r["mes"]): (
            r["total_captacao"],
            r["cota_maxima"],
        )
        for r in rows
    }
    assert got == expected


def test_time_travel_words_in_strings_and_comments_are_left_alone(lake: FilledLake) -> None:
    rows = records(
        *execute(
            lake.tables,
            "SELECT 'silver VERSION AS OF 1' AS said, count(*) AS n"
            " FROM CVM_P210.Silver_Inf_Diario version as of 0 -- silver VERSION AS OF 2\n"
            "/* gold_kpis TIMESTAMP AS OF '2020-01-01' */",
        )
    )
    assert rows == [{"said": "silver VERSION AS OF 1", "n": len(lake.march.silver)}]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "SELECT * FROM cvm_p210.silver_inf_diario VERSION AS OF 7",
            "silver has no version 7: silver has versions 0 (committed ",
        ),
        (
            AS_OF_JANUARY_10,
            "silver did not exist yet at 2026-01-10T00:00:00+00:00: silver has versions 0",
        ),
        (
            "SELECT * FROM silver TIMESTAMP AS OF '10/01/2026'",
            "TIMESTAMP AS OF '10/01/2026': not a timestamp",
        ),
        (
            "SELECT * FROM cvm_p210.silver VERSION AS OF 1",
            "cvm_p210.silver VERSION AS OF: no such table; tables: cvm_p210.bronze_inf_diario",
        ),
        (
            "OPTIMIZE cvm_p210.silver_inf_diario ZORDER BY (cnpj)",
            "silver has no column cnpj; its columns: tp_fundo, cnpj_fundo,",
        ),
        ("OPTIMIZE silver ZORDER BY (ano)", "silver: ano is a partition column"),
        ("DESCRIBE HISTORY cvm_p210.nope", "cvm_p210.nope: no such table"),
    ],
)
def test_clear_errors(lake: FilledLake, capsys, statement: str, message: str) -> None:
    code, out, err = cli(lake, statement, capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"cvm210 sql: {message}"), err


def test_the_error_names_the_dates_of_the_versions(lake: FilledLake, capsys) -> None:
    times = commit_times(lake, "silver")
    _, _, err = cli(lake, "SELECT * FROM silver VERSION AS OF 3", capsys)
    assert f"0 (committed {times[0]:%Y-%m-%d %H:%M:%S} UTC)" in err
    assert f"2 (committed {times[2]:%Y-%m-%d %H:%M:%S} UTC)" in err


def test_describe_history_shows_the_pipeline_commits(lake: FilledLake, capsys) -> None:
    code, out, _ = cli(lake, HISTORY, capsys, "--format", "json")
    assert code == 0
    history = json.loads(out)

    # Each month's first version is written; the restatement is Delta Lake's MERGE, with its
    # counts in the commit as Delta records them.
    assert [(h["version"], h["operation"]) for h in history] == [
        (2, "MERGE"),
        (1, "WRITE"),
        (0, "WRITE"),
    ]
    merge = json.loads(history[0]["operationMetrics"])
    inserted, updated, deleted = diff_silver(lake.january.silver, lake.restated.silver)
    assert (
        merge["numTargetRowsInserted"],
        merge["numTargetRowsUpdated"],
        merge["numTargetRowsDeleted"],
    ) == (str(inserted), str(updated), str(deleted))
    assert all(h["engineInfo"].startswith("Apache-Spark/") for h in history)
    sources = [json.loads(h["userMetadata"]) for h in history]
    assert [(s["cvm210.month"], s["source_sha256"]) for s in sources] == [
        ("2025-01", lake.restated.sha256),
        ("2025-01", lake.january.sha256),
        ("2024-03", lake.march.sha256),
    ]
    times = commit_times(lake, "silver")
    assert [h["timestamp"] for h in history] == [times[v].isoformat() for v in (2, 1, 0)]


# --- maintenance --------------------------------------------------------------------------------


def test_optimize_zorder_rewrites_fewer_files_with_the_same_rows(
    lake: FilledLake, tmp_path, capsys
) -> None:
    copy = lake.copy(tmp_path / "lake")
    everything = "SELECT * FROM silver" + SILVER_ORDER
    before_rows = execute(copy.tables, everything)
    fragment_month(copy.tables, "silver", Month(2025, 1), pieces=4)
    assert execute(copy.tables, everything) == before_rows
    files_before = len(DeltaTable(copy.uri + "/silver").file_uris())
    assert files_before == 5

    code, out, _ = cli(copy, OPTIMIZE, capsys, "--format", "json")

    assert code == 0
    figures = {r["metric"]: r["value"] for r in json.loads(out)}
    files_after = len(DeltaTable(copy.uri + "/silver").file_uris())
    assert files_after < files_before
    assert figures["numFilesRemoved"] == str(files_before)
    assert figures["numFilesAdded"] == str(files_after)
    assert int(figures["filesRemoved.totalSize"]) > 0
    assert execute(copy.tables, everything) == before_rows
    history = silver_rows(copy, "DESCRIBE HISTORY silver LIMIT 1")
    assert history[0]["operation"] == "OPTIMIZE"
    assert figures["version"] == str(history[0]["version"])


def test_optimize_prints_its_figures(lake: FilledLake, tmp_path, capsys) -> None:
    copy = lake.copy(tmp_path / "lake")
    code, out, _ = cli(copy, OPTIMIZE, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["metric", "|", "value"]
    assert "numFilesAdded" in out and "filesRemoved.totalSize" in out


def test_restore_rolls_silver_back(lake: FilledLake, tmp_path, capsys) -> None:
    copy = lake.copy(tmp_path / "lake")
    code, _, _ = cli(copy, "RESTORE TABLE cvm_p210.silver_inf_diario TO VERSION AS OF 1", capsys)
    assert code == 0
    assert_silver(
        silver_rows(copy, "SELECT * FROM silver"), lake.march.silver + lake.january.silver
    )
    assert silver_rows(copy, "DESCRIBE HISTORY silver LIMIT 1")[0]["operation"] == "RESTORE"


# --- chart --------------------------------------------------------------------------------------


def test_monthly_trend_chart(lake: FilledLake, tmp_path, capsys) -> None:
    png = tmp_path / "trend.png"
    code, out, err = cli(lake, MONTHLY_TREND, capsys, "--chart", str(png))

    assert code == 0
    assert f"chart written to {png}" in err
    assert "monthly_inflow" in out
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    chart = chart_data(*execute(lake.tables, MONTHLY_TREND))
    assert chart.kind == "line"
    assert chart.x == ["2024-03", "2025-01"]  # chronological, whatever the query's order
    inflows = [
        sum((g.total_captacao for g in m.gold), Decimal(0)) for m in (lake.march, lake.restated)
    ]
    assert chart.series["monthly_inflow"] == [float(v) for v in inflows]
    assert list(chart.series) == ["monthly_inflow", "monthly_redemption", "monthly_net_balance"]


def test_ranking_chart_is_bars_by_fund_and_text_only_results_are_refused(
    lake: FilledLake, tmp_path, capsys
) -> None:
    chart = chart_data(*execute(lake.tables, LARGEST_NET_OUTFLOWS))
    assert chart.kind == "bar"
    assert chart.x_columns == ["cnpj_fundo"] and len(chart.x) == 10
    assert list(chart.series) == [
        "total_captacao",
        "total_resgate",
        "fluxo_liquido",
        "patrimonio_medio",
    ]

    query = "SELECT cnpj_fundo FROM gold_kpis"
    code, _, err = cli(lake, query, capsys, "--chart", str(tmp_path / "x.png"))
    assert code == 1 and "--chart: the result needs x columns" in err
    assert not (tmp_path / "x.png").exists()


ORIGINAL_GOLD_STATEMENTS = (
    BY_INFLOWS_AND_OUTFLOWS,
    LARGEST_NET_OUTFLOWS,
    MONTHLY_TREND,
    BEST_QUOTA_RETURNS,
)


def utc(value: Any) -> Any:
    """Timestamps as naive UTC: Spark (session time zone UTC) returns them naive."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


# --- Spark SQL with Delta Lake: the statements as written, as on Databricks -----------------


@pytest.fixture
def on_spark(spark) -> Iterator[Any]:
    """Run a statement as written on the test run's Spark (Delta Lake's engine) over a lake:
    what `cvm210 sql --engine spark` and Databricks do. The catalog is emptied afterwards."""

    def run(lake: FilledLake, statement: str) -> list[dict[str, Any]]:
        present = [t for t in TABLES if lake.tables.version(t) is not None]
        spark.sql("DROP SCHEMA IF EXISTS cvm_p210 CASCADE")  # another lake's registration
        return records(*run_spark(spark, lake.uri, present, statement))

    yield run
    spark.sql("DROP SCHEMA IF EXISTS cvm_p210 CASCADE")  # drops names only: the data stays
    for table in TABLES:
        spark.catalog.dropTempView(table)


def test_the_gold_statements_give_on_spark_what_they_give_on_duckdb(lake: FilledLake, on_spark):
    for statement in ORIGINAL_GOLD_STATEMENTS:
        got = on_spark(lake, statement)
        columns, rows = execute(lake.tables, statement)
        assert [c.lower() for c in got[0]] == columns
        values = [tuple(r.values()) for r in got]
        if "LIMIT" in statement or "GROUP BY" in statement:
            assert values == rows, statement
        else:
            assert sorted(values) == sorted(rows), statement
    everything = (
        "SELECT * FROM cvm_p210.gold_cvm210_analytics"
        " ORDER BY cnpj_fundo, id_subclasse NULLS FIRST, ano, mes"
    )
    got = on_spark(lake, everything)
    columns, rows = execute(lake.tables, everything)
    assert list(got[0]) == columns
    assert [tuple(map(utc, r.values())) for r in got] == [tuple(map(utc, r)) for r in rows]


def test_time_travel_as_written_on_spark(lake: FilledLake, on_spark, tmp_path) -> None:
    assert_silver(on_spark(lake, VERSION_1), lake.march.silver + lake.january.silver)
    assert_silver(
        on_spark(lake, "SELECT * FROM cvm_p210.silver_inf_diario"),
        lake.march.silver + lake.restated.silver,
        with_line=False,
    )
    # The verbatim TIMESTAMP AS OF, on a copy whose silver commits are dated 5, 8 and 12
    # January: Delta Lake's Spark engine dates a commit by its log file, and travels only as
    # far back as the table keeps (here a year, as the upkeep sets it when asked to).
    copy = lake.copy(tmp_path / "lake")
    assert keep_time_travel(copy.tables, "silver", dt.timedelta(days=400))
    for version, day in ((0, 5), (1, 8), (2, 12)):
        log = copy.root / "silver" / "_delta_log" / f"{version:020d}.json"
        moment = dt.datetime(2026, 1, day, 9, tzinfo=dt.timezone.utc).timestamp()
        os.utime(log, (moment, moment))
    assert_silver(on_spark(copy, AS_OF_JANUARY_10), lake.march.silver + lake.january.silver)


def test_describe_history_as_written_on_spark(lake: FilledLake, on_spark) -> None:
    history = on_spark(lake, HISTORY)
    assert [(h["version"], h["operation"]) for h in history] == [
        (2, "MERGE"),
        (1, "WRITE"),
        (0, "WRITE"),
    ]
    inserted, updated, deleted = diff_silver(lake.january.silver, lake.restated.silver)
    metrics = history[0]["operationMetrics"]
    assert (
        metrics["numTargetRowsInserted"],
        metrics["numTargetRowsUpdated"],
        metrics["numTargetRowsDeleted"],
    ) == (str(inserted), str(updated), str(deleted))
    sources = [json.loads(h["userMetadata"]) for h in history]
    assert [(s["cvm210.month"], s["source_sha256"]) for s in sources] == [
        ("2025-01", lake.restated.sha256),
        ("2025-01", lake.january.sha256),
        ("2024-03", lake.march.sha256),
    ]


def test_optimize_zorder_and_vacuum_as_written_on_spark(
    lake: FilledLake, on_spark, spark, tmp_path
) -> None:
    copy = lake.copy(tmp_path / "lake")
    everything = "SELECT * FROM silver" + SILVER_ORDER
    before_rows = execute(copy.tables, everything)
    fragment_month(copy.tables, "silver", Month(2025, 1), pieces=4)
    assert len(DeltaTable(copy.uri + "/silver").file_uris()) == 5

    (optimized,) = on_spark(copy, OPTIMIZE)

    metrics = optimized["metrics"].asDict()
    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (5, 2)  # one per month
    assert metrics["zOrderStats"]["strategyName"] == "all"
    assert execute(copy.tables, everything) == before_rows
    assert (
        on_spark(copy, "DESCRIBE HISTORY cvm_p210.silver_inf_diario LIMIT 1")[0]["operation"]
        == "OPTIMIZE"
    )

    # VACUUM keeping 30 days deletes nothing young; keeping none deletes every file no longer
    # read, and time travel to those versions ends there.
    def data_files() -> list[Path]:
        return sorted(p for p in (copy.root / "silver").rglob("*.parquet") if "ano=" in str(p))

    parquet = data_files()
    on_spark(copy, "VACUUM cvm_p210.silver_inf_diario RETAIN 720 HOURS")
    assert data_files() == parquet
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        on_spark(copy, "VACUUM cvm_p210.silver_inf_diario RETAIN 0 HOURS")
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    left = data_files()
    assert len(left) == 2 and set(left) < set(parquet)
    assert execute(copy.tables, everything) == before_rows


def test_cvm210_sql_runs_on_spark_when_asked(lake: FilledLake) -> None:
    """As a user runs it: its own Spark (Delta Lake's jars from the set-up's cache)."""
    command = [sys.executable, "-m", "cvm210_assets.cli", "sql", LARGEST_NET_OUTFLOWS]
    command += ["--lake", lake.uri, "--engine", "spark", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads(render(*execute(lake.tables, LARGEST_NET_OUTFLOWS), "json"))
    # Spark names a column as the statement writes it (CNPJ_FUNDO), DuckDB in lower case.
    assert [{k.lower(): v for k, v in r.items()} for r in json.loads(done.stdout)] == expected

    wrong = [sys.executable, "-m", "cvm210_assets.cli", "sql", "SELECT nope FROM silver"]
    done = subprocess.run([*wrong, "--lake", lake.uri, "--engine", "spark"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    said = done.stderr.strip().splitlines()[-1]  # after the JVM's own start-up lines
    assert said.startswith("cvm210 sql: [UNRESOLVED_COLUMN") and "nope" in said, said


def test_on_databricks_the_silver_name_is_the_delta_table_so_time_travel_runs_there() -> None:
    from cvm210_assets.sql.spark import spark_statements

    statements = spark_statements("s3://bucket/lake/")
    created = {re.search(r"cvm_p210\.\w+", s).group(): s for s in statements[1:]}
    assert created.keys() == {f"cvm_p210.{n}" for n in VIEWS} | {"cvm_p210.gold_fundos"}
    assert created["cvm_p210.silver_inf_diario"] == (
        "CREATE TABLE IF NOT EXISTS cvm_p210.silver_inf_diario USING DELTA"
        " LOCATION 's3://bucket/lake/silver'"
    )
    assert created["cvm_p210.gold_cvm210_analytics"].startswith(
        "CREATE OR REPLACE VIEW cvm_p210.gold_cvm210_analytics AS SELECT t.*,"
    )
    assert (
        "FROM delta.`s3://bucket/lake/gold_kpis` AS t" in created["cvm_p210.gold_cvm210_analytics"]
    )

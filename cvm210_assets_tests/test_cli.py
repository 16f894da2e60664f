"""`cvm210 sql` and `cvm210 demo` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from cvm210_assets.cli import main
from cvm210_assets.demo import DESIGN_QUERY
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets_tests.conftest import Pipeline, cli_env
from cvm210_assets_tests.reference import expected_month


@pytest.fixture
def filled_lake(pipeline: Pipeline, fake_cvm) -> tuple[str, list]:
    csv_bytes = generate_month(MonthSpec(2024, 3, "b", n_funds=50, seed=21, dirt=True))
    fake_cvm.publish_month(2024, 3, csv_bytes)
    pipeline.run("2024-03")
    return pipeline.settings.lake_uri, expected_month(csv_bytes, 2024, 3).gold


def test_design_query_prints_largest_net_outflows(filled_lake, capsys) -> None:
    lake, gold = filled_lake
    assert main(["sql", DESIGN_QUERY, "--lake", lake, "--format", "csv"]) == 0

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    outflows = sorted((g for g in gold if g.fluxo_liquido < 0), key=lambda g: g.fluxo_liquido)
    assert [r["cnpj_fundo"] for r in rows] == [g.cnpj_fundo for g in outflows[:10]]
    assert [Decimal(r["fluxo_liquido"]) for r in rows] == [g.fluxo_liquido for g in outflows[:10]]
    assert [Decimal(r["total_resgate"]) for r in rows] == [g.total_resgate for g in outflows[:10]]


def test_table_and_json_formats_and_every_table_name(filled_lake, capsys) -> None:
    lake, gold = filled_lake
    query = (
        "SELECT (SELECT count(*) FROM cvm_p210.gold_cvm210_analytics) AS gold,"
        " (SELECT count(*) FROM gold_kpis) AS gold_by_own_name,"
        " (SELECT count(*) FROM cvm_p210.silver_inf_diario) AS silver,"
        " (SELECT count(*) FROM cvm_p210.bronze_inf_diario) AS bronze,"
        " (SELECT count(*) FROM cvm_p210.silver_rejects) AS rejects"
    )
    assert main(["sql", query, "--lake", lake, "--format", "json"]) == 0
    (counts,) = json.loads(capsys.readouterr().out)
    assert counts["gold"] == counts["gold_by_own_name"] == len(gold)
    assert counts["bronze"] == counts["silver"] + counts["rejects"]

    assert (
        main(["sql", "SELECT ano, mes, count(*) AS n FROM gold_kpis GROUP BY ALL", "--lake", lake])
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ano", "|", "mes", "|", "n"]
    assert table[2].split() == ["2024", "|", "3", "|", str(len(gold))]
    assert table[-1] == "(1 row)"


def test_bad_query_is_a_clear_error(filled_lake, capsys) -> None:
    lake, _ = filled_lake
    assert main(["sql", "SELECT nope FROM cvm_p210.gold_cvm210_analytics", "--lake", lake]) == 1
    assert 'cvm210 sql: Binder Error: Referenced column "nope" not found' in capsys.readouterr().err


def test_demo_runs_the_pipeline_and_prints_the_design_query(spark, tmp_path) -> None:
    said: list[str] = []
    assert main_demo(str(tmp_path / "lake"), said)

    output = "\n".join(said)
    assert "Materializing raw_zip → gold_kpis for 2019-07" in output
    assert "FROM cvm_p210.gold_cvm210_analytics" in output
    assert "(10 rows)" in output
    assert (tmp_path / "lake" / "gold_kpis" / "_delta_log").is_dir()
    # The registry too: the outflows come with their funds' names.
    assert "Materializing fund_registry" in output
    names = output.split("FROM cvm_p210.gold_fundos", 1)[1]
    assert "(5 rows)" in names
    assert names.count("FUNDO ") >= 4  # the fake registry leaves ~3 % of funds out


def main_demo(lake: str, said: list[str]) -> bool:
    from cvm210_assets.demo import run_demo
    from cvm210_assets.settings import Settings

    return run_demo(Settings.from_env(), lake, months=["2019-07"], funds=40, say=said.append)


@pytest.mark.spark  # the documented command starts Spark in its own process
def test_documented_command_line_run_with_environment_variables(fake_cvm, tmp_path) -> None:
    """The README's `dagster asset materialize` command, configured only by the environment."""
    import subprocess
    import sys

    from cvm210_assets_tests.expectations import assert_gold

    csv_bytes = generate_month(MonthSpec(2024, 3, "b", n_funds=40, seed=4, dirt=True))
    fake_cvm.publish_month(2024, 3, csv_bytes)
    lake = tmp_path / "lake"
    env = cli_env(fake_cvm, lake, tmp_path / "dagster_home")
    (tmp_path / "dagster_home").mkdir()
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "cvm210_assets.definitions",
        "--select", "raw_zip,s3_csv_partition,bronze,silver,gold_kpis",
        "--partition", "2024-03",
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    query = "SELECT * FROM cvm_p210.gold_cvm210_analytics"
    sql = subprocess.run(
        [sys.executable, "-m", "cvm210_assets.cli", "sql", query, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sql.returncode == 0, sql.stderr
    rows = json.loads(sql.stdout)
    from pyspark.sql.types import DecimalType

    from cvm210_assets.lake.schemas import GOLD

    exact = [f.name for f in GOLD.fields if isinstance(f.dataType, DecimalType)]
    for row in rows:
        for column in exact:  # JSON carries exact decimals as strings
            row[column] = None if row[column] is None else Decimal(row[column])
    assert_gold(rows, expected_month(csv_bytes, 2024, 3).gold)

"""The code location as Dagster loads it: assets, partitions, checks, executor."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey

from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_five_assets_and_their_lineage() -> None:
    from cvm210_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_zip",
        "s3_csv_partition",
        "bronze",
        "silver",
        "gold_kpis",
        "fund_registry",
        "gold_breakdowns",
        "outflow_alerts",
        "alert_deliveries",
    }
    parents = {
        "s3_csv_partition": {"raw_zip"},
        "bronze": {"s3_csv_partition"},
        "silver": {"bronze"},
        "gold_kpis": {"silver"},
        "gold_breakdowns": {"gold_kpis", "fund_registry"},
        "outflow_alerts": {"silver", "gold_kpis", "fund_registry", "gold_breakdowns"},
        "alert_deliveries": {"outflow_alerts"},
    }
    for child, expected in parents.items():
        got = {k.to_user_string() for k in graph.get(AssetKey(child)).parent_keys}
        assert got == expected, child
    checks = {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys}
    assert {
        "silver:required_fields_present",
        "silver:net_assets_positive",
        "silver:key_unique",
        "silver:bronze_rows_equal_silver_plus_rejects",
        "silver:dates_in_partition_month",
        "silver:cnpj_check_digits_valid",
        "gold_kpis:gold_totals_equal_silver_sums",
        "gold_kpis:one_gold_row_per_key",
    } <= checks


def test_partitions_are_months_from_2005_to_the_current_one_in_sao_paulo() -> None:
    keys = monthly_partitions.get_partition_keys()
    now = dt.datetime.now(ZoneInfo("America/Sao_Paulo"))
    assert keys[0] == "2005-01"
    assert keys[-1] == f"{now.year:04d}-{now.month:02d}"
    assert monthly_partitions.timezone == "America/Sao_Paulo"
    assert Month.from_key("2019-07").compact == "201907"
    with pytest.raises(ValueError, match="not YYYY-MM"):
        Month.from_key("201907")


def test_settings_defaults_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.lake_uri == str(tmp_path / "lake")
    assert settings.source_url == "https://dados.cvm.gov.br/dados/FI/DOC/INF_DIARIO/DADOS"
    assert settings.compute == "local"
    with pytest.raises(ValueError, match="CVM210_COMPUTE='cluster'"):
        Settings.from_env({"CVM210_COMPUTE": "cluster"})


@pytest.mark.dagster_processes
def test_dagster_loads_the_code_location_from_workspace_yaml(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "cvm210_assets" in result.stdout + result.stderr


def test_the_automation_the_ui_shows() -> None:
    from cvm210_assets.definitions import defs

    repository = defs.get_repository_def()
    assert {j.name for j in repository.get_all_jobs()} >= {
        "cvm_inf_diario",
        "cvm_freshness",
        "lake_maintenance",
        "cvm_fund_registry",
    }
    schedules = {s.name: (s.cron_schedule, s.execution_timezone) for s in repository.schedule_defs}
    assert schedules == {
        "cvm_inf_diario_daily": ("30 8 * * 2-6", "America/Sao_Paulo"),
        "cvm_freshness_weekdays": ("0 12 * * 1-5", "America/Sao_Paulo"),
        "lake_maintenance_weekly": ("0 3 * * 0", "America/Sao_Paulo"),
        "fund_registry_daily": ("15 8 * * *", "America/Sao_Paulo"),
    }
    assert [s.name for s in repository.sensor_defs] == ["cvm_inf_diario_changes"]
    keys = repository.asset_graph.asset_check_keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in keys}
    assert {("silver", "current_month_fresh"), ("raw_zip", "cvm_copy_not_newer")} <= checks


def test_loading_the_code_location_imports_no_arrow_numpy_pandas_or_aws() -> None:
    """Every CLI command, run and UI reload loads the code location first: what the few steps
    that need them import stays out of it (an unchanged month's rerun, issue 14)."""
    probe = (
        "import sys, cvm210_assets.definitions; "
        "print(sorted(m for m in ('pyarrow', 'numpy', 'pandas', 'boto3', 'dagster_aws')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout

"""The weekly upkeep: fragmented months compacted, data and time travel untouched."""

from __future__ import annotations

import datetime as dt

import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.jobs import lake_maintenance
from cvm210_assets.lake.maintenance import file_figures
from cvm210_assets.partitions import Month
from cvm210_assets.schedules import maintenance_schedule
from cvm210_assets.settings import AutomationSettings
from cvm210_assets_tests.conftest import Pipeline, fragment_month
from cvm210_assets_tests.expectations import assert_gold, assert_silver
from cvm210_assets_tests.reference import expected_month

JAN = Month(2025, 1)


def test_upkeep_compacts_fragmented_months_and_keeps_data_and_history(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    first = generate_month(MonthSpec(2025, 1, "c", n_funds=60, seed=31, subclass_share=0.2))
    latest = restate(first, seed=1, change_share=0.05, n_add=3, n_remove=3)
    for csv in (first, latest):
        fake_cvm.publish_month(2025, 1, csv)
        pipeline.run("2025-01")
    tables = pipeline.tables
    fragment_month(tables, "silver", JAN, pieces=4)  # as many small writes would leave it
    before = file_figures(tables, "silver")
    assert before["fragmented_months"] == [(2025, 1)] and before["files"] == 4
    version_before = tables.version("silver")

    result = lake_maintenance.execute_in_process(resources={"lake": pipeline.resources["lake"]})

    after = file_figures(tables, "silver")
    assert after["files"] < before["files"] and after["fragmented_months"] == []
    expected = expected_month(latest, 2025, 1)
    assert_silver(pipeline.rows("silver", "2025-01"), expected.silver, with_line=False)
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), expected.gold)
    old = tables.dataset("silver", version=0).to_table().to_pylist()
    assert_silver(old, expected_month(first, 2025, 1).silver)  # vacuum kept version 0

    observed = {
        e.event_specific_data.asset_observation.metadata["table"].value: {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert set(observed) == {"bronze", "silver", "silver_rejects", "silver_changes", "gold_kpis"}
    silver = observed["silver"]
    assert (silver["files_before"], silver["files_after"]) == (before["files"], after["files"])
    assert silver["months_compacted"] == "2025-01"
    assert silver["files_rewritten"] == before["files"]
    assert silver["delta_version"] == version_before + 1
    assert silver["time_travel_days"] == 30
    assert observed["gold_kpis"]["months_compacted"] == "none"  # one file: left alone


def time_travel(env: dict[str, str]) -> dt.timedelta:
    return dt.timedelta(days=AutomationSettings.from_env(env).time_travel_days)


def test_time_travel_below_thirty_days_is_refused() -> None:
    assert time_travel({}).days == 30
    assert time_travel({"CVM210_TIME_TRAVEL_DAYS": "90"}).days == 90
    for bad in ("29", "0", "-5", "a month"):
        with pytest.raises(ValueError, match="CVM210_TIME_TRAVEL_DAYS"):
            time_travel({"CVM210_TIME_TRAVEL_DAYS": bad})


def test_upkeep_runs_on_sunday_mornings_in_sao_paulo() -> None:
    schedule = maintenance_schedule(AutomationSettings.from_env({}).maintenance_cron)
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "0 3 * * 0",
        "America/Sao_Paulo",
    )
    other = AutomationSettings.from_env({"CVM210_MAINTENANCE_CRON": "0 4 * * 6"})
    assert maintenance_schedule(other.maintenance_cron).cron_schedule == "0 4 * * 6"


def test_an_unpartitioned_table_is_vacuumed_not_compacted(tmp_path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from cvm210_assets.lake.storage import LocalStorage
    from cvm210_assets.lake.tables import DeltaRsTables

    tables = DeltaRsTables(LocalStorage(tmp_path))
    for n in range(3):  # three daily replacements, as fund_registry gets
        write_deltalake(tables.uri("fund_registry"), pa.table({"cnpj_fundo": [f"{n:014d}"]}),
                        mode="overwrite")  # fmt: skip
    figures = file_figures(tables, "fund_registry")
    assert (figures["files"], figures["fragmented_months"]) == (1, [])
    from cvm210_assets.lake.maintenance import vacuum

    assert vacuum(tables, "fund_registry", dt.timedelta(days=30)) == 0  # all younger than 30 days

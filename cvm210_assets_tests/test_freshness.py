"""Freshness: business days on B3's calendar, and the two WARN checks on a fixed clock."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetSelection, Definitions, define_asset_job, materialize

from cvm210_assets.assets.ingestion import raw_zip
from cvm210_assets.assets.silver import silver
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.freshness import (
    build_freshness_checks,
    business_days_after,
    easter,
    freshness,
    holidays,
    other_months,
)
from cvm210_assets.partitions import Month
from cvm210_assets.settings import AutomationSettings
from cvm210_assets_tests.conftest import Pipeline, make_pipeline

D = dt.date


def test_brazilian_holidays_move_with_easter() -> None:
    assert [easter(y) for y in (2024, 2025, 2026)] == [
        D(2024, 3, 31),
        D(2025, 4, 20),
        D(2026, 4, 5),
    ]
    days = holidays(2025)
    assert {D(2025, 3, 3), D(2025, 3, 4), D(2025, 4, 18), D(2025, 6, 19)} <= days  # Carnival…
    assert {D(2025, 4, 21), D(2025, 11, 20), D(2025, 12, 25)} <= days
    assert D(2023, 11, 20) not in holidays(2023)  # national only since 2024


def test_business_days_skip_weekends_and_holidays() -> None:
    assert business_days_after(D(2025, 3, 28), D(2025, 3, 31)) == 1  # Friday -> Monday
    assert business_days_after(D(2025, 2, 28), D(2025, 3, 5)) == 1  # across Carnival
    assert business_days_after(D(2025, 3, 5), D(2025, 3, 5)) == 0
    assert business_days_after(D(2025, 3, 5), D(2025, 3, 12)) == 5


def test_freshness_verdicts() -> None:
    assert freshness(D(2025, 2, 28), D(2025, 3, 5), 2)[0] is True  # 1 day: Carnival between
    passed, metadata = freshness(D(2025, 3, 6), D(2025, 3, 12), 2)
    assert (passed, metadata["business_days_old"]) == (False, 4)
    assert freshness(None, D(2025, 3, 12), 2)[0] is False
    assert max_age({}) == 2 and max_age({"CVM210_FRESHNESS_BUSINESS_DAYS": "5"}) == 5
    with pytest.raises(ValueError, match="CVM210_FRESHNESS_BUSINESS_DAYS"):
        max_age({"CVM210_FRESHNESS_BUSINESS_DAYS": "0"})


def max_age(env: dict[str, str]) -> int:
    return AutomationSettings.from_env(env).freshness_business_days


def _evaluate(pipeline: Pipeline, now: dt.datetime) -> dict[str, tuple[bool, dict]]:
    checks = build_freshness_checks(2, now=lambda: now)
    job = define_asset_job("freshness", selection=AssetSelection.checks(*checks))
    defs = Definitions(
        assets=[raw_zip, silver], asset_checks=checks, jobs=[job], resources=pipeline.resources
    )
    result = defs.resolve_job_def("freshness").execute_in_process(instance=pipeline.instance)
    return {
        e.check_name: (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_the_checks_warn_when_the_lake_falls_behind(pipeline: Pipeline, fake_cvm: FakeCvm) -> None:
    wednesday = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.timezone.utc)
    march = generate_month(MonthSpec(2025, 3, "c", n_funds=5, seed=1))
    fake_cvm.publish_month(2025, 3, march)
    materialize([raw_zip], partition_key="2025-03", resources=pipeline.resources)
    state = pipeline.resources["lake"].state
    state.put("silver", Month(2025, 3), {"latest_dt_comptc": "2025-03-11"})

    fresh = _evaluate(pipeline, wednesday)
    assert fresh["current_month_fresh"] == (
        True,
        {
            "latest_dt_comptc": "2025-03-11",
            "today": "2025-03-12",
            "business_days_old": 1,
            "max_business_days": 2,
        },
    )
    assert fresh["cvm_copy_not_newer"][0] is True

    # A week later: nothing new in silver, and CVM has rewritten March.
    fake_cvm.publish_month(2025, 3, generate_month(MonthSpec(2025, 3, "c", n_funds=5, seed=2)))
    stale = _evaluate(pipeline, wednesday + dt.timedelta(days=7))
    passed, metadata = stale["current_month_fresh"]
    assert (passed, metadata["business_days_old"]) == (False, 6)
    passed, metadata = stale["cvm_copy_not_newer"]
    assert passed is False
    assert metadata["cvm_last_modified"] != metadata["lake_last_modified"]
    assert metadata["file"] == "inf_diario_fi_202503"

    # The first days of April: March's data is what there is, and it is judged by its age.
    april_first = dt.datetime(2025, 4, 1, 15, 0, tzinfo=dt.timezone.utc)
    state.put("silver", Month(2025, 3), {"latest_dt_comptc": "2025-03-31"})
    early = _evaluate(pipeline, april_first)
    assert early["current_month_fresh"][0] is True
    assert early["cvm_copy_not_newer"][1]["note"] == "CVM has not published it yet"


def test_which_runs_judge_freshness() -> None:
    march = Month(2025, 3)
    assert other_months({}, march) is None  # the freshness job
    assert other_months({"dagster/partition": "2025-03"}, march) is None
    assert other_months({"dagster/partition": "2019-05"}, march) == "2019-05"
    history = {
        "dagster/asset_partition_range_start": "2005-01",
        "dagster/asset_partition_range_end": "2025-03",
    }
    assert other_months(history, march) is None  # the range covers March
    old = {**history, "dagster/asset_partition_range_end": "2019-12"}
    assert other_months(old, march) == "2005-01...2019-12"


def test_a_run_of_another_month_gets_no_freshness_verdict(fake_cvm: FakeCvm, tmp_path) -> None:
    """A 2019-05 run that includes both freshness checks (as the UI's Materialize and the daily
    job include an asset's checks) records no verdict for them: skipped, never failed. A run of
    the current month, on the same definitions, judges them."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    now = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.timezone.utc)
    fake_cvm.publish_year(2019, {5: generate_month(MonthSpec(2019, 5, "a", n_funds=5, seed=1))})
    fake_cvm.publish_month(2025, 3, generate_month(MonthSpec(2025, 3, "c", n_funds=5, seed=1)))
    pipeline = make_pipeline(str(tmp_path / "lake"), fake_cvm.base_url)
    checks = build_freshness_checks(2, now=lambda: now)
    job = define_asset_job(
        "month", selection=AssetSelection.assets(raw_zip) | AssetSelection.checks(*checks)
    )
    defs = Definitions(
        assets=[raw_zip, silver], asset_checks=checks, jobs=[job], resources=pipeline.resources
    )

    def run(key: str):
        return defs.resolve_job_def("month").execute_in_process(
            partition_key=key, instance=pipeline.instance
        )

    historical = run("2019-05")
    assert historical.success
    assert historical.get_asset_check_evaluations() == []
    for check in checks:
        (key,) = check.check_keys
        (record,) = pipeline.instance.event_log_storage.get_asset_check_execution_history(
            key, limit=5
        )
        # Planned, and never evaluated in a run that succeeded: the UI shows it skipped.
        assert (record.run_id, record.status) == (
            historical.run_id,
            AssetCheckExecutionRecordStatus.PLANNED,
        )
    logs = [e.user_message for e in pipeline.instance.all_logs(historical.run_id)]
    assert sum("not judged in a run of 2019-05" in m for m in logs) == 2

    current = run("2025-03")
    verdicts = {e.check_name: e.passed for e in current.get_asset_check_evaluations()}
    assert verdicts == {
        "cvm_copy_not_newer": True,  # raw_zip just captured March
        "current_month_fresh": False,  # silver has no March: a real verdict about now
    }

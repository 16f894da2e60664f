"""Every month's check verdict in the check's Partitions view of Dagster's UI.

Dagster counts a month's verdict there only when it targets the month's latest materialization:
for a month written, for a month unchanged, for a month whose blocking check failed (nothing
written: against the version its tables keep), in one-month runs and in ranges alike.
"""

from __future__ import annotations

import dataclasses

import pytest
from dagster import materialize

from cvm210_assets.assets import silver as silver_asset
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.partitions import Month
from cvm210_assets_tests.conftest import MONTHLY_CHECKS as CHECKS
from cvm210_assets_tests.conftest import Pipeline, check_partitions
from cvm210_assets_tests.expectations import over_tolerance
from cvm210_assets_tests.reference import expected_month

RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def statuses(pipeline: Pipeline, assets: tuple[str, ...] = tuple(CHECKS)) -> dict[str, dict]:
    return {
        f"{asset}:{check}": check_partitions(pipeline.instance, asset, check)
        for asset in assets
        for check in CHECKS[asset]
    }


def every_check(months: dict[str, str], assets: tuple[str, ...] = tuple(CHECKS)) -> dict:
    return {f"{asset}:{check}": months for asset in assets for check in CHECKS[asset]}


def break_keys_of(monkeypatch: pytest.MonkeyPatch, months: set[Month]) -> None:
    """silver's key_unique (blocking) fails for `months`: two duplicate keys."""
    real = silver_asset.silver_quality

    def broken(*args):
        return {
            m: dataclasses.replace(q, duplicate_keys=2) if m in months else q
            for m, q in real(*args).items()
        }

    monkeypatch.setattr(silver_asset, "silver_quality", broken)


def test_one_month_written_unchanged_and_blocked(
    pipeline: Pipeline, fake_cvm: FakeCvm, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate_month(MonthSpec(2024, 3, "b", n_funds=20, seed=9))
    fake_cvm.publish_month(2024, 3, first)
    march = {"2024-03": "SUCCEEDED"}

    pipeline.run("2024-03")
    assert statuses(pipeline) == every_check(march)

    pipeline.run("2024-03")  # unchanged: the recorded verdicts, on the new materialization
    assert statuses(pipeline) == every_check(march)

    restated = restate(first, seed=1, change_share=0.1, n_add=3, n_remove=3)
    fake_cvm.publish_month(2024, 3, restated)
    break_keys_of(monkeypatch, {Month(2024, 3)})
    assert not pipeline.run("2024-03", raise_on_error=False).success
    # Nothing written: the verdicts judge the version silver keeps, and gold did not run.
    silver = statuses(pipeline, ("silver",))
    assert silver == {**every_check(march, ("silver",)), "silver:key_unique": {"2024-03": "FAILED"}}
    assert all(v != march for v in statuses(pipeline, ("gold_kpis",)).values())

    monkeypatch.undo()
    pipeline.run("2024-03")
    # The restated rows' net assets no longer follow their quota and flows: the warning
    # judges them as the oracle does.
    reconciles = "FAILED" if over_tolerance(expected_month(restated, 2024, 3).gold) else "SUCCEEDED"
    assert statuses(pipeline) == {
        **every_check(march),
        "gold_kpis:flows_reconcile": {"2024-03": reconciles},
    }


def test_a_range_with_a_blocked_month_then_its_rerun(
    pipeline: Pipeline, fake_cvm: FakeCvm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cvm210_assets.definitions import ASSETS

    for mes in (1, 2, 3):
        fake_cvm.publish_month(2024, mes, generate_month(MonthSpec(2024, mes, "b", 10, seed=mes)))
    tags = dict(zip(RANGE_TAGS, ("2024-01", "2024-03"), strict=True))
    months = {f"2024-0{mes}": "SUCCEEDED" for mes in (1, 2, 3)}
    run = {"resources": pipeline.resources, "instance": pipeline.instance, "tags": tags}

    break_keys_of(monkeypatch, {Month(2024, 2)})
    assert not materialize(ASSETS, raise_on_error=False, **run).success

    # February failed on its own, never materialized: the failed verdict shows all the same.
    assert statuses(pipeline, ("bronze", "silver")) == {
        **every_check(months, ("bronze", "silver")),
        "silver:key_unique": {**months, "2024-02": "FAILED"},
    }
    assert pipeline.instance.get_materialized_partitions(silver_asset.silver.key) == set()

    monkeypatch.undo()
    assert materialize(ASSETS, **run).success  # January and March unchanged, February written
    assert statuses(pipeline) == every_check(months)

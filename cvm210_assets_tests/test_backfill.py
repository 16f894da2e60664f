"""Backfills: a year in one run from the yearly archive, and a range with a bad month in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter, materialize

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.partitions import Month
from cvm210_assets_tests.conftest import (
    MONTHLY_CHECKS,
    Pipeline,
    check_partitions,
    cli_env,
)
from cvm210_assets_tests.expectations import assert_gold, assert_silver
from cvm210_assets_tests.reference import expected_month

pytestmark = pytest.mark.spark  # Spark starts in another process

ASSETS = "raw_zip,s3_csv_partition,bronze,silver,gold_kpis"
RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def test_a_year_backfilled_in_one_run_downloads_the_archive_once(
    fake_cvm: FakeCvm, tmp_path: Path
) -> None:
    csvs = {
        mes: generate_month(MonthSpec(2019, mes, "b", n_funds=12, seed=mes, dirt=mes == 7))
        for mes in range(1, 13)
    }
    archive = fake_cvm.publish_year(2019, csvs)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = cli_env(fake_cvm, tmp_path / "lake", home)
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "cvm210_assets.definitions", "--select", ASSETS,
        "--partition-range", "2019-01...2019-12",
    ]  # fmt: skip

    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)

    assert run.returncode == 0, run.stderr[-3000:]
    downloads = [r for r in fake_cvm.requests if r.path.endswith(archive) and r.status == 200]
    assert len(downloads) == 1
    from cvm210_assets_tests.conftest import make_pipeline

    pipeline = make_pipeline(str(tmp_path / "lake"), fake_cvm.base_url)
    for mes, csv in csvs.items():
        key = f"2019-{mes:02d}"
        expected = expected_month(csv, 2019, mes)
        assert_silver(pipeline.rows("silver", key), expected.silver)
        assert_gold(pipeline.rows("gold_kpis", key), expected.gold)

    # Dagster knows each month: twelve materialized partitions, each with its own metadata
    # and its own check results.
    with DagsterInstance.from_config(str(home)) as instance:
        months = [f"2019-{mes:02d}" for mes in range(1, 13)]
        for asset in ASSETS.split(","):
            assert instance.get_materialized_partitions(AssetKey(asset)) == set(months)
        events = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, AssetKey("silver"))
        )
        rows = {
            e.event_log_entry.dagster_event.partition: e.asset_materialization.metadata[
                "dagster/row_count"
            ].value
            for e in events
        }
        assert rows == {
            f"2019-{mes:02d}": len(expected_month(csv, 2019, mes).silver)
            for mes, csv in csvs.items()
        }
        # Each month's bronze preview: its CSV's first five data lines, as read, numbered.
        previews = {
            e.event_log_entry.dagster_event.partition: e.asset_materialization.metadata[
                "preview"
            ].value.splitlines()[2:]
            for e in instance.get_event_records(
                EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, AssetKey("bronze"))
            )
        }
        assert previews == {
            f"2019-{mes:02d}": first_data_lines(csv, 5) for mes, csv in csvs.items()
        }
        checks = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        evaluations = [e.event_log_entry.dagster_event.event_specific_data for e in checks]
        per_month = {e.partition for e in evaluations if e.check_name == "key_unique" and e.passed}
        assert per_month == set(months) | {None}  # each month, and the range's summary
        # ...and each month's verdict is in the check's Partitions view of the UI.
        verdicts = {
            (e.asset_key.to_user_string(), e.check_name, e.partition): e.passed for e in evaluations
        }
        for asset, names in MONTHLY_CHECKS.items():
            for name in names:
                shown = check_partitions(instance, asset, name)
                assert shown == {
                    month: "SUCCEEDED" if verdicts[asset, name, month] else "FAILED"
                    for month in months
                }, f"{asset}:{name}"
        assert set(check_partitions(instance, "silver", "key_unique").values()) == {"SUCCEEDED"}


def test_a_bad_month_in_a_range_fails_alone_and_a_rerun_finishes(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    from cvm210_assets.definitions import ASSETS as DEFS

    good = {mes: generate_month(MonthSpec(2024, mes, "b", n_funds=10, seed=mes)) for mes in (1, 3)}
    for mes, csv in good.items():
        fake_cvm.publish_month(2024, mes, csv)
    fake_cvm.put("inf_diario_fi_202402.zip", b"<html>fora do ar</html>")  # February is broken
    tags = dict(zip(RANGE_TAGS, ("2024-01", "2024-03"), strict=True))

    failed = materialize(
        DEFS, resources=pipeline.resources, instance=pipeline.instance, tags=tags,
        raise_on_error=False,
    )  # fmt: skip

    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "raw_zip: 1 of 3 months failed" in message
    assert "2024-02:" in message and "inf_diario_fi_202402.zip" in message
    state = pipeline.resources["lake"].state
    assert {m: state.get("raw_zip", Month(2024, m)) is not None for m in (1, 2, 3)} == {
        1: True,
        2: False,
        3: True,
    }

    feb = generate_month(MonthSpec(2024, 2, "b", n_funds=10, seed=2))
    fake_cvm.publish_month(2024, 2, feb)
    done = materialize(DEFS, resources=pipeline.resources, instance=pipeline.instance, tags=tags)

    assert done.success
    for mes, csv in {**good, 2: feb}.items():
        assert_gold(
            pipeline.rows("gold_kpis", f"2024-{mes:02d}"), expected_month(csv, 2024, mes).gold
        )


def first_data_lines(csv: bytes, n: int) -> list[str]:
    """The first `n` non-empty data lines of a CSV as the bronze preview's markdown rows: the
    header's columns as read (missing ones empty), then the line's number."""
    header, *lines = csv.decode("latin-1").split("\n")
    width = len(header.rstrip("\r").split(";"))
    rows = []
    for number, line in enumerate(lines, start=2):
        fields = line.removesuffix("\r").split(";")
        if fields != [""] and len(rows) < n:
            cells = [*fields[:width], *[""] * (width - len(fields)), str(number)]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows

"""Runs killed in the middle: tables stay whole, and the next run finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets_tests.conftest import Pipeline
from cvm210_assets_tests.expectations import assert_gold, assert_silver
from cvm210_assets_tests.reference import expected_month

ROOT = Path(__file__).resolve().parents[1]
RUN_ONE_MONTH = """
import sys
from cvm210_assets_tests.conftest import make_pipeline
make_pipeline(sys.argv[1], sys.argv[2]).run("2025-01")
"""
RUN_A_RANGE = """
import sys
import pytest
from dagster import materialize
from cvm210_assets.definitions import ASSETS
from cvm210_assets.resources import Lake
from cvm210_assets_tests.conftest import make_pipeline

pytestmark = pytest.mark.spark  # Spark starts in another process
pipeline = make_pipeline(sys.argv[1], sys.argv[2])
lake = pipeline.resources["lake"]
# One month a batch: the kill comes between two batches' commits, or inside one.
resources = {**pipeline.resources, "lake": Lake(uri=lake.uri, batch_rows=1)}
tags = {f"dagster/asset_partition_range_{end}": key for end, key in
        (("start", "2024-01"), ("end", "2024-04"))}
materialize(ASSETS, resources=resources, instance=pipeline.instance, tags=tags)
"""


def test_kill_during_silver_leaves_tables_whole_and_a_rerun_finishes(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    first = generate_month(MonthSpec(2025, 1, "c", n_funds=3000, seed=8))
    fake_cvm.publish_month(2025, 1, first)
    pipeline.run("2025-01")
    second = restate(first, seed=2, change_share=0.2, n_add=50, n_remove=50)
    fake_cvm.publish_month(2025, 1, second)
    storage = pipeline.resources["lake"].storage
    lake = pipeline.settings.lake_uri

    child = subprocess.Popen(
        [sys.executable, "-c", RUN_ONE_MONTH, lake, fake_cvm.base_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while "(silver)" not in (storage.read_bytes("_locks/2025-01.lock") or b"").decode():
        assert child.poll() is None and time.monotonic() < deadline, "silver never started"
        time.sleep(0.05)
    time.sleep(1.0)  # inside silver's Spark work or its commits
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    # Whatever the moment of the kill, each table is whole: the first file's month, or the
    # second's, never a mix; and silver's state record never claims more than the table holds.
    old, new = expected_month(first, 2025, 1), expected_month(second, 2025, 1)
    silver_rows = pipeline.rows("silver", "2025-01")
    state = json.loads(storage.read_bytes("_state/silver/2025-01.json"))
    if state["source_sha256"] == new.sha256:
        assert_silver(silver_rows, new.silver, with_line=False)
    else:
        try:
            assert_silver(silver_rows, old.silver)
        except AssertionError:
            assert_silver(silver_rows, new.silver, with_line=False)  # committed, not recorded
    gold_state = json.loads(storage.read_bytes("_state/gold_kpis/2025-01.json"))
    gold_done = gold_state["source_sha256"] == new.sha256
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), new.gold if gold_done else old.gold)
    assert storage.exists("_locks/2025-01.lock")  # left behind by the killed process

    pipeline.run("2025-01")  # takes over the dead process's lock and finishes
    assert_silver(pipeline.rows("silver", "2025-01"), new.silver, with_line=False)
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), new.gold)
    assert not storage.exists("_locks/2025-01.lock")


def test_a_range_killed_halfway_loses_nothing_and_a_rerun_skips_what_was_committed(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    from dagster import materialize

    from cvm210_assets.definitions import ASSETS

    csvs = {m: generate_month(MonthSpec(2024, m, "b", n_funds=400, seed=m)) for m in range(1, 5)}
    for mes, csv in csvs.items():
        fake_cvm.publish_month(2024, mes, csv)
    storage = pipeline.resources["lake"].storage
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_A_RANGE, pipeline.settings.lake_uri, fake_cvm.base_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not storage.exists("_state/silver/2024-02.json"):
        assert child.poll() is None and time.monotonic() < deadline, "silver never got halfway"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    committed = {
        mes: storage.read_bytes(f"_state/silver/2024-{mes:02d}.json") for mes in range(1, 5)
    }
    assert committed[1] is not None and committed[2] is not None
    assert not storage.exists("_state/gold_kpis/2024-04.json")  # killed before the end

    tags = {
        "dagster/asset_partition_range_start": "2024-01",
        "dagster/asset_partition_range_end": "2024-04",
    }
    done = materialize(ASSETS, resources=pipeline.resources, instance=pipeline.instance, tags=tags)

    assert done.success
    for mes, csv in csvs.items():
        expected = expected_month(csv, 2024, mes)
        assert_silver(pipeline.rows("silver", f"2024-{mes:02d}"), expected.silver)
        assert_gold(pipeline.rows("gold_kpis", f"2024-{mes:02d}"), expected.gold)
    # What the killed run committed and recorded was skipped, not done again.
    for mes in (1, 2):
        assert storage.read_bytes(f"_state/silver/2024-{mes:02d}.json") == committed[mes]
    assert not any(storage.exists(f"_locks/2024-{mes:02d}.lock") for mes in range(1, 5))

"""A run killed in the middle of silver: tables stay whole, and the next run finishes the job."""

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

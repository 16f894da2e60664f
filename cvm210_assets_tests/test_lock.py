"""Two runs of one month at once: the second fails cleanly, nothing is written twice."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.lock import MonthBusyError, lock_key, month_lock
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.partitions import Month
from cvm210_assets_tests.conftest import Pipeline

MARCH = Month(2024, 3)


def test_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with month_lock(storage, MARCH, "run A"):
        with pytest.raises(MonthBusyError) as busy, month_lock(storage, MARCH, "run B"):
            pass
        message = str(busy.value)
        assert "2024-03 is being processed by run A" in message
        assert "nothing was written" in message and lock_key(MARCH) in message
        with month_lock(storage, Month(2024, 4), "run B"):  # other months are free
            pass
    with month_lock(storage, MARCH, "run B"):  # released when A ended
        assert json.loads(storage.read_bytes(lock_key(MARCH)))["owner"] == "run B"
    assert not storage.exists(lock_key(MARCH))


def test_lock_is_released_when_the_step_fails(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError, match="step failed"), month_lock(storage, MARCH, "run A"):
        raise RuntimeError("step failed")
    assert not storage.exists(lock_key(MARCH))


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=7)
    storage.write_bytes(
        lock_key(MARCH), json.dumps({"owner": "run X", "since": old.isoformat()}).encode()
    )
    with month_lock(storage, MARCH, "run B"):
        assert json.loads(storage.read_bytes(lock_key(MARCH)))["owner"] == "run B"


def test_a_run_of_a_busy_month_fails_cleanly_and_a_rerun_finishes(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    fake_cvm.publish_month(2024, 3, generate_month(MonthSpec(2024, 3, "b", n_funds=20, seed=1)))
    storage = pipeline.resources["lake"].storage
    with month_lock(storage, MARCH, "run concurrent"):
        busy = pipeline.run("2024-03", raise_on_error=False)

    assert not busy.success
    failure = next(e for e in busy.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "2024-03 is being processed by run concurrent"
        in failure.event_specific_data.error.to_string()
    )
    assert fake_cvm.requests == []  # not even a download
    assert storage.list("") == []

    pipeline.run("2024-03")
    assert pipeline.tables.version("gold_kpis") == 0
    assert not storage.exists(lock_key(MARCH))


def test_the_lock_of_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    storage = LocalStorage(tmp_path)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    held = {
        "owner": "run X",
        "since": now,
        "host": socket.gethostname(),
        "pid": int(finished.stdout),
    }
    storage.write_bytes(lock_key(MARCH), json.dumps(held).encode())
    with month_lock(storage, MARCH, "run B"):
        assert json.loads(storage.read_bytes(lock_key(MARCH)))["owner"] == "run B"

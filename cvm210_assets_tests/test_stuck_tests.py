"""The stuck-test watchdog: a test that runs too long ends the run with its stacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

from cvm210_assets_tests import stuck_tests

STUCK = """
import time

def test_waits_forever():
    time.sleep(600)

def test_never_reached():
    pass
"""


def test_a_stuck_test_stops_the_run_with_its_stack(tmp_path: Path) -> None:
    """Stuck after 2 s: the terminal shows the test's own line (not pytest's), the run is
    interrupted (exit 2) long before the sleep ends, and the next test never starts."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["cvm210_assets_tests.stuck_tests"]\n')
    (tmp_path / "test_stuck.py").write_text(STUCK)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "stuck_seconds=2",
         str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert run.returncode == 2, run.stdout + run.stderr
    assert elapsed < 60
    terminal = run.stdout + run.stderr
    assert "test_stuck.py::test_waits_forever has run 2 s: stuck" in terminal
    where = terminal.split("stuck. Where the test is:")[1].split("===")[0]
    assert 'test_stuck.py", line 5, in test_waits_forever' in where
    assert "pluggy" not in where
    assert "KeyboardInterrupt" in terminal
    assert "test_never_reached" not in terminal


def test_the_jvm_s_working_threads_are_kept(spark: SparkSession) -> None:
    """Of the session's JVM, py4j's threads (which run Python's calls) are shown; the JVM's
    idle service threads are not."""
    (jvm,) = stuck_tests._child_jvms()
    threads = stuck_tests._jvm_threads(jvm)
    assert '"Thread-' in threads
    assert "py4j" in threads
    assert "Reference Handler" not in threads

"""A stuck test ends the run with the stacks of where it is stuck, instead of hanging until CI's
own time limit kills it without a word (a pytest plugin, registered by conftest.py).

The slowest test takes 3 minutes on 2 busy cores; one that runs STUCK_SECONDS is stuck. Then this
prints where the test is, and the threads of this process's JVMs (Spark's) that run this
project's work, to the terminal (past pytest's capture), and interrupts the run: pytest stops
with its summary, which names the test, last on the terminal where a CI log's tail shows it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

STUCK_SECONDS = 600

_TERMINAL = pytest.StashKey[int]()
_SECONDS = pytest.StashKey[float]()

# The JVM threads that do a test's work (py4j's calls from Python, Spark's scheduler and
# tasks); its idle service threads would bury them.
_WORKING_THREAD = re.compile(r'^"(Thread-\d+|Executor task launch|dag-scheduler|main)')
_FRAMES_PER_THREAD = 25
_RUNNER = re.compile(r"[/\\](_pytest|pluggy)[/\\]|<frozen runpy>|pytest[/\\]__main__")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("stuck_seconds", "a test running this long is stuck", default=str(STUCK_SECONDS))


def pytest_configure(config: pytest.Config) -> None:
    """The terminal's stderr, duplicated before any test's capture replaces it."""
    config.stash[_TERMINAL] = os.dup(2)
    config.stash[_SECONDS] = float(config.getini("stuck_seconds"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    seconds, terminal = item.config.stash[_SECONDS], item.config.stash[_TERMINAL]
    timer = threading.Timer(seconds, _report, (item.nodeid, seconds, terminal))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()


def _report(nodeid: str, seconds: float, terminal: int) -> None:
    with os.fdopen(os.dup(terminal), "w") as out:
        out.write(f"\n\n=== {nodeid} has run {seconds:g} s: stuck. Where the test is:\n")
        out.write(_main_thread_stack())
        for pid in _child_jvms():
            out.write(f"\n=== the working threads of JVM {pid}:\n{_jvm_threads(pid)}\n")
        out.write(f"=== {nodeid} is stuck: the run stops here.\n")
    os.kill(os.getpid(), signal.SIGINT)  # pytest ends the session and prints its summary


def _main_thread_stack() -> str:
    """The test's own frames and what they called, without pytest's and pluggy's."""
    frame = sys._current_frames()[threading.main_thread().ident]
    frames = [f for f in traceback.extract_stack(frame) if not _RUNNER.search(f.filename)]
    return "".join(traceback.format_list(frames))


def _child_jvms() -> list[int]:
    """The java processes this one started (Spark's driver JVM, a spark-server's)."""
    me, jvms = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        name, fields = rest.rsplit(") ", 1)
        if name == "(java" and fields.split()[1] == me:
            jvms.append(int(pid))
    return jvms


def _jvm_threads(pid: int) -> str:
    """The working threads' stacks, from the JDK's jcmd (a JRE without it says so)."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return "(no jcmd on PATH: install a JDK for the JVM's stacks)"
    try:
        dump = subprocess.run(
            [jcmd, str(pid), "Thread.print"], capture_output=True, text=True, timeout=60
        ).stdout
    except subprocess.TimeoutExpired:
        return "(jcmd did not answer in 60 s)"
    kept = []
    for block in dump.split("\n\n"):
        if _WORKING_THREAD.match(block.lstrip()):
            kept.append("\n".join(block.strip().splitlines()[: _FRAMES_PER_THREAD + 2]))
    return "\n\n".join(kept) or dump

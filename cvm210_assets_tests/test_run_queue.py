"""Runs that do not fight: the repository's dagster.yaml queues a second run of a month.

`dg dev` on 127.0.0.1 with DAGSTER_HOME holding a link to the repository's dagster.yaml and the
pool's limit set once (`dagster instance concurrency set`), as docs/running.md says. Two runs of
raw_zip for the same month are launched together through the GraphQL API the UI uses. CVM's
file answers slowly the first time, so without the pool the second run would find the month
locked and fail (seen before the pool's limit was set); with it, the second run waits in the
queue until the first ends, and both succeed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.partitions import MONTH_POOL
from cvm210_assets_tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).parent / "dg")

pytestmark = pytest.mark.dagster_processes  # starts `dg dev` and runs through it

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUNS = """
query Runs($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    ... on Runs { results { runId status startTime endTime } }
  }
}"""
ASSETS = "{ assetNodes { assetKey { path } pools } }"


def _query(url: str, query: str, **variables: object) -> dict:
    answer = requests.post(url, json={"query": query, "variables": variables}, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]


def _wait_for_assets(url: str, server: subprocess.Popen, deadline: float) -> dict:
    while time.monotonic() < deadline:
        assert server.poll() is None, "dg dev exited"
        try:
            nodes = _query(url, ASSETS)["assetNodes"]
            if nodes:
                return {n["assetKey"]["path"][-1]: n["pools"] for n in nodes}
        except (requests.RequestException, KeyError, TypeError):
            pass
        time.sleep(1)
    raise AssertionError("dg dev did not serve the code location in time")


def test_two_runs_of_one_month_launched_together_run_one_after_the_other(
    fake_cvm: FakeCvm, tmp_path: Path
) -> None:
    fake_cvm.publish_month(2024, 3, generate_month(MonthSpec(2024, 3, "b", n_funds=5, seed=3)))
    fake_cvm.delay_next("inf_diario_fi_202403.zip", 4)  # the first download holds the lock 4 s
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    port = free_port()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "DAGSTER_HOME": str(home),
        "CVM210_SOURCE_URL": fake_cvm.base_url,
        "CVM210_LAKE_URI": str(tmp_path / "lake"),
    }
    # Without it, Dagster 1.13 creates the pool on the queue's first pass with its runs and
    # counts it only from the next pass: two runs queued together would both start.
    dagster = str(Path(sys.executable).parent / "dagster")
    setting = [dagster, "instance", "concurrency", "set", MONTH_POOL, "1"]
    subprocess.run(setting, env=env, check=True, capture_output=True, timeout=120)
    log = (tmp_path / "dg-dev.log").open("w")
    server = subprocess.Popen(
        [DG, "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its webserver, daemon and code server stop with it
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        pools = _wait_for_assets(url, server, time.monotonic() + 180)
        assert {a for a, p in pools.items() if MONTH_POOL in (p or [])} == {
            "raw_zip", "s3_csv_partition", "bronze", "silver", "gold_kpis",
            "gold_breakdowns", "outflow_alerts", "alert_deliveries",
        }  # fmt: skip
        params = {
            "selector": {
                "repositoryLocationName": "cvm210_assets",
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["raw_zip"]}],
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2024-03"}]},
        }
        launched = [_query(url, LAUNCH, params=params)["launchRun"] for _ in range(2)]
        assert [r["__typename"] for r in launched] == ["LaunchRunSuccess"] * 2, launched
        ids = [r["run"]["runId"] for r in launched]

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = _query(url, RUNS, ids=ids)["runsOrError"]["results"]
            if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
                break
            time.sleep(1)
        runs = sorted(runs, key=lambda r: r["startTime"] or 0)
        assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], runs
        first, second = runs
        assert second["startTime"] >= first["endTime"], runs  # one after the other
        assert fake_cvm.count("GET", "inf_diario_fi_202403.zip") == 2  # the second: HTTP 304
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()

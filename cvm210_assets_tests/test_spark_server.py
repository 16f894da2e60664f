"""Runs attached to a Spark Connect server kept up between them (`cvm210 spark-server`).

The runs are `dagster asset materialize` processes, as a user's would be: a process that
attaches to a server switches PySpark to Connect for good, so it cannot be this test process,
which holds the suite's own SparkSession.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.resources import session_jars, spark_config
from cvm210_assets.settings import SPARK_TOKEN_VAR, Settings
from cvm210_assets.spark_server import (
    SparkServer,
    SparkServerError,
    connect_session,
    server_command,
)
from cvm210_assets_tests.conftest import (
    assert_month_matches_oracle,
    make_pipeline,
    settings_for,
)

pytestmark = pytest.mark.spark  # Spark starts in another process

KEY = "2024-03"
ASSETS = "raw_zip,s3_csv_partition,bronze,silver,gold_kpis"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SparkServer, str, Path]]:
    token = secrets.token_hex(16)
    log = tmp_path_factory.mktemp("spark-server") / "server.log"
    settings = settings_for("unused", "unused")
    conf = spark_config(settings) | session_jars(settings.jar_cache, ["delta"])
    with pytest.MonkeyPatch.context() as env, log.open("wb") as output:
        env.setenv(SPARK_TOKEN_VAR, token)
        with SparkServer(conf, _free_port(), output=output) as up:
            yield up, token, log


def _run(server: SparkServer, token: str, fake: FakeCvm, lake: Path) -> tuple[int, str]:
    """One month through the five assets in a run of its own: exit code and whole output."""
    env = {
        **os.environ,
        "CVM210_SOURCE_URL": fake.base_url,
        "CVM210_LAKE_URI": str(lake),
        "CVM210_SPARK_REMOTE": server.remote,
        SPARK_TOKEN_VAR: token,
        # A run that started Spark in its own process instead would fail on this master.
        "CVM210_SPARK_MASTER": "no-spark-in-the-run-process",
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "cvm210_assets.definitions", "--select", ASSETS, "--partition", KEY,
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    return run.returncode, run.stdout + run.stderr


def _materialize(server: SparkServer, token: str, fake: FakeCvm, lake: Path) -> str:
    code, output = _run(server, token, fake, lake)
    assert code == 0, output[-3000:]
    return output


def _assert_month(lake: Path, csv: bytes, merged: bool = False) -> None:
    assert_month_matches_oracle(make_pipeline(str(lake), "unused"), KEY, csv, merged)


def test_runs_attach_to_the_server_and_a_restatement_merges_through_it(
    server: tuple[SparkServer, str, Path], fake_cvm: FakeCvm, tmp_path: Path
) -> None:
    up, token, log = server
    csv = generate_month(MonthSpec(2024, 3, "b", n_funds=40, seed=4, dirt=True))
    fake_cvm.publish_month(2024, 3, csv)
    lake = tmp_path / "lake"

    first = _materialize(up, token, fake_cvm, lake)
    _assert_month(lake, csv)

    restated = restate(csv, seed=5, change_share=0.1, n_add=3, n_remove=2)
    fake_cvm.publish_month(2024, 3, restated)
    second = _materialize(up, token, fake_cvm, lake)  # a new run, a new session on the server
    _assert_month(lake, restated, merged=True)
    assert make_pipeline(str(lake), "unused").tables.version("silver") == 1

    for text in (first, second, log.read_text(errors="replace")):
        assert token not in text


def test_a_run_with_the_wrong_token_is_refused_and_writes_nothing(
    server: tuple[SparkServer, str, Path], fake_cvm: FakeCvm, tmp_path: Path
) -> None:
    up, _, _ = server
    fake_cvm.publish_month(2024, 3, generate_month(MonthSpec(2024, 3, "b", n_funds=5, seed=4)))
    lake = tmp_path / "lake"
    wrong = "wrong-" + secrets.token_hex(8)

    code, output = _run(up, wrong, fake_cvm, lake)

    assert code != 0
    assert "Invalid authentication token" in output
    assert wrong not in output
    assert make_pipeline(str(lake), "unused").tables.version("bronze") is None


def test_attaching_fails_at_once_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = f"sc://localhost:{_free_port()}"  # nothing listens there
    monkeypatch.delenv(SPARK_TOKEN_VAR, raising=False)
    with pytest.raises(SparkServerError, match=SPARK_TOKEN_VAR):
        connect_session(remote, {})

    token = secrets.token_hex(16)
    monkeypatch.setenv(SPARK_TOKEN_VAR, token)
    started = time.monotonic()
    with pytest.raises(SparkServerError, match="cvm210 spark-server") as error:
        connect_session(remote, {})
    assert time.monotonic() - started < 10  # Spark Connect's own client retries for minutes
    assert remote in str(error.value) and token not in str(error.value)


def test_the_server_listens_on_loopback_and_its_token_stays_off_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SPARK_TOKEN_VAR, "secret-token")
    command = server_command(spark_config(settings_for("unused", "unused")), 15099)

    assert "spark.connect.grpc.binding.address=127.0.0.1" in command
    assert "spark.connect.grpc.binding.port=15099" in command
    assert command[command.index("--master") + 1] == "local[2]"
    assert "spark.driver.memory=2g" in command
    assert not any("secret-token" in part for part in command)


@pytest.mark.parametrize(
    ("value", "compute", "message"),
    [
        ("sc://127.0.0.1:15002", "local", "expected sc://localhost:PORT"),
        ("localhost:15002", "local", "expected sc://localhost:PORT"),
        ("sc://localhost:15002/;token=abc", "local", "expected sc://localhost:PORT"),
        ("sc://localhost:15002", "databricks", "is for local runs"),
    ],
)
def test_remote_setting_is_a_local_connect_address(value: str, compute: str, message: str) -> None:
    env = {
        "CVM210_SPARK_REMOTE": value,
        "CVM210_COMPUTE": compute,
        "CVM210_LAKE_URI": "s3://bucket/lake",
    }
    with pytest.raises(ValueError, match="CVM210_SPARK_REMOTE") as error:
        Settings.from_env(env)
    assert message in str(error.value)


def test_remote_runs_send_only_session_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    local = settings_for("unused", "unused")
    remote = replace(local, spark_remote="sc://localhost:15002")

    assert spark_config(remote) == {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.optimizer.dynamicPartitionPruning.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.databricks.delta.snapshotPartitions": "2",
    }  # no JVM options, no Delta extension: the server has those
    assert spark_config(local)["spark.driver.memory"] == "2g"
    assert spark_config(local)["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "cvm210_assets.cli", "spark-server", *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def test_the_command_stops_its_server_when_it_is_terminated() -> None:
    port = _free_port()
    env = {**os.environ, SPARK_TOKEN_VAR: secrets.token_hex(16), "CVM210_SPARK_DRIVER_MEMORY": "1g"}
    command = _cli("--port", str(port), env=env)
    try:
        assert command.stderr is not None
        said = command.stderr.readline()
        while said and "listening" not in said:  # Spark's own start-up lines come first
            said = command.stderr.readline()
        assert f"listening on sc://localhost:{port}" in said
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

        command.terminate()  # SIGTERM, as `kill` or a service manager sends it
        assert command.wait(timeout=60) == 0
    finally:
        command.kill()
    with pytest.raises(OSError):  # the server went with it: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_command_refuses_to_start_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != SPARK_TOKEN_VAR}
    command = _cli("--port", str(_free_port()), env=env)
    _, said = command.communicate(timeout=60)

    assert command.returncode == 1
    assert f"cvm210 spark-server: {SPARK_TOKEN_VAR} is not set" in said

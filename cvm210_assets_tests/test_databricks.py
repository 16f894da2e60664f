"""CVM210_COMPUTE=databricks: settings checked at load, and the documented CLI run going through
the step launcher to an emulation of Databricks' REST API (databricks_emulator.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from dagster import DagsterInstance, build_resources

from cvm210_assets.databricks import launcher_config, step_launcher
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.maintenance import history
from cvm210_assets.lake.storage import open_storage
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.settings import Settings
from cvm210_assets_tests.conftest import S3_BUCKET
from cvm210_assets_tests.databricks_emulator import DatabricksEmulator
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month

pytestmark = pytest.mark.spark  # Spark starts in another process

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "databricks-cluster.example.yaml"
PLANTED = "planted-SECRET-5d2e8b"
TOKEN = f"dapi-{PLANTED}"
AWS_SECRET = f"aws-{PLANTED}"
SPARK_ASSETS = "bronze,silver,gold_kpis"


def cluster_file(folder: Path) -> Path:
    """The example cluster, sized for local Spark and polled every second, as JSON; its S3 is
    moto's, when a test has started it (s3a, as a cluster reaching MinIO would be set)."""
    content = yaml.safe_load(EXAMPLE.read_text())
    content["run_config"]["cluster"]["new"]["spark_conf"] = {
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.memory": "1g",
        "spark.ui.enabled": "false",
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        content["run_config"]["cluster"]["new"]["spark_conf"] |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        }
    content["poll_interval_sec"] = 1
    path = folder / "cluster.json"
    path.write_text(json.dumps(content))
    return path


def databricks_env(emulator: DatabricksEmulator, folder: Path, **extra: str) -> dict[str, str]:
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CVM210_", "DATABRICKS_"))}
    return {
        **env,
        "CVM210_COMPUTE": "databricks",
        "CVM210_LAKE_URI": f"s3://{S3_BUCKET}/lake",
        "CVM210_DATABRICKS_CLUSTER_FILE": str(cluster_file(folder)),
        "DATABRICKS_HOST": emulator.host,
        "DATABRICKS_TOKEN": TOKEN,
        "DAGSTER_HOME": str(home),
        **extra,
    }


def materialize_command(select: str, partition: str) -> list[str]:
    return [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "cvm210_assets.definitions", "--select", select, "--partition", partition,
    ]  # fmt: skip


def run_logs(home: Path) -> str:
    """Every event of every run Dagster recorded: messages, metadata, errors."""
    with DagsterInstance.from_config(str(home)) as instance:
        return "\n".join(
            repr(record) for run in instance.get_runs() for record in instance.all_logs(run.run_id)
        )


@pytest.fixture
def emulator(tmp_path: Path):
    secrets = {("cvm210", "aws-access-key-id"): "testing"}
    secrets[("cvm210", "aws-secret-access-key")] = AWS_SECRET
    with DatabricksEmulator(tmp_path / "databricks", token=TOKEN, secrets=secrets) as emulator:
        yield emulator


# --- settings, without a cluster -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DATABRICKS_HOST": None}, "needs DATABRICKS_HOST"),
        ({"DATABRICKS_TOKEN": None}, "needs DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID"),
        ({"DATABRICKS_CLIENT_ID": "sp"}, "DATABRICKS_TOKEN and DATABRICKS_CLIENT_ID are both"),
        (
            {"DATABRICKS_TOKEN": None, "DATABRICKS_CLIENT_SECRET": "s"},
            "DATABRICKS_CLIENT_SECRET is set but DATABRICKS_CLIENT_ID is not",
        ),
        ({"CVM210_DATABRICKS_CLUSTER_FILE": None}, "needs CVM210_DATABRICKS_CLUSTER_FILE"),
        ({"CVM210_DATABRICKS_CLUSTER_FILE": "/nowhere.yaml"}, "'/nowhere.yaml': cannot read"),
        ({"CVM210_LAKE_URI": "lake"}, "needs CVM210_LAKE_URI=s3://"),
        ({"CVM210_TABLE_ENGINE": "delta-rs"}, "CVM210_TABLE_ENGINE is no longer read"),
    ],
)
def test_missing_or_contradictory_settings_fail_naming_the_variable(
    change: dict[str, str | None], message: str
) -> None:
    settings = {
        "CVM210_COMPUTE": "databricks",
        "CVM210_LAKE_URI": "s3://bucket/lake",
        "DATABRICKS_HOST": "https://dbc-1.cloud.databricks.com",
        "DATABRICKS_TOKEN": "dapi-x",
        "CVM210_DATABRICKS_CLUSTER_FILE": str(EXAMPLE),
    }
    env = {name: value for name, value in {**settings, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_cluster_file_is_checked_against_the_launcher_schema(tmp_path: Path) -> None:
    env = {
        "CVM210_COMPUTE": "databricks",
        "CVM210_LAKE_URI": "s3://bucket/lake",
        "DATABRICKS_HOST": "https://dbc-1.cloud.databricks.com",
        "DATABRICKS_CLIENT_ID": "sp",
        "DATABRICKS_CLIENT_SECRET": f"oauth-{PLANTED}",
        "CVM210_DATABRICKS_CLUSTER_FILE": str(EXAMPLE),
    }
    settings = Settings.from_env(env)
    config = launcher_config(settings)
    # Credentials are references, never values: OAuth is left to databricks-sdk's environment.
    assert PLANTED not in repr(config)
    assert "databricks_token" not in config
    assert config["env_variables"]["CVM210_LAKE_URI"] == "s3://bucket/lake"

    content = yaml.safe_load(EXAMPLE.read_text())
    content["run_config"]["cluster"]["existing"] = "0101-123456-abcdefgh"
    both = tmp_path / "both.json"
    both.write_text(json.dumps(content))
    env["CVM210_DATABRICKS_CLUSTER_FILE"] = str(both)
    with pytest.raises(ValueError, match=r"exactly one of 'new'.*found \['existing', 'new'\]"):
        Settings.from_env(env)
    content["run_config"]["cluster"] = {"new": {"spark_version": "17.3.x-scala2.13"}}
    both.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"both.json.*Missing required config entries"):
        Settings.from_env(env)


# --- through the emulated workspace ------------------------------------------------------------


def test_month_on_databricks_equals_the_oracle_and_leaks_nothing(
    emulator: DatabricksEmulator, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto accepts any key pair
    csv_bytes = generate_month(MonthSpec(2024, 3, "b", n_funds=12, seed=7, dirt=True))
    with FakeCvm() as fake:
        fake.publish_month(2024, 3, csv_bytes)
        env = databricks_env(emulator, tmp_path, CVM210_SOURCE_URL=fake.base_url)
        run = subprocess.run(
            materialize_command(f"raw_zip,s3_csv_partition,{SPARK_ASSETS}", "2024-03"),
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]

    # The three Spark steps ran on the "cluster", each from the uploaded package alone.
    runs = list(emulator.runs.values())
    assert [r.result_state for r in runs] == ["SUCCESS"] * 3
    assert runs[0].task["new_cluster"]["autoscale"] == {"min_workers": 1, "max_workers": 4}
    packages = {lib["pypi"]["package"].split("==")[0] for lib in runs[0].task["libraries"]}
    assert {"dagster", "dagster-databricks", "dagster-pyspark", "deltalake"} <= packages
    for r in runs:
        driver = r.log.read_text()
        assert "cvm210_assets imported from: /tmp/" in driver, driver[-2000:]
        assert f"from: {ROOT}" not in driver
    zips = [p for p in emulator.uploads() if p.name == "code.zip"]
    assert len(zips) == 3
    names = zipfile.ZipFile(zips[0]).namelist()
    assert "cvm210_assets/definitions.py" in names
    assert all(n.startswith("cvm210_assets/") and "__pycache__" not in n for n in names)

    # The tables equal the oracle's month, as a local run's do (test_pipeline.py).
    tables = DeltaRsTables(open_storage(env["CVM210_LAKE_URI"], lambda: boto3.client("s3")))
    month = Month.from_key("2024-03")
    expected = expected_month(csv_bytes, 2024, 3)

    def rows(table: str) -> list[dict[str, Any]]:
        arrow = tables.read_month_arrow(table, month)
        return [{**r, "ano": 2024, "mes": 3} for r in arrow.to_pylist()]

    assert_silver(rows("silver"), expected.silver)
    assert_rejects(rows("silver_rejects"), expected)
    assert_gold(rows("gold_kpis"), expected.gold)
    assert tables.month_rows("bronze", month) == len(expected.silver) + len(expected.rejects)
    # Written on the cluster by Delta Lake's own Spark engine, as a real cluster writes them.
    for table in ("bronze", "silver", "silver_rejects", "gold_kpis"):
        (commit,) = history(tables, table)
        assert commit["engineInfo"].startswith("Apache-Spark/"), commit
        assert "Delta-Lake/" in commit["engineInfo"]

    # The token and the AWS secret (the cluster's comes from the secret scope) are nowhere.
    seen = [run.stdout, run.stderr, run_logs(tmp_path / "dagster_home")]
    for path in emulator.uploads():
        seen.append(path.read_bytes().decode("latin-1"))
        if path.suffix == ".zip":
            archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
            seen += [archive.read(n).decode("latin-1") for n in archive.namelist()]
    seen += [r.log.read_text() for r in runs]
    assert "Materialized value gold_kpis" in seen[2] or "ASSET_MATERIALIZATION" in seen[2]
    assert [text for text in seen if PLANTED in text] == []


def test_a_step_failing_on_the_cluster_fails_the_run_with_the_clusters_error(
    emulator: DatabricksEmulator, tmp_path: Path
) -> None:
    emulator.secrets.clear()  # the secret scope lacks the AWS keys the cluster file maps
    env = databricks_env(emulator, tmp_path)
    run = subprocess.run(
        materialize_command("bronze", "2024-03"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert len(emulator.runs) == 1, run.stderr[-3000:]
    (failed,) = emulator.runs.values()
    assert failed.result_state == "FAILED"
    logs = run_logs(tmp_path / "dagster_home")
    error = "Secret does not exist with scope: cvm210 and key: aws-access-key-id"
    assert f"failed on the cluster: RuntimeError: {error}" in logs
    assert "STEP_FAILURE" in logs
    assert PLANTED not in logs + run.stdout + run.stderr


def test_interrupting_the_dagster_run_cancels_the_databricks_run(
    emulator: DatabricksEmulator, tmp_path: Path
) -> None:
    env = databricks_env(emulator, tmp_path)
    process = subprocess.Popen(
        materialize_command("bronze", "2024-03"),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        run = emulator.wait_for_run()
        assert run.process is not None and run.process.poll() is None
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert emulator.cancelled == [run.run_id], output[-3000:]
    assert run.cancelled and run.result_state == "CANCELED"
    assert run.process.poll() is not None
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.returncode != 0


def test_oauth_client_credentials_reach_the_workspace(
    emulator: DatabricksEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.oauth_clients["cvm210-sp"] = f"oauth-{PLANTED}"
    env = databricks_env(emulator, tmp_path)
    del env["DATABRICKS_TOKEN"]
    env |= {"DATABRICKS_CLIENT_ID": "cvm210-sp", "DATABRICKS_CLIENT_SECRET": f"oauth-{PLANTED}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    with build_resources({"launcher": step_launcher(settings)}) as resources:
        client = resources.launcher.databricks_runner.client
        client.put_file(io.BytesIO(b"probe"), "dbfs:///probe.txt")
    assert emulator.local("/probe.txt").read_bytes() == b"probe"
    assert ("POST", "/oidc/v1/token") in emulator.calls

    validate = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate",
         "-m", "cvm210_assets.definitions"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stderr[-3000:]

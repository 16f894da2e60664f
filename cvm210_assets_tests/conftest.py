"""Shared fixtures: one SparkSession for the whole run, a fake CVM, and a pipeline on a lake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, ExecuteInProcessResult, materialize

from cvm210_assets.assets.bronze import Bronze
from cvm210_assets.assets.gold import GoldKpis
from cvm210_assets.assets.silver import Silver
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.settings import Settings
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month

# A test stuck for 10 minutes stops the run with its stacks (stuck_tests.py).
pytest_plugins = ["cvm210_assets_tests.stuck_tests"]

# moto's S3 takes any key pair. The secret is planted: test_secrets looks for it everywhere.
S3_SECRET_PLANTED = "planted-SECRET-7f3c9a1e"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": f"aws-{S3_SECRET_PLANTED}",
}

# Tests never read the user's configuration, but do find the tools the set-up put in place:
# its jars, and the browser the browser test drives.
MACHINE_SETTINGS = {"CVM210_JAR_CACHE", "CVM210_CHROMIUM", "CVM210_CHROMEDRIVER"}
for _name in [n for n in os.environ if n.startswith("CVM210_") and n not in MACHINE_SETTINGS]:
    del os.environ[_name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the SparkSession (directly or through a pipeline) is `spark`;
    modules that start Spark in another process say so themselves (`pytestmark`)."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)


def settings_for(lake_uri: str, source_url: str) -> Settings:
    return Settings(
        lake_uri=lake_uri,
        source_url=source_url,
        compute="local",
        spark_master="local[2]",
        spark_driver_memory="2g",
        spark_shuffle_partitions=2,
        # moto's S3, when a test's lake is there (the s3_endpoint fixture sets these).
        aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        aws_region=os.environ.get("AWS_REGION"),
    )


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run; the pipeline's lazy resource reuses it."""
    from pyspark.sql import SparkSession

    from cvm210_assets.resources import session_jars, spark_config

    # A run's session lives for one run; this one for 550 tests, with what Spark keeps of
    # each (broadcasts until its cleaner runs, caches): in 2 GB it spent the last tests
    # collecting garbage more than working, where a CI run once stalled.
    settings = replace(settings_for("unused", "unused"), spark_driver_memory="3g")
    # Delta Lake's jars, and s3a's for the tests whose lake is on moto's S3.
    conf = spark_config(settings) | session_jars(settings.jar_cache, ("delta", "s3"))
    # s3:// through s3a, as an s3:// lake's own session has it (resources.s3a_config); each S3
    # test has its own moto server, which `spark_reaches` points the session at.
    conf["spark.hadoop.fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    conf["spark.hadoop.fs.s3.impl.disable.cache"] = "true"
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    # The JVM reads S3 credentials from its environment when it starts, as a run's own does;
    # this process's environment stays without them until a test asks for S3.
    saved = {name: os.environ.get(name) for name in S3_CREDENTIALS}
    os.environ.update(S3_CREDENTIALS)
    try:
        session = builder.getOrCreate()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _forget_earlier_modules_tables() -> Iterator[None]:
    """Delta Lake's cache keeps a snapshot, with its plans, of every table the session has
    read; each test's lake is its own, so after a module its tables are only weight on the
    shared session's heap (a run's session reads ten tables, the test session hundreds)."""
    yield
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is not None:
        context._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@pytest.fixture
def fake_cvm() -> Iterator[FakeCvm]:
    with FakeCvm() as fake:
        yield fake


@dataclass
class Pipeline:
    """The five assets wired to a lake folder (or bucket) and a fake CVM."""

    settings: Settings
    instance: DagsterInstance
    resources: dict[str, Any]

    def run(self, key: str, raise_on_error: bool = True) -> ExecuteInProcessResult:
        from cvm210_assets.definitions import ASSETS

        return materialize(
            ASSETS,
            partition_key=key,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    @property
    def tables(self) -> DeltaRsTables:
        return DeltaRsTables(self.resources["lake"].storage)

    def rows(self, table: str, key: str) -> list[dict[str, Any]]:
        month = Month.from_key(key)
        arrow = self.tables.read_month_arrow(table, month)
        rows = [] if arrow is None else arrow.to_pylist()
        return [{**row, "ano": month.ano, "mes": month.mes} for row in rows]


def assert_month_matches_oracle(
    pipeline: Pipeline, key: str, csv: bytes, merged: bool = False
) -> None:
    """Bronze, silver, rejects and gold of the month equal the oracle's for `csv`. After a
    MERGE (`merged`), silver's unchanged rows keep the line of the version that wrote them."""
    month = Month.from_key(key)
    expected = expected_month(csv, month.ano, month.mes)
    assert len(pipeline.rows("bronze", key)) == len(expected.bronze)
    assert_silver(pipeline.rows("silver", key), expected.silver, with_line=not merged)
    assert_rejects(pipeline.rows("silver_rejects", key), expected)
    assert_gold(pipeline.rows("gold_kpis", key), expected.gold)


def make_pipeline(lake_uri: str, source_url: str) -> Pipeline:
    from cvm210_assets.resources import build_resources

    settings = settings_for(lake_uri, source_url)
    return Pipeline(settings, DagsterInstance.ephemeral(), build_resources(settings))


@pytest.fixture
def pipeline(spark, fake_cvm: FakeCvm, tmp_path: Path) -> Pipeline:
    return make_pipeline(str(tmp_path / "lake"), fake_cvm.base_url)


def materialization_metadata(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The metadata values of the run's (only) materialization of `asset`."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def check_results(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


# The checks of the Spark assets, by asset: each has a verdict per month.
MONTHLY_CHECKS = {
    asset.name: [check.name for check in asset.checks] for asset in (Bronze, Silver, GoldKpis)
}


def check_partitions(instance: DagsterInstance, asset: str, check: str) -> dict[str, str]:
    """Each month's status in the check's Partitions view (SUCCEEDED, FAILED, ...): the state
    Dagster's GraphQL `partitionStatuses` of the check reads (AssetCheckState)."""
    key = AssetCheckKey(AssetKey(asset), check)
    state = instance.event_log_storage.get_asset_check_state([(key, monthly_partitions)])[key]
    return {
        month: status.value
        for status, subset in state.subsets.items()
        for month in subset.subset_value.get_partition_keys()
    }


def check_status(instance: DagsterInstance, asset: str, check: str) -> str | None:
    """An unpartitioned check's status on the asset's latest materialization, as the UI shows it
    (None: no verdict on that materialization)."""
    key = AssetCheckKey(AssetKey(asset), check)
    state = instance.event_log_storage.get_asset_check_state([(key, None)])[key]
    return next((s.value for s, subset in state.subsets.items() if not subset.is_empty), None)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(
    url: str, server: subprocess.Popen, seconds: float, what: str, log: Path | None = None
) -> None:
    """Until `url` answers; RuntimeError naming `what` (and the tail of its `log`) when the
    server exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} did not start\n{tail}".rstrip()) from None
            time.sleep(0.1)


def cli_env(fake_cvm: FakeCvm, lake: Path, home: Path) -> dict[str, str]:
    """The environment of a Dagster command a test runs as a user would: the fake CVM, a lake
    and a DAGSTER_HOME of the test's own, few shuffle partitions."""
    return {
        **os.environ,
        "CVM210_SOURCE_URL": fake_cvm.base_url,
        "CVM210_LAKE_URI": str(lake),
        "CVM210_SPARK_SHUFFLE_PARTITIONS": "2",
        "DAGSTER_HOME": str(home),
    }


S3_BUCKET = "cvm210-test"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server in a child process on 127.0.0.1.

    Not in a thread of this process: delta-rs holds the GIL while it waits for S3, so a Python
    server thread could never answer it.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{endpoint}/moto-api/", server, 30, "moto's S3 server")
    except RuntimeError:
        server.kill()
        raise
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        **S3_CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def spark_reaches(spark, endpoint: str) -> None:
    """Point the test run's one session at an S3 endpoint, as an s3:// lake's own session is
    started pointing at it (resources.s3a_config). At runtime, Spark copies session settings
    into the Hadoop configuration of every read and write, without the spark.hadoop. prefix."""
    spark.conf.set("fs.s3a.endpoint", endpoint)
    spark.conf.set("fs.s3a.path.style.access", "true")
    spark.conf.set("fs.s3a.connection.ssl.enabled", "false")
    spark.conf.set("fs.s3a.endpoint.region", "us-east-1")


@pytest.fixture
def s3_lake(spark, s3_endpoint: str) -> Iterator[str]:
    """moto's S3, with the test run's Spark pointed at it."""
    spark_reaches(spark, s3_endpoint)
    yield s3_endpoint
    for name in ("endpoint", "path.style.access", "connection.ssl.enabled", "endpoint.region"):
        spark.conf.unset(f"fs.s3a.{name}")


def fragment_month(tables: DeltaRsTables, table: str, month: Month, pieces: int) -> None:
    """Rewrite a month as `pieces` small files (same rows), as many small writes leave it."""
    from deltalake import write_deltalake

    arrow = tables.read_month_arrow(table, month)
    arrow = arrow.append_column("ano", [[month.ano] * arrow.num_rows]).append_column(
        "mes", [[month.mes] * arrow.num_rows]
    )
    arrow = arrow.cast(tables.dataset(table).schema)
    size = -(-arrow.num_rows // pieces)
    for n in range(pieces):
        write_deltalake(
            tables.uri(table),
            arrow.slice(n * size, size),
            mode="overwrite" if n == 0 else "append",
            predicate=f"ano = {month.ano} AND mes = {month.mes}" if n == 0 else None,
            partition_by=["ano", "mes"],
            storage_options=tables.options,
        )

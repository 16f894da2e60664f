"""Resources: the I/O of the pipeline. Assets get the lake, the CVM source and Spark from here."""

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from dagster import (
    ConfigurableResource,
    InitResourceContext,
    ResourceDefinition,
    ResourceParam,
    StepLauncher,
)
from dagster_pyspark import LazyPySparkResource
from dagster_pyspark.resources import spark_session_from_config
from pydantic import Field, PrivateAttr

from cvm210_assets import __version__
from cvm210_assets.alerts.channels import AlertDelivery, OutflowRules
from cvm210_assets.jvm_archive import driver_java_options
from cvm210_assets.lake.lock import month_lock
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.lake.spark_tables import SparkDeltaTables
from cvm210_assets.lake.storage import LakeStorage, open_storage
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.settings import DEFAULT_BATCH_ROWS, Settings
from cvm210_assets.source.download import Downloaded, NotFound, NotModified, RetryPolicy, download
from cvm210_assets.source.probe import Version, observe
from cvm210_assets.spark_jars import JarCache
from cvm210_assets.spark_server import connect_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# What a Spark asset declares to be launchable: the Databricks step launcher, or None (the step
# runs in this process). Dagster launches a step through the StepLauncher among its resources.
SparkStepLauncher = ResourceParam[StepLauncher | None]


class CvmSource(ConfigurableResource):
    """CVM's inf_diario folder over HTTP(S): timeouts and bounded retries with backoff."""

    base_url: str
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0
    attempts: int = 5
    backoff_seconds: float = 1.0

    _session: requests.Session | None = PrivateAttr(default=None)

    @property
    def session(self) -> requests.Session:
        """The one HTTP client that talks to CVM: downloads and probes alike."""
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = f"cvm210/{__version__}"
        return self._session

    def fetch(
        self, url: str, dest: Path, etag: str | None = None, last_modified: str | None = None
    ) -> Downloaded | NotModified | NotFound:
        return download(
            self.session,
            url,
            dest,
            timeout=(self.connect_timeout_seconds, self.read_timeout_seconds),
            retry=RetryPolicy(attempts=self.attempts, backoff_seconds=self.backoff_seconds),
            etag=etag,
            last_modified=last_modified,
        )

    def observe(
        self, months: Sequence[Month], max_requests: int, read_timeout_seconds: float
    ) -> dict[Month, Version]:
        """The current version of each month's file on CVM, by HTTP HEAD (source/probe.py):
        at most `max_requests`; raises ProbeError at CVM's first error."""
        timeout = (self.connect_timeout_seconds, read_timeout_seconds)
        return observe(self.session, self.base_url, months, max_requests, timeout)


class Lake(ConfigurableResource):
    """The lake root (a folder or s3://bucket/prefix): raw zone, state records, Delta tables."""

    uri: str
    # boto3's attempts at each S3 request of an s3:// lake (its standard retry mode).
    s3_max_attempts: int = 5
    # A range's months share Spark jobs up to this many input rows a batch (assets/monthly.py).
    batch_rows: int = DEFAULT_BATCH_ROWS
    # How long vacuum keeps old versions readable (upkeep.py); never below MIN_TIME_TRAVEL.
    time_travel_days: int = 30

    _storage: LakeStorage | None = PrivateAttr(default=None)

    def _s3_client(self) -> Any:
        """boto3's S3 client: region, endpoint and credentials from the environment
        (AWS_REGION, AWS_ENDPOINT_URL, ...) as boto3 reads them. Not dagster-aws's S3Resource,
        which did the same: importing dagster-aws cost every load of the code location 0.8 to
        1.9 s (its components import Dagster's test utilities)."""
        import boto3  # only an s3:// lake pays for it
        from botocore.config import Config

        retries = {"max_attempts": self.s3_max_attempts, "mode": "standard"}
        return boto3.session.Session().client("s3", config=Config(retries=retries))

    @property
    def storage(self) -> LakeStorage:
        if self._storage is None:
            self._storage = open_storage(self.uri, self._s3_client)
        return self._storage

    @property
    def state(self) -> StateStore:
        return StateStore(self.storage)

    def spark_tables(self, spark: "SparkSession") -> SparkDeltaTables:
        """The Delta tables through Delta Lake's Spark engine: what every Spark step uses."""
        return SparkDeltaTables(self.storage, spark)

    @property
    def tables(self) -> DeltaRsTables:
        """The Delta tables through delta-rs: for what runs without Spark (registry, deliveries,
        the few-row reads of checks and state), here and on the machine running Dagster."""
        return DeltaRsTables(self.storage)

    def month_lock(self, month: Month, owner: str) -> AbstractContextManager[None]:
        """Hold the month for one step: a concurrent run of it fails cleanly instead."""
        return month_lock(self.storage, month, owner)


# The local driver's JVM: the throughput collector leaves both cores of a laptop to the work,
# where G1's concurrent threads compete with it (about 10 % on a 1.5 M-row month). And the JIT
# compiles methods of any size: Spark's generated code for a wide projection (silver's rules,
# one method over every column) is larger than the 8 kB HotSpot otherwise leaves interpreted,
# which made judging a row 3x slower.
DRIVER_JVM_OPTIONS = "-XX:+UseParallelGC -XX:-DontCompileHugeMethods"

# A run with fewer input rows than this starts its JVM with the JIT's first compiler alone. Most
# of a small run's CPU is the second compiler (C2) optimizing Spark's planner and Delta's commit
# code that runs a few thousand times and never again: C1 alone halves a 20-row month's JVM CPU
# (52 -> 27 s) and saves a quarter at 0.67 M rows, while a 3.74 M-row range needs C2 (203 s of
# JVM CPU with it, 322 without): the two cross at about 1.3 M rows (benchmarks/README.md).
SMALL_RUN_ROWS = 1_000_000
SMALL_RUN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"

# Delta Lake in a local Spark, as a Databricks cluster has it built in.
DELTA_EXTENSIONS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def spark_config(settings: Settings) -> dict[str, Any]:
    """Local Spark sized for a laptop: few shuffle partitions, Arrow on, UTC timestamps, Delta
    Lake's extension and catalog (its jars join at the session's start: `session_jars`).

    On a Databricks cluster the session exists already and is sized by the cluster's own
    settings: only the session settings the transforms depend on are applied to it.
    """
    session = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Timestamps as Parquet's own type, not the legacy INT96: what delta-rs, Arrow and
        # DuckDB read best.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Dynamic partition pruning filters a scan by the months of the frame it is joined to,
        # and gold's event rules join frames of silver's own months to silver on (ano, mes):
        # it pruned nothing and planned ten subqueries that scanned silver again (19 scans of
        # it in gold's plan, 7 without; a 3.7 M-row batch's KPIs 10-25 % less JVM CPU). Every
        # read of the lake names its months, which prunes statically.
        "spark.sql.optimizer.dynamicPartitionPruning.enabled": "false",
    }
    if settings.on_databricks_cluster:
        return session
    session["spark.sql.shuffle.partitions"] = str(settings.spark_shuffle_partitions)
    # Delta reads a table's log in this many tasks; its default (50) is sized for clusters.
    session["spark.databricks.delta.snapshotPartitions"] = str(settings.spark_shuffle_partitions)
    if settings.spark_remote:
        return session  # the server's JVM is sized by `cvm210 spark-server`, with the rest
    return {
        **session,
        **DELTA_EXTENSIONS,
        **s3a_config(settings),
        "spark.master": settings.spark_master,
        "spark.app.name": "cvm210",
        "spark.driver.memory": settings.spark_driver_memory,
        # The class archive (jvm_archive.py) halves the session's start when setup built it.
        "spark.driver.extraJavaOptions": driver_java_options(DRIVER_JVM_OPTIONS),
        "spark.default.parallelism": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Without a UI to show them, Spark still keeps its last 1000 queries' plans and
        # metrics, and their jobs' and stages': a range run's thousands of queries would hold
        # a gigabyte of a 2 GB driver (and GC it over and over) for nobody.
        **RETAINED_HISTORY,
    }


# How much of its past queries' plans, jobs and stages a local session keeps in memory.
RETAINED_HISTORY = {
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.retainedJobs": "50",
    "spark.ui.retainedStages": "50",
}


def s3a_config(settings: Settings) -> dict[str, str]:
    """s3:// through Hadoop's s3a (hadoop-aws), as Databricks reads s3:// natively; an
    S3-compatible endpoint when one is set. Credentials: s3a reads the environment's own."""
    if not settings.lake_uri.startswith("s3://"):
        return {}
    conf = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    if settings.aws_region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = settings.aws_region
    if settings.aws_endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.aws_endpoint_url
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        if settings.aws_endpoint_url.startswith("http://"):
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    return conf


def jar_groups(settings: Settings) -> tuple[str, ...]:
    """The jar groups (spark_jars.py) a local session on this lake loads."""
    return ("delta", "s3") if settings.lake_uri.startswith("s3://") else ("delta",)


def session_jars(jar_cache: str | Path, groups: Sequence[str]) -> dict[str, str]:
    """The driver's class path with the cached jars; raises MissingJars naming the fix."""
    return {"spark.driver.extraClassPath": JarCache(Path(jar_cache)).class_path(tuple(groups))}


class SparkSessionResource(LazyPySparkResource):
    """The run's Spark: started in this process when a step first asks for it, with Delta
    Lake's jars from the set-up's cache, or a session on the Spark Connect server at `remote`
    (spark_server.py), released when the run ends."""

    remote: str | None = None
    jar_cache: str = ""
    jar_groups: list[str] = Field(default_factory=lambda: ["delta"])
    _input_rows: int | None = PrivateAttr(default=None)

    def expect_rows(self, rows: int) -> None:
        """The input rows the run's first Spark step will process: a local JVM not yet started
        is started for that size (SMALL_RUN_ROWS). Later steps reuse the JVM whatever theirs."""
        if self._spark_session is None and self._input_rows is None:
            self._input_rows = rows

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False  # ours, though it extends dagster-pyspark's

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        if self.remote:
            self._spark_session = connect_session(self.remote, self.spark_config)
            return
        conf = dict(self.spark_config)
        if "spark.master" in conf:  # a local JVM (on a cluster the session exists already)
            conf |= session_jars(self.jar_cache, self.jar_groups)
            if self._input_rows is not None and self._input_rows < SMALL_RUN_ROWS:
                options = conf.get("spark.driver.extraJavaOptions", "")
                conf["spark.driver.extraJavaOptions"] = f"{options} {SMALL_RUN_JVM_OPTIONS}"
        self._spark_session = spark_session_from_config(conf)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self.remote and self._spark_session is not None:
            self._spark_session.stop()  # frees the run's cached rows on the server


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for the deployment the settings describe."""
    if settings.databricks:  # dagster-databricks loads only where steps are launched with it
        from cvm210_assets.databricks import step_launcher
    return {
        "cvm": CvmSource(base_url=settings.source_url),
        "lake": Lake(
            uri=settings.lake_uri,
            batch_rows=settings.spark_batch_rows,
            time_travel_days=settings.automation.time_travel_days,
        ),
        # Lazy: no JVM starts until a step asks for the session, so steps that skip unchanged
        # months, and the local side of a launched step, never pay for one.
        "pyspark": SparkSessionResource(
            spark_config=spark_config(settings),
            remote=settings.spark_remote,
            jar_cache=str(settings.jar_cache),
            jar_groups=list(jar_groups(settings)),
        ),
        # The Spark assets' launcher: Databricks where Dagster launches steps onto a cluster;
        # nothing locally or on the cluster itself, where the step runs in this process.
        "step_launcher": (
            step_launcher(settings)
            if settings.databricks
            else ResourceDefinition.none_resource(description="Spark steps run in this process.")
        ),
        # Outflow alerts (docs/alerts.md): thresholds read when the code location loads,
        # and the channels; credentials are read from the environment only when sending.
        "outflow_rules": OutflowRules.from_file(settings.alerts.rules_file),
        "alert_delivery": AlertDelivery.from_settings(settings.alerts),
    }

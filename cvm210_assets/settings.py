"""Settings read from the environment, with the defaults a laptop needs (README, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cvm210_assets.databricks_settings import DatabricksSettings
from cvm210_assets.source.urls import CVM_DADOS_URL
from cvm210_assets.spark_jars import cache_dir
from cvm210_assets.spark_server import remote_port

COMPUTE_CHOICES = ("local", "databricks")


def lake_uri(value: str) -> str:
    """A lake URI as given, or a folder made absolute (runs may start in other folders)."""
    return value if "://" in value else str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class Settings:
    lake_uri: str
    source_url: str
    compute: str
    spark_master: str
    spark_driver_memory: str
    spark_shuffle_partitions: int
    # A range's months share Spark jobs up to this many input rows a batch (assets/monthly.py):
    # 4 M rows fit a 2 GB driver: the largest cache, silver's judged rows, is about 60 bytes
    # a row (240 MB); sorts for the writes spill to disk when they must.
    spark_batch_rows: int = 4_000_000
    # Where scripts/setup.sh put Delta Lake's Spark jars (spark_jars.py).
    jar_cache: Path = field(default_factory=lambda: cache_dir(os.environ))
    # An S3-compatible endpoint (moto, MinIO) and region, for local Spark on an s3:// lake;
    # credentials are never settings: Spark's s3a and boto3 read them from the environment.
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    # Set where Dagster launches Spark steps onto Databricks; None where they run in this
    # process: locally, or on the cluster itself (Databricks sets DATABRICKS_RUNTIME_VERSION).
    databricks: DatabricksSettings | None = None
    on_databricks_cluster: bool = False
    # sc://localhost:PORT of a Spark Connect server kept up between runs (spark_server.py);
    # None where each run starts Spark in its own process.
    spark_remote: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        lake = lake_uri(env.get("CVM210_LAKE_URI") or "lake")
        compute = env.get("CVM210_COMPUTE", "local").strip().lower() or "local"
        if compute not in COMPUTE_CHOICES:
            raise ValueError(
                f"CVM210_COMPUTE={compute!r}: expected one of {', '.join(COMPUTE_CHOICES)}"
            )
        partitions = env.get("CVM210_SPARK_SHUFFLE_PARTITIONS", "4")
        if not partitions.isdigit() or int(partitions) < 1:
            raise ValueError(f"CVM210_SPARK_SHUFFLE_PARTITIONS={partitions!r}: expected >= 1")
        batch_rows = env.get("CVM210_SPARK_BATCH_ROWS", "4000000")
        if not batch_rows.isdigit() or int(batch_rows) < 1:
            raise ValueError(f"CVM210_SPARK_BATCH_ROWS={batch_rows!r}: expected >= 1")
        if env.get("CVM210_TABLE_ENGINE"):
            raise ValueError(
                "CVM210_TABLE_ENGINE is no longer read: Spark steps always use Delta Lake's Spark"
                " engine, locally as on Databricks (README, Where it runs); unset it"
            )
        remote = _spark_remote(env.get("CVM210_SPARK_REMOTE", ""), compute)
        on_cluster = bool(env.get("DATABRICKS_RUNTIME_VERSION"))
        if compute == "databricks" and not lake.startswith("s3://"):
            raise ValueError(
                f"CVM210_COMPUTE=databricks needs CVM210_LAKE_URI=s3://bucket/prefix (the"
                f" cluster and the machine running Dagster share the lake); got {lake!r}"
            )
        return cls(
            lake_uri=lake,
            source_url=env.get("CVM210_SOURCE_URL") or CVM_DADOS_URL,
            compute=compute,
            spark_master=env.get("CVM210_SPARK_MASTER", "local[*]"),
            # The JVM grows its heap to this bound, so the bound is the JVM's size: 2 GB plus the
            # JVM's own ~0.6 GB keep a run, Python included, under 4 GB (README, Performance).
            spark_driver_memory=env.get("CVM210_SPARK_DRIVER_MEMORY", "2g"),
            spark_shuffle_partitions=int(partitions),
            spark_batch_rows=int(batch_rows),
            jar_cache=cache_dir(env),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            databricks=(
                DatabricksSettings.from_env(env)
                if compute == "databricks" and not on_cluster
                else None
            ),
            on_databricks_cluster=compute == "databricks" and on_cluster,
            spark_remote=remote,
        )


def _spark_remote(value: str, compute: str) -> str | None:
    if not value.strip():
        return None
    if compute != "local":
        raise ValueError(
            "CVM210_SPARK_REMOTE is for local runs: with CVM210_COMPUTE=databricks the Spark"
            " steps run on the cluster"
        )
    remote_port(value.strip())  # raises, naming the variable, when it is not sc://localhost:PORT
    return value.strip()

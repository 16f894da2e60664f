"""Settings read from the environment, with the defaults a laptop needs (README, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvm210_assets.databricks import DatabricksSettings
from cvm210_assets.source.urls import CVM_DADOS_URL
from cvm210_assets.spark_server import remote_port

COMPUTE_CHOICES = ("local", "databricks")
TABLE_ENGINES = ("delta-rs", "delta-spark")


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
    table_engine: str = "delta-rs"
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
        engine = env.get("CVM210_TABLE_ENGINE") or (
            "delta-spark" if compute == "databricks" else "delta-rs"
        )
        if engine not in TABLE_ENGINES:
            raise ValueError(
                f"CVM210_TABLE_ENGINE={engine!r}: expected one of {', '.join(TABLE_ENGINES)}"
            )
        if engine == "delta-spark" and compute != "databricks":
            raise ValueError(
                "CVM210_TABLE_ENGINE=delta-spark needs CVM210_COMPUTE=databricks: local Spark"
                " has no Delta Lake jars (local tables go through delta-rs)"
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
            spark_driver_memory=env.get("CVM210_SPARK_DRIVER_MEMORY", "4g"),
            spark_shuffle_partitions=int(partitions),
            table_engine=engine,
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

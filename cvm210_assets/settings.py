"""Settings read from the environment, with the defaults a laptop needs (README, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvm210_assets.source.urls import CVM_DADOS_URL

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

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        lake = lake_uri(env.get("CVM210_LAKE_URI") or "lake")
        compute = env.get("CVM210_COMPUTE", "local").strip().lower()
        if compute not in COMPUTE_CHOICES:
            raise ValueError(
                f"CVM210_COMPUTE={compute!r}: expected one of {', '.join(COMPUTE_CHOICES)}"
            )
        partitions = env.get("CVM210_SPARK_SHUFFLE_PARTITIONS", "4")
        if not partitions.isdigit() or int(partitions) < 1:
            raise ValueError(f"CVM210_SPARK_SHUFFLE_PARTITIONS={partitions!r}: expected >= 1")
        return cls(
            lake_uri=lake,
            source_url=env.get("CVM210_SOURCE_URL") or CVM_DADOS_URL,
            compute=compute,
            spark_master=env.get("CVM210_SPARK_MASTER", "local[*]"),
            spark_driver_memory=env.get("CVM210_SPARK_DRIVER_MEMORY", "4g"),
            spark_shuffle_partitions=int(partitions),
        )

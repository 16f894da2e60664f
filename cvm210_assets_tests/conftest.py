"""Shared fixtures: one SparkSession for the whole run, a fake CVM, and a pipeline on a lake."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize

from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.settings import Settings

# Tests never read the user's configuration.
for _name in [n for n in os.environ if n.startswith("CVM210_")]:
    del os.environ[_name]


def settings_for(lake_uri: str, source_url: str) -> Settings:
    return Settings(
        lake_uri=lake_uri,
        source_url=source_url,
        compute="local",
        spark_master="local[2]",
        spark_driver_memory="2g",
        spark_shuffle_partitions=2,
    )


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run; the pipeline's lazy resource reuses it."""
    from pyspark.sql import SparkSession

    from cvm210_assets.resources import spark_config

    builder = SparkSession.builder
    for key, value in spark_config(settings_for("unused", "unused")).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


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

"""The local Spark session a run starts: its JIT is matched to the rows the run will process."""

import pytest

from cvm210_assets import resources
from cvm210_assets.assets.monthly import Work
from cvm210_assets.resources import (
    DRIVER_JVM_OPTIONS,
    SMALL_RUN_JVM_OPTIONS,
    SMALL_RUN_ROWS,
    SparkSessionResource,
)
from cvm210_assets.settings import Settings


def _started_with(
    monkeypatch: pytest.MonkeyPatch, resource: SparkSessionResource
) -> dict[str, str]:
    """The configuration the resource would start its JVM with (no JVM is started)."""
    started: dict[str, str] = {}
    monkeypatch.setattr(resources, "spark_session_from_config", lambda conf: started.update(conf))
    resource._init_session()
    return started


def _local(**overrides: str) -> SparkSessionResource:
    return SparkSessionResource(
        spark_config={
            "spark.master": "local[1]",
            "spark.driver.extraJavaOptions": DRIVER_JVM_OPTIONS,
            **overrides,
        },
        jar_cache=str(Settings.from_env().jar_cache),
    )


@pytest.mark.parametrize(
    ("rows", "c1_only"),
    [(20, True), (SMALL_RUN_ROWS - 1, True), (SMALL_RUN_ROWS, False), (37_000_000, False)],
)
def test_a_small_run_starts_its_jvm_with_the_first_compiler_alone(
    monkeypatch: pytest.MonkeyPatch, rows: int, c1_only: bool
) -> None:
    resource = _local()
    Work(context=None, lake=None, pyspark=resource).expect_rows(rows)  # type: ignore[arg-type]
    options = _started_with(monkeypatch, resource)["spark.driver.extraJavaOptions"]
    assert options.startswith(DRIVER_JVM_OPTIONS)
    assert (SMALL_RUN_JVM_OPTIONS in options) is c1_only


def test_the_first_step_sizes_the_jvm_and_a_run_of_unknown_size_keeps_both_compilers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unknown = _local()
    assert (
        SMALL_RUN_JVM_OPTIONS
        not in _started_with(monkeypatch, unknown)["spark.driver.extraJavaOptions"]
    )
    first_big = _local()
    first_big.expect_rows(5_000_000)
    first_big.expect_rows(20)  # a later step's size does not restart or resize anything
    assert (
        SMALL_RUN_JVM_OPTIONS
        not in _started_with(monkeypatch, first_big)["spark.driver.extraJavaOptions"]
    )


def test_a_session_that_is_not_a_local_jvm_is_left_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = SparkSessionResource(spark_config={"spark.sql.session.timeZone": "UTC"})
    cluster.expect_rows(20)
    assert _started_with(monkeypatch, cluster) == {"spark.sql.session.timeZone": "UTC"}

"""Delta Lake's Spark jars: fetched once by the set-up, checked at every Spark start."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cvm210_assets.resources import SparkSessionResource, session_jars
from cvm210_assets.settings import Settings, jar_cache_dir
from cvm210_assets.spark_jars import (
    FIX,
    JarCache,
    MissingJars,
    coordinates,
    hadoop_version,
    main,
)


def test_coordinates_follow_the_installed_wheels() -> None:
    from importlib.metadata import version

    import pyspark

    spark = ".".join(pyspark.__version__.split(".")[:2])
    assert coordinates("delta") == (f"io.delta:delta-spark_{spark}_2.13:{version('delta-spark')}",)
    assert coordinates("s3") == (f"org.apache.hadoop:hadoop-aws:{hadoop_version()}",)
    jars = Path(pyspark.__file__).parent / "jars"
    assert (jars / f"hadoop-client-api-{hadoop_version()}.jar").is_file()


def test_the_set_up_cache_holds_delta_and_s3a_without_spark_s_own_jars() -> None:
    cache = JarCache(Settings.from_env().jar_cache)
    delta = [p.name for p in cache.jars("delta")]
    s3 = [p.name for p in cache.jars("s3")]
    assert any(n.startswith("delta-spark_") for n in delta)
    assert any(n.startswith("delta-storage-") for n in delta)
    assert any(n == f"hadoop-aws-{hadoop_version()}.jar" for n in s3)
    # Spark's own jars win: no second Hadoop, Parquet, Jackson core or Scala library.
    for name in delta + s3:
        for spark_ships in ("hadoop-client", "parquet-", "jackson-core", "scala-library"):
            assert not name.startswith(spark_ships), name


def test_a_missing_cache_fails_naming_the_command_that_fixes_it(tmp_path: Path) -> None:
    with pytest.raises(MissingJars) as error:
        session_jars(tmp_path / "nowhere", ["delta"])
    assert "./scripts/setup.sh" in str(error.value) and str(tmp_path / "nowhere") in str(
        error.value
    )

    # As a run meets it: the session's start fails, before any JVM, with the same words.
    resource = SparkSessionResource(
        spark_config={"spark.master": "local[1]"}, jar_cache=str(tmp_path / "nowhere")
    )
    with pytest.raises(MissingJars, match=r"scripts/setup\.sh"):
        resource._init_session()


def test_a_damaged_cache_names_the_missing_jar(tmp_path: Path) -> None:
    real = Settings.from_env().jar_cache
    shutil.copy(real / "delta.json", tmp_path / "delta.json")
    with pytest.raises(MissingJars) as error:
        JarCache(tmp_path).jars("delta")
    assert "incomplete" in str(error.value) and "delta-spark_" in str(error.value)
    assert FIX in str(error.value)


def test_jars_for_another_delta_version_are_not_used(tmp_path: Path) -> None:
    (tmp_path / "delta.json").write_text(
        json.dumps({"coordinates": ["io.delta:delta-spark_2.13:3.0.0"], "jars": []})
    )
    with pytest.raises(MissingJars, match="needs"):
        JarCache(tmp_path).jars("delta")


def test_without_maven_the_fetch_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(MissingJars, match="install it"):
        JarCache(tmp_path).fetch("delta", maven="no-such-mvn")


def test_the_cache_is_named_by_the_environment(tmp_path: Path) -> None:
    assert jar_cache_dir({"CVM210_JAR_CACHE": str(tmp_path)}) == tmp_path
    assert jar_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "cvm210" / "jars"
    assert Settings.from_env({"CVM210_JAR_CACHE": str(tmp_path)}).jar_cache == tmp_path


def test_check_reports_the_cache(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVM210_JAR_CACHE", str(Settings.from_env().jar_cache))
    assert main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "delta:" in out and "s3:" in out
    monkeypatch.setenv("CVM210_JAR_CACHE", os.devnull + "-none")
    assert main(["--check", "delta"]) == 1

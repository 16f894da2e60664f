"""The JVM class archive: used by local Spark when built, never required."""

import subprocess

import pytest

from cvm210_assets.jvm_archive import (
    JVM_WARNINGS_TO_STDERR,
    _java,
    archive_path,
    driver_java_options,
)
from cvm210_assets.resources import DRIVER_JVM_OPTIONS, spark_config
from cvm210_assets.settings import Settings

pytestmark = pytest.mark.spark  # Spark starts in another process


def test_the_driver_uses_the_archive_only_once_it_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    archive = archive_path()
    assert archive.parent == tmp_path / "cvm210"
    assert driver_java_options(DRIVER_JVM_OPTIONS) == (
        f"{DRIVER_JVM_OPTIONS} {JVM_WARNINGS_TO_STDERR}"
    )

    archive.parent.mkdir()
    archive.write_bytes(b"built by setup")
    options = spark_config(Settings.from_env())["spark.driver.extraJavaOptions"]
    assert options == (
        f"{DRIVER_JVM_OPTIONS} {JVM_WARNINGS_TO_STDERR} -XX:SharedArchiveFile={archive}"
    )


def test_the_archive_is_per_jdk_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ours = archive_path()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "another-jdk"))
    assert archive_path() != ours
    assert _java() == str(tmp_path / "another-jdk" / "bin" / "java")


def test_a_stale_archive_does_not_stop_the_jvm(tmp_path):
    """A JDK upgrade leaves an archive the JVM cannot use: it must start anyway."""
    stale = tmp_path / "stale.jsa"
    stale.write_bytes(b"not an archive")
    done = subprocess.run(
        [_java(), f"-XX:SharedArchiveFile={stale}", "-version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "version" in done.stderr


def test_the_jvm_s_warnings_stay_off_stdout(tmp_path):
    """A command's stdout is its answer (`cvm210 sql --format json`): the archive the set-up
    built, met with another class path, makes the JVM warn, and the warning goes to stderr."""
    archive = archive_path()
    assert archive.is_file(), "no class archive: ./scripts/setup.sh builds it"
    command = [_java(), f"-XX:SharedArchiveFile={archive}", "-cp", str(tmp_path), "-version"]
    plain = subprocess.run(command, capture_output=True, text=True)
    assert "Unable to use shared archive" in plain.stdout  # what the JVM does on its own

    ours = subprocess.run(
        [command[0], *JVM_WARNINGS_TO_STDERR.split(), *command[1:]], capture_output=True, text=True
    )
    assert ours.returncode == 0 and ours.stdout == ""
    assert "Unable to use shared archive" in ours.stderr

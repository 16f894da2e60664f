"""Delta Lake's Spark jars (and s3a's), fetched once from Maven Central into a local cache.

Local Spark reads and writes Delta with Delta Lake's own engine, as a Databricks cluster does;
its jars are not in the pyspark wheel. `scripts/setup.sh` fetches them with Maven into
`CVM210_JAR_CACHE` (default `~/.cache/cvm210/jars`, a Maven repository), and writes a manifest
per group of the jars a session puts on its class path. After that no run and no test touches
the network; a missing or damaged cache fails at Spark's start naming the command that fixes it.

    python -m cvm210_assets.spark_jars          # fetch every group (what setup runs)
    python -m cvm210_assets.spark_jars --check  # say what the cache holds

Groups: `delta` (every local session) and `s3` (hadoop-aws at exactly Spark's Hadoop version
and the AWS SDK it needs; sessions on an s3:// lake only: the SDK bundle is 650 MB of jars).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path

from cvm210_assets.settings import jar_cache_dir

SCALA = "2.13"
FIX = "./scripts/setup.sh (or: python -m cvm210_assets.spark_jars)"


class MissingJars(RuntimeError):
    """The cache lacks jars a session needs; the message names the command that fetches them."""


@cache
def _spark_jars() -> dict[str, str]:
    """The jars the pyspark wheel ships: artifact name -> version."""
    import pyspark

    found = {}
    for path in (Path(pyspark.__file__).parent / "jars").glob("*.jar"):
        match = re.fullmatch(r"(.+?)-(\d[\w.\-]*)\.jar", path.name)
        if match:
            found[match[1]] = match[2]
    return found


def spark_minor() -> str:
    import pyspark

    return ".".join(pyspark.__version__.split(".")[:2])


def hadoop_version() -> str:
    """The Hadoop that Spark ships (hadoop-client-api's version): s3a must match it exactly."""
    return _spark_jars()["hadoop-client-api"]


def coordinates(group: str) -> tuple[str, ...]:
    """What a group asks Maven for, derived from the installed wheels so they always agree:
    the Delta jars of the pinned delta-spark wheel, built for this Spark (the coordinate its
    configure_spark_with_delta_pip asks for); hadoop-aws at Spark's Hadoop version."""
    if group == "delta":
        return (f"io.delta:delta-spark_{spark_minor()}_{SCALA}:{version('delta-spark')}",)
    if group == "s3":
        return (f"org.apache.hadoop:hadoop-aws:{hadoop_version()}",)
    raise ValueError(f"unknown jar group {group!r}: expected one of {', '.join(GROUPS)}")


GROUPS = ("delta", "s3")


@dataclass(frozen=True)
class JarCache:
    """A Maven repository folder plus one manifest per group: `<group>.json`."""

    root: Path

    def manifest(self, group: str) -> Path:
        return self.root / f"{group}.json"

    def jars(self, group: str) -> list[Path]:
        """The group's jars, checked: fetched for these coordinates and all present."""
        manifest = self.manifest(group)
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError):
            raise MissingJars(
                f"Spark's {group} jars are not in {self.root} (no readable {manifest.name});"
                f" fetch them with {FIX}"
            ) from None
        wanted = list(coordinates(group))
        if recorded.get("coordinates") != wanted:
            raise MissingJars(
                f"{manifest} holds jars for {recorded.get('coordinates')}, this installation"
                f" needs {wanted}; fetch them with {FIX}"
            )
        paths = [self.root / relative for relative in recorded["jars"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise MissingJars(
                f"Spark's {group} jars are incomplete in {self.root} (missing"
                f" {', '.join(missing[:3])}); fetch them again with {FIX}"
            )
        return paths

    def class_path(self, groups: tuple[str, ...]) -> str:
        return os.pathsep.join(str(p) for g in groups for p in self.jars(g))

    def fetch(self, group: str, maven: str = "mvn") -> list[Path]:
        """Resolve the group with Maven into the cache and record the jars Spark lacks.

        Spark's own jars win: a dependency that the pyspark wheel already ships (Hadoop,
        Parquet, Jackson, Scala, logging…) is left out, so one version of each is loaded."""
        if shutil.which(maven) is None:
            raise MissingJars(
                "Maven (mvn) is needed once to fetch Spark's jars: install it (Debian:"
                " apt-get install maven; macOS: brew install maven) and run " + FIX
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cvm210-jars-") as tmp:
            pom, out = Path(tmp) / "pom.xml", Path(tmp) / "classpath.txt"
            pom.write_text(_pom(coordinates(group)))
            done = subprocess.run(
                [
                    maven,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    f"-Dmaven.repo.local={self.root / 'maven'}",
                    "dependency:build-classpath",
                    f"-Dmdep.outputFile={out}",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise MissingJars(
                    f"Maven could not fetch {', '.join(coordinates(group))} into {self.root}:\n"
                    + (done.stdout + done.stderr)[-2000:]
                )
            resolved = [Path(p) for p in out.read_text().strip().split(os.pathsep) if p]
        ships = _spark_jars()
        kept = [p for p in resolved if _artifact(p) not in ships]
        record = {
            "coordinates": list(coordinates(group)),
            "jars": [str(p.relative_to(self.root)) for p in kept],
        }
        tmp_manifest = self.manifest(group).with_suffix(".tmp")
        tmp_manifest.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp_manifest, self.manifest(group))
        return kept


def _artifact(jar: Path) -> str:
    """A jar's artifact id from its place in a Maven repository: group/artifact/version/x.jar."""
    return jar.parent.parent.name


def _pom(coords: tuple[str, ...]) -> str:
    dependencies = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in (c.split(":") for c in coords)
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>cvm210</groupId><artifactId>spark-jars</artifactId><version>1</version>"
        f"<dependencies>{dependencies}</dependencies></project>"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvm210_assets.spark_jars")
    parser.add_argument("--check", action="store_true", help="only say what the cache holds")
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"of {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; groups: {', '.join(GROUPS)}")
    jar_cache = JarCache(jar_cache_dir())
    try:
        for group in args.groups or GROUPS:
            jars = jar_cache.jars(group) if args.check else jar_cache.fetch(group)
            size = sum(p.stat().st_size for p in jars) / 2**20
            print(f"spark_jars: {group}: {len(jars)} jars, {size:.0f} MB in {jar_cache.root}")
    except MissingJars as error:
        print(f"spark_jars: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

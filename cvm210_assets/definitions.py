"""The code location: `dagster dev` (workspace.yaml) loads `defs` from here."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from cvm210_assets.assets.alerts import alert_deliveries, outflow_alerts
from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.assets.bronze import bronze
from cvm210_assets.assets.gold import gold_kpis
from cvm210_assets.assets.ingestion import raw_zip, s3_csv_partition
from cvm210_assets.assets.registry import CvmRegistry, fund_registry
from cvm210_assets.assets.silver import silver
from cvm210_assets.freshness import FRESHNESS_CHECKS
from cvm210_assets.jobs import JOBS
from cvm210_assets.resources import build_resources
from cvm210_assets.schedules import SCHEDULES
from cvm210_assets.sensors import SENSORS
from cvm210_assets.settings import Settings

ASSETS = [raw_zip, s3_csv_partition, bronze, silver, gold_kpis]
ALERT_ASSETS = [outflow_alerts, alert_deliveries]
REGISTRY_ASSETS = [fund_registry, gold_breakdowns]

defs = Definitions(
    assets=[*ASSETS, *ALERT_ASSETS, *REGISTRY_ASSETS],
    asset_checks=FRESHNESS_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={**build_resources(Settings.from_env()), "cvm_registry": CvmRegistry.from_env()},
    # One process for the whole run, so every Spark step shares one SparkSession (one JVM)
    # instead of paying a JVM start per step.
    executor=in_process_executor,
)

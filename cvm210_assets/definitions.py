"""The code location: `dagster dev` (workspace.yaml) loads `defs` from here.

Loading it is when the settings are read (settings.py), once; everything that depends on them
is built from that one `Settings`.
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from cvm210_assets.assets.alerts import alert_deliveries, outflow_alerts
from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.assets.bronze import bronze
from cvm210_assets.assets.gold import gold_kpis
from cvm210_assets.assets.ingestion import raw_zip, s3_csv_partition
from cvm210_assets.assets.registry import CvmRegistry, fund_registry
from cvm210_assets.assets.silver import silver
from cvm210_assets.freshness import build_freshness_checks
from cvm210_assets.jobs import JOBS
from cvm210_assets.resources import build_resources
from cvm210_assets.schedules import build_schedules
from cvm210_assets.sensors import build_change_sensor
from cvm210_assets.settings import Settings

ASSETS = [raw_zip, s3_csv_partition, bronze, silver, gold_kpis]
ALERT_ASSETS = [outflow_alerts, alert_deliveries]
REGISTRY_ASSETS = [fund_registry, gold_breakdowns]


def build_definitions(settings: Settings) -> Definitions:
    """The code location for the deployment `settings` describe."""
    automation = settings.automation
    return Definitions(
        assets=[*ASSETS, *ALERT_ASSETS, *REGISTRY_ASSETS],
        asset_checks=build_freshness_checks(automation.freshness_business_days),
        jobs=JOBS,
        schedules=build_schedules(automation),
        sensors=[build_change_sensor(automation.sensor_max_requests)],
        resources={
            **build_resources(settings),
            "cvm_registry": CvmRegistry.from_settings(settings),
        },
        # One process for the whole run, so every Spark step shares one SparkSession (one JVM)
        # instead of paying a JVM start per step.
        executor=in_process_executor,
    )


defs = build_definitions(Settings.from_env())

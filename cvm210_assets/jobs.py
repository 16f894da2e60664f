"""Every job of the code location, in one place: what each one runs.

The schedules (schedules.py) and the change sensor (sensors.py) start these. All but one are
asset jobs; the weekly upkeep is an op job, its op in upkeep.py.
"""

from dagster import AssetSelection, define_asset_job, job

from cvm210_assets.assets.alerts import alert_deliveries, outflow_alerts
from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.assets.bronze import bronze
from cvm210_assets.assets.gold import gold_kpis
from cvm210_assets.assets.ingestion import raw_zip, s3_csv_partition
from cvm210_assets.assets.registry import fund_registry
from cvm210_assets.assets.silver import silver
from cvm210_assets.freshness import FRESHNESS_CHECK_KEYS
from cvm210_assets.upkeep import maintain_tables

cvm_inf_diario_job = define_asset_job(
    "cvm_inf_diario",
    # Partitioned by month like its assets (Dagster infers it; passing it is deprecated).
    selection=AssetSelection.assets(
        raw_zip,
        s3_csv_partition,
        bronze,
        silver,
        gold_kpis,
        gold_breakdowns,
        outflow_alerts,
        alert_deliveries,
    ),
    description="One month through the whole chain, from CVM's zip to gold_kpis and its"
    " breakdowns, then its outflow alerts and their delivery.",
)

cvm_fund_registry_job = define_asset_job(
    "cvm_fund_registry",
    selection=AssetSelection.assets(fund_registry),
    description="CVM's fund registry (registro_fundo_classe.zip, cad_fi.csv) into fund_registry.",
)

freshness_job = define_asset_job(
    "cvm_freshness",
    selection=AssetSelection.checks(*FRESHNESS_CHECK_KEYS),
    description="Is the lake keeping up with CVM? (two WARN checks; see docs/automation.md)",
)


@job(description="Weekly upkeep of the lake's Delta tables (see docs/automation.md).")
def lake_maintenance() -> None:
    maintain_tables()


JOBS = [cvm_inf_diario_job, cvm_fund_registry_job, freshness_job, lake_maintenance]

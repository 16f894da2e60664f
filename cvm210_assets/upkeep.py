"""The lake's weekly upkeep: compact the months that restatements left in several files,
Z-ordered by cnpj_fundo where users filter by fund, and vacuum what no recent version reads.

Restatements MERGE into silver and replace months of the other tables, so a month can end up
in several small files; readers then open more files than they need. Vacuum keeps at least
30 days of time travel (`CVM210_TIME_TRAVEL_DAYS`, never less), so a bad restatement can
still be rolled back a month later. The op runs as the `lake_maintenance` job (jobs.py), on
its weekly schedule (schedules.py).
"""

import datetime as dt

from dagster import AssetObservation, MetadataValue, OpExecutionContext, op

from cvm210_assets.lake.maintenance import (
    compact_months,
    file_figures,
    keep_time_travel,
    vacuum,
)
from cvm210_assets.lake.table_catalog import LAKE_TABLES
from cvm210_assets.resources import Lake


@op(description="Compact fragmented months (Z-ordered by fund) and vacuum, table by table.")
def maintain_tables(context: OpExecutionContext, lake: Lake) -> None:
    # Maintenance goes through delta-rs wherever the steps run: it is file work, no Spark.
    tables = lake.tables
    keep = dt.timedelta(days=lake.time_travel_days)
    # Each table Z-ordered by the filters users query it by (lake/table_catalog.py), and
    # observed on the asset that writes it.
    for entry in LAKE_TABLES:
        table, asset, zorder_by = entry.name, entry.asset, entry.zorder_by
        if tables.version(table) is None:
            continue
        before = file_figures(tables, table)
        rewritten = compact_months(tables, table, before["fragmented_months"], zorder_by)
        widened = keep_time_travel(tables, table, keep)
        deleted = vacuum(tables, table, keep)
        after = file_figures(tables, table)
        months = ", ".join(f"{a:04d}-{m:02d}" for a, m in before["fragmented_months"])
        context.log.info(f"{table}: {before['files']} -> {after['files']} files")
        context.log_event(
            AssetObservation(
                asset_key=asset,
                metadata={
                    "table": table,
                    "files_before": before["files"],
                    "files_after": after["files"],
                    "bytes_before": before["bytes"],
                    "bytes_after": after["bytes"],
                    "months_compacted": months or "none",
                    "files_rewritten": rewritten,
                    "files_vacuumed": deleted,
                    "zorder_by": ", ".join(zorder_by) or "(compaction only)",
                    "time_travel_days": keep.days,
                    "retention_properties_set": widened,
                    "delta_version": MetadataValue.int(tables.version(table) or 0),
                },
            )
        )

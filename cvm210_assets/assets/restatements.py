"""silver_changes: silver's record of what each restatement of a month changed.

Written by the silver step before its MERGE, so the month's previous rows are still there to
compare with; a state record marks a restatement as recorded, so a rerun after a crash neither
loses nor repeats it.
"""

import datetime as dt
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from dagster import MetadataValue
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cvm210_assets.assets.common import markdown_table
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.lake.spark_tables import SparkDeltaTables, first_rows
from cvm210_assets.lake.table_catalog import CHANGES_TABLE
from cvm210_assets.partitions import Month
from cvm210_assets.source.capture import RAW_ZIP
from cvm210_assets.transforms.changes import (
    DELETED,
    INSERTED,
    UPDATED,
    Restatement,
    restatement_changes,
)


def pending_restatement(
    state: StateStore,
    month: Month,
    previous: dict[str, Any] | None,
    new_sha256: str,
    processed_at: dt.datetime,
) -> Restatement | None:
    """The restatement silver is about to apply, unless the month is new, unchanged, or its
    changes were already recorded by an earlier (interrupted) run."""
    if previous is None or previous["source_sha256"] == new_sha256:
        return None
    recorded = state.get(CHANGES_TABLE.name, month)
    if recorded is not None and recorded["source_sha256"] == new_sha256:
        return None
    last_modified = (state.get(RAW_ZIP, month) or {}).get("last_modified")
    return Restatement(
        previous_sha256=previous["source_sha256"],
        new_sha256=new_sha256,
        published_at=parsedate_to_datetime(last_modified) if last_modified else None,
        processed_at=processed_at,
    )


def changes_rows(
    tables: SparkDeltaTables,
    month: Month,
    restatement: Restatement,
    silver_table: str,
    after: DataFrame,
) -> DataFrame:
    """The month's silver_changes after this restatement: earlier restatements kept, this
    one's rows (re)computed, so writing them is idempotent. `after` is the new silver month.

    Both tables are read at their current versions, pinned: the rows compared stay the ones
    the MERGE replaces, whatever is committed after this plan is made."""
    before = tables.read_months(silver_table, [month], pinned=True)
    if before is None:
        before = after.limit(0)
    diff = restatement_changes(before, after, month, restatement)
    earlier = tables.read_months(CHANGES_TABLE.name, [month], pinned=True)
    if earlier is None:
        return diff
    keep = F.col("arquivo_sha256_novo") != F.lit(restatement.new_sha256)
    return earlier.where(keep).select(*diff.columns).unionByName(diff)


def summarize(changes: DataFrame, restatement: Restatement) -> dict[str, Any]:
    """Counts and money moved by this restatement: its state record and its metadata."""
    rows = changes.where(F.col("arquivo_sha256_novo") == F.lit(restatement.new_sha256))
    totals = rows.agg(
        *(F.count_if(F.col("mudanca") == k).alias(k) for k in (INSERTED, UPDATED, DELETED)),
        F.count_distinct("cnpj_fundo").alias("funds"),
        F.sum("variacao_fluxo_liquido").alias("net"),
    ).first()
    return {
        "source_sha256": restatement.new_sha256,
        "previous_sha256": restatement.previous_sha256,
        "inserted": totals[INSERTED],
        "updated": totals[UPDATED],
        "deleted": totals[DELETED],
        "funds_changed": totals["funds"],
        "net_flow_change": str(totals["net"] if totals["net"] is not None else Decimal(0)),
        "published_at": restatement.published_at.isoformat() if restatement.published_at else None,
        "largest": _largest(rows, 10),
    }


def _largest(rows: DataFrame, n: int) -> list[dict[str, Any]]:
    """The `n` changes that moved the most money, as text."""
    columns = ["cnpj_fundo", "id_subclasse", "dt_comptc", "mudanca", "variacao_fluxo_liquido"]
    picked = first_rows(rows.select(*columns), n, [F.abs("variacao_fluxo_liquido").desc()])
    return [{k: str(v) if v is not None else None for k, v in r.items()} for r in picked]


def restatement_metadata(summary: dict[str, Any] | None) -> dict[str, Any]:
    """What the silver materialization shows about the restatement it applied, if any."""
    if summary is None:
        return {"restated": False}
    return {
        "restated": True,
        "restated_from_sha256": summary["previous_sha256"],
        "restated_funds_changed": summary["funds_changed"],
        "restated_net_flow_change": summary["net_flow_change"],
        "restated_largest_changes": markdown_table(
            summary["largest"],
            ["cnpj_fundo", "id_subclasse", "dt_comptc", "mudanca", "variacao_fluxo_liquido"],
        ),
        "changes_table": MetadataValue.text(
            f"{CHANGES_TABLE.name} (SQL: {CHANGES_TABLE.sql_name})"
        ),
    }

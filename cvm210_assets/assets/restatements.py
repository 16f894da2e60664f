"""silver_changes: silver's record of what each restatement of a month changed.

Written by the silver step before its MERGE, so the month's previous rows are still there to
compare with; a state record marks a restatement as recorded, so a rerun after a crash neither
loses nor repeats it.
"""

import datetime as dt
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue

from cvm210_assets.assets.common import markdown_table
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.lake.tables import DeltaTables, Staged, with_month
from cvm210_assets.partitions import Month
from cvm210_assets.source.capture import RAW_ZIP
from cvm210_assets.transforms.changes import (
    DELETED,
    INSERTED,
    UPDATED,
    Restatement,
    restatement_changes,
)

CHANGES_TABLE = "silver_changes"


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
    recorded = state.get(CHANGES_TABLE, month)
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
    tables: DeltaTables,
    month: Month,
    restatement: Restatement,
    silver_table: str,
    after: pa.Table,
) -> Staged:
    """The month's silver_changes after this restatement: earlier restatements kept, this
    one's rows (re)computed, so writing them is idempotent. `after` is the staged silver."""
    before = tables.read_month_arrow(silver_table, month)
    if before is None:
        before = after.schema.empty_table()
    diff = restatement_changes(before, after, month, restatement)
    earlier = tables.read_month_arrow(CHANGES_TABLE, month)
    if earlier is not None:
        earlier = with_month(earlier, month, diff.schema)
        keep = pc.not_equal(earlier["arquivo_sha256_novo"], restatement.new_sha256)
        diff = pa.concat_tables([earlier.filter(keep), diff])
    return Staged.of(diff, cluster_by=("cnpj_fundo", "dt_comptc"))


def summarize(changes: Staged, restatement: Restatement) -> dict[str, Any]:
    """Counts and money moved by this restatement: its state record and its metadata."""
    rows = changes.data.filter(
        pc.equal(changes.data["arquivo_sha256_novo"], restatement.new_sha256)
    )
    kinds = rows["mudanca"]
    net = pc.sum(rows["variacao_fluxo_liquido"]).as_py() or Decimal(0)
    return {
        "source_sha256": restatement.new_sha256,
        "previous_sha256": restatement.previous_sha256,
        "inserted": pc.sum(pc.equal(kinds, INSERTED)).as_py() or 0,
        "updated": pc.sum(pc.equal(kinds, UPDATED)).as_py() or 0,
        "deleted": pc.sum(pc.equal(kinds, DELETED)).as_py() or 0,
        "funds_changed": pc.count_distinct(rows["cnpj_fundo"]).as_py(),
        "net_flow_change": str(net),
        "published_at": restatement.published_at.isoformat() if restatement.published_at else None,
        "largest": _largest(rows, 10),
    }


def _largest(rows: pa.Table, n: int) -> list[dict[str, Any]]:
    if rows.num_rows == 0:
        return []
    size = pc.abs(rows["variacao_fluxo_liquido"])
    order = pc.sort_indices(pa.table({"size": size}), [("size", "descending")])
    picked = rows.take(order[:n]).select(
        ["cnpj_fundo", "id_subclasse", "dt_comptc", "mudanca", "variacao_fluxo_liquido"]
    )
    return [
        {k: str(v) if v is not None else None for k, v in r.items()} for r in picked.to_pylist()
    ]


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
        "changes_table": MetadataValue.text(f"{CHANGES_TABLE} (SQL: cvm_p210.silver_changes)"),
    }

"""silver and silver_rejects: bronze judged, cleaned and deduplicated, merged month by month."""

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    asset,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.bronze import BRONZE, bronze
from cvm210_assets.assets.common import Check, Outcome, markdown_table, now_utc, table_schema
from cvm210_assets.assets.monthly import (
    Judged,
    MonthlyAsset,
    Plan,
    Work,
    Written,
    commit_metadata,
    materialize,
)
from cvm210_assets.assets.restatements import (
    changes_rows,
    pending_restatement,
    restatement_metadata,
    summarize,
)
from cvm210_assets.lake.schemas import (
    PARTITION_COLUMNS,
    SILVER,
    SILVER_KEY,
    SILVER_REJECTS,
    SILVER_VALUES,
)
from cvm210_assets.lake.spark_tables import (
    first_lines_by_month,
    first_rows_by_month,
    months_predicate,
)
from cvm210_assets.lake.table_catalog import (
    BRONZE_TABLE,
    CHANGES_TABLE,
    REJECTS_TABLE,
    SILVER_TABLE,
)
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.quality import SilverQuality, silver_quality
from cvm210_assets.transforms.silver import (
    REJECT_REASONS,
    judge_rows,
    mark_duplicates,
    rejected_rows,
    repeated_keys,
    silver_rows,
)

SILVER_ASSET = SILVER_TABLE.asset

REQUIRED_FIELDS = Check(
    "required_fields_present", "Every silver row has cnpj_fundo, dt_comptc and vl_patrim_liq."
)
NET_ASSETS_POSITIVE = Check("net_assets_positive", "No silver row has vl_patrim_liq <= 0.")
KEY_UNIQUE = Check("key_unique", "One silver row per (cnpj_fundo, id_subclasse, dt_comptc).")
ROWS_ACCOUNTED = Check(
    "bronze_rows_equal_silver_plus_rejects",
    "Every bronze row of the month is in silver or in silver_rejects: none lost, none twice.",
)
DATES_IN_MONTH = Check("dates_in_partition_month", "Every dt_comptc lies in the partition's month.")
CNPJ_CHECK_DIGITS = Check(
    "cnpj_check_digits_valid",
    "CNPJs have valid check digits. A warning only: the rows are kept, CVM's key is the CNPJ.",
    blocking=False,
    severity=AssetCheckSeverity.WARN,
)
CHECKS = (
    REQUIRED_FIELDS,
    NET_ASSETS_POSITIVE,
    KEY_UNIQUE,
    ROWS_ACCOUNTED,
    DATES_IN_MONTH,
    CNPJ_CHECK_DIGITS,
)


def evaluate(quality: SilverQuality, bronze_rows: int, rejected: int) -> list[Outcome]:
    """Turn the measures into check outcomes; pure, so the checks themselves are testable."""
    return [
        Outcome(
            REQUIRED_FIELDS,
            quality.missing_required == 0,
            {"rows_missing_fields": quality.missing_required},
        ),
        Outcome(
            NET_ASSETS_POSITIVE,
            quality.non_positive_net_assets == 0,
            {"rows_with_net_assets_le_0": quality.non_positive_net_assets},
        ),
        Outcome(
            KEY_UNIQUE, quality.duplicate_keys == 0, {"duplicate_keys": quality.duplicate_keys}
        ),
        Outcome(
            ROWS_ACCOUNTED,
            bronze_rows == quality.rows + rejected,
            {"bronze_rows": bronze_rows, "silver_rows": quality.rows, "rejected_rows": rejected},
        ),
        Outcome(
            DATES_IN_MONTH,
            quality.outside_month == 0,
            {"rows_outside_month": quality.outside_month},
        ),
        Outcome(
            CNPJ_CHECK_DIGITS,
            quality.bad_cnpj_check_digits == 0,
            {
                "cnpjs_with_bad_check_digits": quality.bad_cnpj_check_digits,
                "examples": ", ".join(quality.bad_cnpj_examples),
            },
        ),
    ]


@asset(
    deps=[bronze],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(SILVER_ASSET) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(SILVER),
        "dagster/table_name": SILVER_TABLE.sql_name,
        "rejects_table": f"{REJECTS_TABLE.name} (SQL: {REJECTS_TABLE.sql_name})",
        "rejects_columns": MetadataValue.table_schema(table_schema(SILVER_REJECTS)),
    },
    description=(
        "One canonical schema for all layouts: typed, exact DECIMALs, deduplicated (last row of"
        " the file wins). A restated month is MERGEd: rows updated, inserted and deleted; Delta"
        " history keeps the old state. Rows that fail validation go, as read and with the"
        " reason, to the silver_rejects table written in the same step: every month, bronze"
        " rows = silver rows + rejected rows."
    ),
)
def silver(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize(Silver(), context, lake, pyspark)


class Silver(MonthlyAsset):
    """New months of one layout judged together and written in one commit; a restated month
    alone: its changes are recorded, then it is MERGEd."""

    name = SILVER_ASSET
    upstream = BRONZE
    checks = CHECKS

    def batch_key(self, plan: Plan) -> str | None:
        return plan.upstream["layout"] if plan.previous is None else None

    def unchanged_metadata(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        return {"rejected_rows": previous["rejected"]}

    @contextmanager
    def judge(self, work: Work, plans: Sequence[Plan]) -> Iterator[Judged]:
        tables = work.tables
        layout = LAYOUTS[plans[0].upstream["layout"]]
        months = [p.month for p in plans]
        processed_at = now_utc()
        bronze_rows = tables.read_months(BRONZE_TABLE.name, months)
        # Judged once and cached, the few repeated keys beside them: the checks, silver, its
        # rejects and the restatement's changes all join the two caches again (a broadcast).
        single = judge_rows(bronze_rows, layout).persist()
        repeated = repeated_keys(single).persist()
        judged = mark_duplicates(single, repeated)
        try:
            clean = silver_rows(judged, PIPELINE_VERSION, processed_at)
            rejects = rejected_rows(judged, bronze_rows, layout, PIPELINE_VERSION, processed_at)
            quality = silver_quality(clean, months)
            # Every row of bronze's months is judged once: the judged rows are bronze's rows,
            # counted by verdict in one job (NULL: the row is silver's).
            by_reason: dict[Month, dict[str, int]] = {m: {} for m in months}
            judged_rows: dict[Month, int] = dict.fromkeys(months, 0)
            for row in judged.groupBy(*PARTITION_COLUMNS, "motivo").count().collect():
                month = Month(row["ano"], row["mes"])
                judged_rows[month] += row["count"]
                if row["motivo"] is not None:
                    by_reason[month][row["motivo"]] = row["count"]
            outcomes = {
                m: evaluate(quality[m], judged_rows.get(m, 0), sum(by_reason[m].values()))
                for m in months
            }

            def write(passed: Sequence[Plan]) -> dict[Month, Written]:
                done = [p.month for p in passed]
                some = len(passed) < len(plans)
                ok_clean = clean.where(months_predicate(done)) if some else clean
                ok_rejects = rejects.where(months_predicate(done)) if some else rejects
                commit = commit_metadata(passed)
                # Rejects first: silver's state records are written last and mark a month done.
                rejects_write = tables.replace_months(
                    REJECTS_TABLE.name,
                    ok_rejects,
                    done,
                    commit,
                    cluster_by=REJECTS_TABLE.cluster_by,
                )
                restated = passed[0] if passed[0].previous is not None else None
                new_source = _new_source(passed[0])  # not just new code
                if restated is None:  # new months: nothing to match
                    version = tables.replace_months(
                        SILVER_TABLE.name,
                        ok_clean,
                        done,
                        commit,
                        cluster_by=SILVER_TABLE.cluster_by,
                    ).version
                    changes = {m: _inserted(quality[m].rows) for m in done}
                else:  # a restatement (or new code): changed rows updated, the others kept
                    _record_changes(work, restated, ok_clean, commit, processed_at)
                    merged = tables.merge_months(
                        SILVER_TABLE.name, ok_clean, done, SILVER_KEY, SILVER_VALUES, commit
                    )
                    version = merged.version
                    changes = {restated.month: _changes(merged.metrics)}
                previews = first_lines_by_month(ok_clean, 5, SILVER_KEY)
                rejects_previews = (
                    first_rows_by_month(ok_rejects, 10, ["numero_linha"])
                    if any(by_reason[m] for m in done)
                    else {}
                )
                return {
                    m: Written(
                        record={
                            "rows": quality[m].rows,
                            "rejected": sum(by_reason[m].values()),
                            "rejected_by_reason": by_reason[m],
                            # The freshness check reads it: the newest reporting date of the month.
                            "latest_dt_comptc": quality[m].latest_dt_comptc,
                            "changes": changes[m],
                            "delta_version": version,
                        },
                        metadata=_metadata(
                            work,
                            m,
                            quality[m],
                            by_reason[m],
                            changes[m],
                            version,
                            rejects_write.version,
                            previews.get(m, []),
                            rejects_previews.get(m, []),
                            restated=new_source,
                        ),
                    )
                    for m in done
                }

            yield Judged(outcomes, write)
        finally:
            repeated.unpersist()
            single.unpersist()


def _record_changes(
    work: Work, plan: Plan, clean: DataFrame, commit: Mapping[str, str], processed_at: dt.datetime
) -> None:
    """silver_changes of a restated month, recorded before the MERGE replaces the rows it
    compares with (unless an interrupted run recorded them already)."""
    state, tables, month = work.lake.state, work.tables, plan.month
    restatement = pending_restatement(
        state, month, plan.previous, plan.wanted["source_sha256"], processed_at
    )
    if restatement is None:
        return
    changes = changes_rows(tables, month, restatement, SILVER_TABLE.name, clean)
    tables.replace_months(
        CHANGES_TABLE.name, changes, [month], commit, cluster_by=CHANGES_TABLE.cluster_by
    )
    written = tables.read_months(CHANGES_TABLE.name, [month])
    state.put(CHANGES_TABLE.name, month, summarize(written, restatement))


def _metadata(
    work: Work,
    month: Month,
    quality: SilverQuality,
    by_reason: dict[str, int],
    changes: dict[str, int],
    version: int,
    rejects_version: int,
    preview: list[dict[str, Any]],
    rejects_preview: list[dict[str, Any]],
    restated: bool,
) -> dict[str, Any]:
    state = work.lake.state
    return {
        "dagster/row_count": quality.rows,
        "rows_inserted": changes["inserted"],
        "rows_updated": changes["updated"],
        "rows_deleted": changes["deleted"],
        "delta_version": version,
        "table": MetadataValue.path(work.tables.uri(SILVER_TABLE.name)),
        "preview": markdown_table(preview, [f.name for f in SILVER.fields[:10]]),
        "rejected_rows": sum(by_reason.values()),
        "rejected_by_reason": _reasons_table(by_reason),
        **{f"rejected_{reason}": by_reason.get(reason, 0) for reason in REJECT_REASONS},
        "rejects_delta_version": rejects_version,
        "rejects_table": MetadataValue.path(work.tables.uri(REJECTS_TABLE.name)),
        "rejects_preview": markdown_table(
            rejects_preview, ["numero_linha", "motivo", "detalhe", "registro"]
        ),
        **restatement_metadata(state.get(CHANGES_TABLE.name, month) if restated else None),
    }


def _new_source(plan: Plan) -> bool:
    """The month was processed before from another CSV: CVM restated it."""
    return (
        plan.previous is not None and plan.previous["source_sha256"] != plan.wanted["source_sha256"]
    )


def _inserted(rows: int) -> dict[str, int]:
    return {"inserted": rows, "updated": 0, "deleted": 0}


def _changes(metrics: dict) -> dict[str, int]:
    return {
        "inserted": int(metrics.get("num_target_rows_inserted", 0)),
        "updated": int(metrics.get("num_target_rows_updated", 0)),
        "deleted": int(metrics.get("num_target_rows_deleted", 0)),
    }


def _reasons_table(by_reason: dict[str, int]) -> MetadataValue:
    rows = [{"motivo": r, "linhas": by_reason[r]} for r in REJECT_REASONS if by_reason.get(r)]
    return markdown_table(rows, ["motivo", "linhas"])

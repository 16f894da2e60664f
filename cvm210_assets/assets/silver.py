"""silver and silver_rejects: bronze judged, cleaned and deduplicated, merged month by month."""

import datetime as dt
from dataclasses import replace

from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    asset,
)
from dagster_pyspark import LazyPySparkResource

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.bronze import BRONZE, bronze
from cvm210_assets.assets.common import (
    SKIPPED,
    Check,
    MonthResult,
    Outcome,
    blocking_failure,
    fingerprint,
    is_current,
    markdown_table,
    materialize_months,
    now_utc,
    require,
    run_label,
    table_schema,
    unchanged,
)
from cvm210_assets.assets.restatements import (
    CHANGES_TABLE,
    changes_rows,
    pending_restatement,
    restatement_metadata,
    summarize,
)
from cvm210_assets.lake.schemas import SILVER, SILVER_KEY, SILVER_REJECTS, SILVER_VALUES
from cvm210_assets.lake.spark_tables import first_rows
from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.quality import SilverQuality, silver_quality
from cvm210_assets.transforms.silver import (
    REJECT_REASONS,
    Source,
    judge_rows,
    mark_duplicates,
    rejected_rows,
    repeated_keys,
    silver_lineage,
    silver_rows,
)

SILVER_ASSET = "silver"
REJECTS_TABLE = "silver_rejects"

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
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(SILVER_ASSET) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(SILVER),
        "dagster/table_name": "cvm_p210.silver_inf_diario",
        "rejects_table": "silver_rejects (SQL: cvm_p210.silver_rejects)",
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
    yield from materialize_months(
        context, SILVER_ASSET, CHECKS, lambda month: _clean(context, lake, pyspark, month)
    )


def _clean(
    context: AssetExecutionContext, lake: Lake, pyspark: LazyPySparkResource, month: Month
) -> MonthResult:
    with lake.month_lock(month, owner=run_label(context)):
        state = lake.state
        bronze_state = require(state, BRONZE, month)
        wanted = fingerprint(bronze_state["source_sha256"])
        previous = state.get(SILVER_ASSET, month)
        if is_current(previous, wanted):
            return unchanged(
                context, SILVER_ASSET, month, CHECKS, previous, rejected_rows=previous["rejected"]
            )

        spark = pyspark.spark_session
        tables = lake.spark_tables(spark)
        layout = LAYOUTS[bronze_state["layout"]]
        source = Source(
            arquivo_origem=bronze_state["arquivo_origem"],
            arquivo_sha256=bronze_state["source_sha256"],
            layout=layout,
            dh_ingestao=dt.datetime.fromisoformat(bronze_state["dh_ingestao"]),
        )
        processed_at = now_utc()
        restated = previous is not None and previous["source_sha256"] != wanted["source_sha256"]
        restatement = pending_restatement(
            state, month, previous, wanted["source_sha256"], processed_at
        )
        lineage = silver_lineage(source, month, PIPELINE_VERSION, processed_at)
        bronze_rows = tables.read_months(BRONZE, [month])
        # Judged once and cached, the few repeated keys beside them: the checks, silver, its
        # rejects and the restatement's changes all join the two caches again (a broadcast).
        single = judge_rows(bronze_rows, layout, month).persist()
        repeated = repeated_keys(single).persist()
        judged = mark_duplicates(single, repeated)
        try:
            clean = silver_rows(judged, lineage)
            rejects = rejected_rows(judged, bronze_rows, layout, lineage)
            quality = silver_quality(clean, month)
            by_reason = dict(rejects.groupBy("motivo").count().collect())
            rejected = sum(by_reason.values())
            # Every row of bronze's month is judged once: the judged rows are bronze's rows.
            outcomes = evaluate(quality, single.count(), rejected)
            if blocking_failure(outcomes):
                return MonthResult(month, {}, outcomes)
            commit = {"cvm210.month": month.key, **wanted}
            # Rejects first: silver's state record is written last and marks the month done.
            rejects_write = tables.replace_months(
                REJECTS_TABLE, rejects, [month], commit, cluster_by=("numero_linha",)
            )
            if restatement:  # recorded before the MERGE replaces the rows it compares with
                changes = changes_rows(tables, month, restatement, SILVER_ASSET, clean)
                tables.replace_months(
                    CHANGES_TABLE, changes, [month], commit, cluster_by=("cnpj_fundo", "dt_comptc")
                )
                written = tables.read_months(CHANGES_TABLE, [month])
                state.put(CHANGES_TABLE, month, summarize(written, restatement))
            if previous is None:  # the month's first version: nothing to match
                write = tables.replace_months(SILVER_ASSET, clean, [month], commit, SILVER_KEY)
                inserted = write.metrics.get("numOutputRows", 0)
                silver_write = replace(write, metrics={"num_target_rows_inserted": inserted})
            else:  # a restatement (or new code): changed rows updated, the others kept
                silver_write = tables.merge_months(
                    SILVER_ASSET, clean, [month], SILVER_KEY, SILVER_VALUES, commit
                )
            preview = first_rows(clean, 5, SILVER_KEY)
            rejects_preview = first_rows(rejects, 10, ["numero_linha"])
        finally:
            repeated.unpersist()
            single.unpersist()
        changes = _changes(silver_write.metrics)
        state.put(
            SILVER_ASSET,
            month,
            {
                **wanted,
                "rows": quality.rows,
                "rejected": rejected,
                "rejected_by_reason": by_reason,
                # The freshness check reads this: the newest reporting date the month holds.
                "latest_dt_comptc": quality.latest_dt_comptc,
                "changes": changes,
                "delta_version": silver_write.version,
                "checks": [o.record() for o in outcomes],
            },
        )
        return MonthResult(
            month,
            outcomes=outcomes,
            data_version=wanted["source_sha256"],
            metadata={
                "dagster/row_count": quality.rows,
                "rows_inserted": changes["inserted"],
                "rows_updated": changes["updated"],
                "rows_deleted": changes["deleted"],
                "delta_version": silver_write.version,
                "table": MetadataValue.path(tables.uri(SILVER_ASSET)),
                "preview": markdown_table(preview, [f.name for f in SILVER.fields[:10]]),
                "rejected_rows": rejected,
                "rejected_by_reason": _reasons_table(by_reason),
                **{f"rejected_{reason}": by_reason.get(reason, 0) for reason in REJECT_REASONS},
                "rejects_delta_version": rejects_write.version,
                "rejects_table": MetadataValue.path(tables.uri(REJECTS_TABLE)),
                "rejects_preview": markdown_table(
                    rejects_preview, ["numero_linha", "motivo", "detalhe", "registro"]
                ),
                **restatement_metadata(state.get(CHANGES_TABLE, month) if restated else None),
                SKIPPED: False,
            },
        )


def _changes(metrics: dict) -> dict[str, int]:
    return {
        "inserted": int(metrics.get("num_target_rows_inserted", 0)),
        "updated": int(metrics.get("num_target_rows_updated", 0)),
        "deleted": int(metrics.get("num_target_rows_deleted", 0)),
    }


def _reasons_table(by_reason: dict[str, int]) -> MetadataValue:
    rows = [{"motivo": r, "linhas": by_reason[r]} for r in REJECT_REASONS if by_reason.get(r)]
    return markdown_table(rows, ["motivo", "linhas"])

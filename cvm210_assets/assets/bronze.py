"""bronze: the month's CSV rows as read, every column as text, with lineage."""

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset
from dagster_pyspark import LazyPySparkResource

from cvm210_assets import PIPELINE_VERSION
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
from cvm210_assets.assets.ingestion import S3_CSV, s3_csv_partition
from cvm210_assets.lake.schemas import BRONZE_LINEAGE
from cvm210_assets.lake.spark_tables import first_rows
from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.bronze import bronze_lineage, bronze_rows

BRONZE = "bronze"

ALL_LINES_LOADED = Check(
    "all_csv_rows_loaded",
    "Bronze holds exactly one row per non-empty data line of the month's CSV.",
)
CHECKS = (ALL_LINES_LOADED,)


@asset(
    deps=[s3_csv_partition],
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(BRONZE) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(
            BRONZE_LINEAGE,
            extra=[("<source columns>", "string", "Every column of the CSV header, as read")],
        ),
        "dagster/table_name": "cvm_p210.bronze_inf_diario",
    },
    description=(
        "Delta table of the CSV rows as read: source columns as text (new columns arrive by"
        " schema evolution) plus lineage. The month is replaced as a whole; earlier versions"
        " stay reachable by time travel."
    ),
)
def bronze(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize_months(
        context, BRONZE, CHECKS, lambda month: _load(context, lake, pyspark, month)
    )


def _load(
    context: AssetExecutionContext, lake: Lake, pyspark: LazyPySparkResource, month: Month
) -> MonthResult:
    with lake.month_lock(month, owner=run_label(context)):
        state = lake.state
        csv = require(state, S3_CSV, month)
        wanted = fingerprint(csv["csv_sha256"])
        previous = state.get(BRONZE, month)
        if is_current(previous, wanted):
            return unchanged(context, BRONZE, month, CHECKS, previous)

        spark = pyspark.spark_session
        tables = lake.spark_tables(spark)
        layout = LAYOUTS[csv["layout"]]
        ingested_at = now_utc()
        # Spark reads the raw zone itself: a folder, or s3:// (s3a locally, native on Databricks).
        lines = spark.read.option("lineSep", "\n").text(lake.storage.uri(csv["csv_key"]))
        lineage = bronze_lineage(layout, month, csv["csv_key"], csv["csv_sha256"], ingested_at)
        # Computed once, counted by the check, then written: what is checked is what is written.
        rows = bronze_rows(lines, layout, lineage).persist()
        try:
            count = rows.count()
            outcomes = [
                Outcome(
                    ALL_LINES_LOADED,
                    count == csv["rows"],
                    {"bronze_rows": count, "csv_data_lines": csv["rows"]},
                )
            ]
            if blocking_failure(outcomes):
                return MonthResult(month, {}, outcomes)
            write = tables.replace_months(
                BRONZE, rows, [month], {"cvm210.month": month.key, **wanted}
            )
            preview = first_rows(rows, 5, ["numero_linha"])
        finally:
            rows.unpersist()
        state.put(
            BRONZE,
            month,
            {
                **wanted,
                "rows": count,
                "delta_version": write.version,
                "layout": layout.name,
                "arquivo_origem": csv["csv_key"],
                "dh_ingestao": ingested_at.isoformat(),
                "checks": [o.record() for o in outcomes],
            },
        )
        return MonthResult(
            month,
            outcomes=outcomes,
            data_version=csv["csv_sha256"],
            metadata={
                "dagster/row_count": count,
                "delta_version": write.version,
                "table": MetadataValue.path(tables.uri(BRONZE)),
                "layout": layout.name,
                "source": csv["csv_key"],
                "source_sha256": csv["csv_sha256"],
                "preview": markdown_table(preview, [*layout.columns, "numero_linha"]),
                SKIPPED: False,
            },
        )

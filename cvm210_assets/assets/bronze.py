"""bronze: each month's CSV rows as read, every column as text, with lineage."""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset
from dagster_pyspark import LazyPySparkResource

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.common import (
    Check,
    Outcome,
    fingerprint,
    markdown_table,
    now_utc,
    table_schema,
)
from cvm210_assets.assets.ingestion import S3_CSV, s3_csv_partition
from cvm210_assets.assets.monthly import (
    Judged,
    MonthlyAsset,
    Plan,
    Work,
    Written,
    commit_metadata,
    materialize,
)
from cvm210_assets.lake.schemas import BRONZE_LINEAGE, PARTITION_COLUMNS
from cvm210_assets.lake.spark_tables import first_lines_by_month, months_predicate
from cvm210_assets.lake.table_catalog import BRONZE_TABLE
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.source.layouts import LAYOUTS
from cvm210_assets.transforms.bronze import (
    bronze_lineage,
    bronze_rows,
    lineage_frame,
    read_lines,
)

BRONZE = BRONZE_TABLE.asset

ALL_LINES_LOADED = Check(
    "all_csv_rows_loaded",
    "Bronze holds exactly one row per non-empty data line of the month's CSV.",
)
CHECKS = (ALL_LINES_LOADED,)


@asset(
    deps=[s3_csv_partition],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
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
        "dagster/table_name": BRONZE_TABLE.sql_name,
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
    yield from materialize(Bronze(), context, lake, pyspark)


class Bronze(MonthlyAsset):
    """A batch of months' CSVs of one layout, read in one scan, checked, written in one commit."""

    name = BRONZE
    upstream = S3_CSV
    checks = CHECKS

    def wanted(self, lake: Lake, month: Month, upstream: Mapping[str, Any]) -> dict[str, str]:
        return fingerprint(upstream["csv_sha256"])

    def batch_key(self, plan: Plan) -> str:
        return plan.upstream["layout"]

    @contextmanager
    def judge(self, work: Work, plans: Sequence[Plan]) -> Iterator[Judged]:
        csvs = {p.month: p.upstream for p in plans}
        layout = LAYOUTS[plans[0].upstream["layout"]]
        ingested_at = now_utc()
        lineages = {
            m: bronze_lineage(layout, m, csv["csv_key"], csv["csv_sha256"], ingested_at)
            for m, csv in csvs.items()
        }
        # Spark reads the raw zone itself: a folder, or s3:// (s3a locally, native on Databricks).
        lines = read_lines(work.spark, [work.lake.storage.uri(c["csv_key"]) for c in csvs.values()])
        lineage = lineage_frame(work.spark, list(lineages.values()))
        # The frame the check counts is the frame written: what is checked is what is written.
        # Not cached: the count reads only line numbers and lineage, a fraction of what caching
        # the rows' text costs (a 3.4 M-row batch: 26 s of CPU); the write computes the rows.
        rows = bronze_rows(lines, layout, lineage)
        counts = {
            Month(r["ano"], r["mes"]): r["count"]
            for r in rows.groupBy(*PARTITION_COLUMNS).count().collect()
        }
        outcomes = {
            m: [
                Outcome(
                    ALL_LINES_LOADED,
                    counts.get(m, 0) == csv["rows"],
                    {"bronze_rows": counts.get(m, 0), "csv_data_lines": csv["rows"]},
                )
            ]
            for m, csv in csvs.items()
        }

        def write(passed: Sequence[Plan]) -> dict[Month, Written]:
            months = [p.month for p in passed]
            keep = rows.where(months_predicate(months)) if len(passed) < len(plans) else rows
            commit = commit_metadata(passed)
            version = work.tables.replace_months(
                BRONZE_TABLE.name, keep, months, commit, cluster_by=BRONZE_TABLE.cluster_by
            ).version
            # From the rows just committed, not the CSVs: Parquet's page statistics on the line
            # number spare reading every line of the batch again (2-3 s a batch of 3.5 M rows).
            written = work.tables.read_months(BRONZE_TABLE.name, months)
            previews = first_lines_by_month(written, 5)
            return {
                p.month: Written(
                    record={
                        "rows": counts.get(p.month, 0),
                        "delta_version": version,
                        "layout": layout.name,
                        "arquivo_origem": csvs[p.month]["csv_key"],
                        "dh_ingestao": ingested_at.isoformat(),
                    },
                    metadata={
                        "dagster/row_count": counts.get(p.month, 0),
                        "delta_version": version,
                        "table": MetadataValue.path(work.tables.uri(BRONZE_TABLE.name)),
                        "layout": layout.name,
                        "source": csvs[p.month]["csv_key"],
                        "source_sha256": csvs[p.month]["csv_sha256"],
                        "preview": markdown_table(
                            previews.get(p.month, []), [*layout.columns, "numero_linha"]
                        ),
                    },
                )
                for p in passed
            }

        yield Judged(outcomes, write)

"""raw_zip and s3_csv_partition: the raw zone. No Spark here; these run where Dagster runs."""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.common import (
    SKIPPED,
    MonthResult,
    is_current,
    materialize_months,
    require,
    run_label,
)
from cvm210_assets.lake.raw_zone import csv_key
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import CvmSource, Lake
from cvm210_assets.source.archive import MonthMember, extract_month
from cvm210_assets.source.capture import RAW_ZIP, capture_month

S3_CSV = "s3_csv_partition"


@asset(
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"s3", "file"},
    code_version=PIPELINE_VERSION,
    description=(
        "The month's zip as CVM served it (the monthly file, or the yearly archive under HIST/)."
        " Every distinct version is kept in raw/zip/ by sha256; an unchanged file is not"
        " stored again."
    ),
)
def raw_zip(context: AssetExecutionContext, cvm: CvmSource, lake: Lake):
    yield from materialize_months(
        context, RAW_ZIP, (), lambda month: _capture(context, cvm, lake, month)
    )


def _capture(
    context: AssetExecutionContext, cvm: CvmSource, lake: Lake, month: Month
) -> MonthResult:
    with (
        lake.month_lock(month, owner=run_label(context)),
        tempfile.TemporaryDirectory(prefix="cvm210-raw-") as tmp,
    ):
        capture = capture_month(month, cvm.base_url, cvm.fetch, lake.storage, Path(tmp))
    if not capture.changed:
        context.log.info(f"{month}: CVM's file is unchanged (sha256 {capture.sha256[:12]})")
    return MonthResult(
        month,
        data_version=capture.csv_sha256,
        metadata={
            "url": MetadataValue.url(capture.url),
            "bytes": capture.bytes,
            "sha256": capture.sha256,
            "last_modified": capture.last_modified or "",
            "etag": capture.etag or "",
            "member": capture.member,
            "layout": capture.layout,
            "dagster/row_count": capture.rows,
            "csv_sha256": capture.csv_sha256,
            "stored_new_version": capture.stored_new_version,
            SKIPPED: not capture.changed,
            "path": MetadataValue.path(lake.storage.uri(capture.zip_key)),
        },
    )


@asset(
    deps=[raw_zip],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"s3", "csv"},
    code_version=PIPELINE_VERSION,
    description=(
        "The month's CSV in the raw zone, raw/csv/ano=YYYY/mes=MM/inf_diario_fi_YYYYMM.csv,"
        " byte for byte as in the zip (a yearly member is cut to the month's rows)."
    ),
)
def s3_csv_partition(context: AssetExecutionContext, lake: Lake):
    yield from materialize_months(context, S3_CSV, (), lambda month: _extract(context, lake, month))


def _extract(context: AssetExecutionContext, lake: Lake, month: Month) -> MonthResult:
    with lake.month_lock(month, owner=run_label(context)):
        state = lake.state
        raw = require(state, RAW_ZIP, month)
        key = csv_key(month)
        previous = state.get(S3_CSV, month)
        wanted = {"zip_sha256": raw["sha256"], "versao_pipeline": PIPELINE_VERSION}
        unchanged = is_current(previous, wanted) and lake.storage.exists(key)
        if unchanged:
            context.log.info(f"{month}: {key} already holds this zip's CSV; nothing to do")
            record = previous
        else:
            member = MonthMember(raw["member"], raw["whole_year_member"])
            with (
                tempfile.TemporaryDirectory(prefix="cvm210-csv-") as tmp,
                lake.storage.local_copy(raw["zip_key"]) as zip_path,
            ):
                extracted = extract_month(
                    zip_path, member, month, Path(tmp) / Path(key).name, raw["zip_key"]
                )
                lake.storage.upload(extracted.path, key)
            record = {
                **wanted,
                "csv_key": key,
                "csv_sha256": extracted.sha256,
                "bytes": extracted.bytes,
                "rows": extracted.rows,
                "layout": extracted.layout.name,
                "member": extracted.member,
            }
            state.put(S3_CSV, month, record)
        return MonthResult(
            month,
            data_version=record["csv_sha256"],
            metadata={
                "path": MetadataValue.path(lake.storage.uri(key)),
                "bytes": record["bytes"],
                "sha256": record["csv_sha256"],
                "dagster/row_count": record["rows"],
                "layout": record["layout"],
                SKIPPED: unchanged,
            },
        )

"""Bronze: every line of the months' CSVs as read, split into its columns, with lineage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from cvm210_assets.lake.schemas import BRONZE_LINEAGE, CSV_LINEAGE, literal_frame, typed
from cvm210_assets.partitions import Month
from cvm210_assets.source.layouts import Layout

_LINEAGE_FIELDS = [BRONZE_LINEAGE[name] for name in CSV_LINEAGE]
_ROW_BITS = 33  # monotonically_increasing_id = partition index << 33 | row number in partition
FILE = "_file"  # the name of the CSV a line comes from (one month's CSV each)
_OFFSETS = StructType(
    [
        StructField("_task", LongType()),
        StructField(FILE, StringType()),
        StructField("_base", LongType()),
    ]
)


def read_lines(spark: SparkSession, uris: Sequence[str]) -> DataFrame:
    """The text lines of several CSVs in one scan, each with its file's name and the offset of
    the split it was read in: what `number_lines` needs to number each file's lines."""
    return (
        spark.read.option("lineSep", "\n")
        .text(list(uris))
        .select(
            "value",
            F.col("_metadata.file_name").alias(FILE),
            F.col("_metadata.file_block_start").alias("_block"),
        )
    )


def number_lines(lines: DataFrame) -> DataFrame:
    """Adds `numero_linha`, the 1-based physical line number within its file, to `read_lines`.

    A scan's task reads whole splits in order, a split's lines in order, and may read several
    files' splits; counting the lines of each (task, file) piece in one cheap first pass over
    all the files turns the per-task row numbers into line numbers without a shuffle.
    """
    with_id = lines.withColumn("_id", F.monotonically_increasing_id())
    task = F.shiftright(F.col("_id"), _ROW_BITS)
    pieces = (
        with_id.groupBy(task.alias("_task"), FILE)
        .agg(F.min("_block").alias("block"), F.min("_id").alias("first"), F.count("*").alias("n"))
        .collect()
    )
    starts: dict[str, int] = {}
    firsts: list[tuple[int, str, int]] = []
    for piece in sorted(pieces, key=lambda p: (p[FILE], p["block"], p["first"])):
        before = starts.get(piece[FILE], 0)
        firsts.append((piece["_task"], piece[FILE], piece["first"] - before))
        starts[piece[FILE]] = before + piece["n"]
    if not firsts:
        return with_id.withColumn("numero_linha", F.lit(0).cast("long")).drop("_id", "_block")
    offsets = literal_frame(lines.sparkSession, firsts, _OFFSETS)
    return (
        with_id.withColumn("_task", task)
        .join(F.broadcast(offsets), ["_task", FILE])
        .withColumn("numero_linha", F.col("_id") - F.col("_base") + 1)
        .drop("_id", "_task", "_base", "_block")
    )


def without_final_cr(line: Column) -> Column:
    r"""The line's bytes without one final CR (of a CRLF), as s3_csv's line count sees them.
    On bytes, not a regex: `\r$` cost a second of CPU per million lines, and Java's `$` also
    matches before a final CR, so it took two (a line `\r\r` became empty and went uncounted)."""
    raw = line.cast("binary")
    final_cr = F.substring(raw, -1, 1) == F.lit(bytearray(b"\r"))
    return F.when(final_cr, F.substring(raw, F.lit(1), F.length(raw) - 1)).otherwise(raw)


def latin1_text(raw: Column) -> Column:
    """The line decoded as latin-1; Spark's text reader keeps the raw bytes, so nothing is lost."""
    return F.decode(raw.cast("binary"), "ISO-8859-1")


def bronze_lineage(
    layout: Layout,
    month: Month,
    arquivo_origem: str,
    arquivo_sha256: str,
    ingested_at: dt.datetime,
) -> dict[str, Any]:
    """The lineage every row of one CSV shares, with the file's name to find its lines by."""
    return {
        FILE: arquivo_origem.rsplit("/", 1)[-1],
        "arquivo_origem": arquivo_origem,
        "arquivo_sha256": arquivo_sha256,
        "layout_cabecalho": layout.name,
        "dh_ingestao": ingested_at,
        "ano": month.ano,
        "mes": month.mes,
    }


def lineage_frame(spark: SparkSession, lineages: Sequence[Mapping[str, Any]]) -> DataFrame:
    """The lineages of a batch's CSVs as a small frame, joined to the lines by file name."""
    names = [lineage[FILE] for lineage in lineages]
    if len(set(names)) != len(names):
        raise ValueError(f"two CSVs of one batch share a file name: {sorted(names)}")
    schema = StructType([StructField(FILE, StringType()), *_LINEAGE_FIELDS])
    rows = [tuple(lineage[name] for name in (FILE, *CSV_LINEAGE)) for lineage in lineages]
    return literal_frame(spark, rows, schema)


def bronze_rows(lines: DataFrame, layout: Layout, lineage: DataFrame) -> DataFrame:
    """One row per non-empty data line of CSVs of one layout: the layout's columns as text,
    extras kept, lineage added (each month's CSV its own).

    `lines` is `read_lines(...)`: a trailing CR is removed here, so CRLF and LF files give the
    same rows. `lineage` is `lineage_frame(...)` of the files' `bronze_lineage`.
    """
    ncols = len(layout.columns)
    text = latin1_text(without_final_cr(F.col("value")))
    data = (
        number_lines(lines)
        .where(F.col("numero_linha") > 1)
        .select(text.alias("_line"), "numero_linha", FILE)
        .where(F.col("_line") != "")
        .withColumn("_fields", F.split(F.col("_line"), ";", -1))
        .withColumn("qtd_campos", F.size("_fields"))
    )
    source_columns = [
        F.try_element_at(F.col("_fields"), F.lit(i + 1)).alias(name)
        for i, name in enumerate(layout.columns)
    ]
    extras = F.when(
        F.col("qtd_campos") > ncols,
        F.array_join(F.slice("_fields", F.lit(ncols + 1), F.col("qtd_campos") - ncols), ";"),
    )
    columns = {
        "campos_extras": extras,
        "qtd_campos": F.col("qtd_campos"),
        "numero_linha": F.col("numero_linha"),
    }
    return data.join(F.broadcast(lineage), FILE).select(
        *source_columns,
        *(
            typed(columns.get(f.name, F.col(f.name)), f.dataType).alias(f.name)
            for f in BRONZE_LINEAGE.fields
        ),
    )

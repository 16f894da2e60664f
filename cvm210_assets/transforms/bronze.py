"""Bronze: every line of the month's CSV as read, split into its columns, with lineage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import BRONZE_LINEAGE, typed
from cvm210_assets.partitions import Month
from cvm210_assets.source.layouts import Layout

_ROW_BITS = 33  # monotonically_increasing_id = partition index << 33 | row number in partition


def number_lines(lines: DataFrame) -> DataFrame:
    """Adds `numero_linha`, the 1-based physical line number, to one file's text lines.

    Each split of the file keeps its lines in order; counting the lines of every split (a cheap
    first pass) turns the per-split row numbers into line numbers without a shuffle.
    """
    with_id = lines.withColumn("_id", F.monotonically_increasing_id())
    split = F.shiftright(F.col("_id"), _ROW_BITS)
    counts = dict(with_id.groupBy(split.alias("split")).count().collect())
    starts: list[Column] = []
    total = 0
    for index in sorted(counts):
        starts += [F.lit(index), F.lit(total)]
        total += counts[index]
    offset = F.try_element_at(F.create_map(*starts), split) if starts else F.lit(0)
    row_in_split = F.col("_id").bitwiseAND(F.lit((1 << _ROW_BITS) - 1))
    return with_id.withColumn("numero_linha", row_in_split + offset + 1).drop("_id")


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
    """The lineage every row of one CSV shares."""
    return {
        "arquivo_origem": arquivo_origem,
        "arquivo_sha256": arquivo_sha256,
        "layout_cabecalho": layout.name,
        "dh_ingestao": ingested_at,
        "ano": month.ano,
        "mes": month.mes,
    }


def bronze_rows(lines: DataFrame, layout: Layout, lineage: Mapping[str, Any]) -> DataFrame:
    """One row per non-empty data line: the layout's columns as text, extras kept, lineage added.

    `lines` is `spark.read.text(csv, lineSep="\\n")`: a trailing CR is removed here, so CRLF and
    LF files give the same rows. `lineage` is `bronze_lineage(...)`.
    """
    ncols = len(layout.columns)
    text = F.regexp_replace(latin1_text(F.col("value")), "\r$", "")
    data = (
        number_lines(lines)
        .where(F.col("numero_linha") > 1)
        .select(text.alias("_line"), "numero_linha")
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
        **{name: F.lit(value) for name, value in lineage.items()},
    }
    return data.select(
        *source_columns,
        *(typed(columns[f.name], f.dataType).alias(f.name) for f in BRONZE_LINEAGE.fields),
    )

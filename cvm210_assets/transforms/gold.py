"""Gold: one row of fund-flow KPIs per fund (class or subclass) and month."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from cvm210_assets.lake.schemas import (
    GOLD,
    GOLD_KEY,
    MONEY,
    MONEY_SUM,
    in_schema,
    literal_frame,
)
from cvm210_assets.partitions import Month
from cvm210_assets.transforms.events import with_events


def _ratio(numerator: Column, denominator: Column) -> Column:
    """A ratio of exact values as DOUBLE; NULL when the denominator is NULL or zero."""
    return F.when(denominator != 0, numerator.cast("double") / denominator.cast("double"))


_SOURCES = StructType(
    [
        StructField(name, GOLD[name].dataType)
        for name in ("ano", "mes", "arquivo_origem", "arquivo_sha256")
    ]
)


def month_sources(spark: SparkSession, sources: Mapping[Month, tuple[str, str]]) -> DataFrame:
    """Each month's CSV (arquivo_origem, arquivo_sha256) as a small frame for `kpis`: the CSV
    that silver's month now holds (a restated month's unchanged rows keep their old lineage)."""
    rows = [(m.ano, m.mes, origem, sha) for m, (origem, sha) in sorted(sources.items())]
    return literal_frame(spark, rows, _SOURCES)


def kpis(
    silver: DataFrame, sources: DataFrame, pipeline_version: str, processed_at: dt.datetime
) -> DataFrame:
    """Each month's KPIs per (cnpj_fundo, id_subclasse); sums are exact DECIMALs. `sources` is
    `month_sources(...)` of silver's months."""
    zero = F.lit(0).cast(MONEY)
    captacao = F.coalesce(F.col("captc_dia"), zero)
    resgate = F.coalesce(F.col("resg_dia"), zero)
    # The first and the last report of the month, each as one struct ordered by its date.
    day = F.struct("dt_comptc", "vl_patrim_liq", "vl_quota", "nr_cotst", "tp_fundo")
    monthly = silver.groupBy(*GOLD_KEY).agg(
        # Silver's key is unique (a blocking check), so a row is a distinct dt_comptc.
        F.count("dt_comptc").alias("dias_com_informe"),
        F.sum(captacao).alias("total_captacao"),
        F.sum(resgate).alias("total_resgate"),
        F.avg("vl_patrim_liq").alias("patrimonio_medio"),
        F.max("vl_quota").alias("cota_maxima"),
        F.min("vl_quota").alias("cota_minima"),
        F.min(day).alias("_first"),
        F.max(day).alias("_last"),
        F.count_if(captacao - resgate < 0).alias("dias_fluxo_negativo"),
    )
    fluxo = (F.col("total_captacao") - F.col("total_resgate")).cast(MONEY_SUM)
    ends = monthly.select(
        "*",
        F.col("_first.vl_patrim_liq").alias("patrimonio_inicial"),
        F.col("_last.vl_patrim_liq").alias("patrimonio_final"),
        F.col("_first.vl_quota").alias("cota_inicial"),
        F.col("_last.vl_quota").alias("cota_final"),
        F.col("_first.nr_cotst").alias("cotistas_inicial"),
        F.col("_last.nr_cotst").alias("cotistas_final"),
        F.col("_last.tp_fundo").alias("tp_fundo"),
    )
    derived = {
        "fluxo_liquido": fluxo,
        "variacao_cota": _ratio(F.col("cota_final"), F.col("cota_inicial")) - 1,
        "variacao_cotistas": F.col("cotistas_final") - F.col("cotistas_inicial"),
        "taxa_resgate": _ratio(F.col("total_resgate"), F.col("patrimonio_medio")),
        "fluxo_liquido_pct_pl": _ratio(fluxo, F.col("patrimonio_medio")),
        "em_risco": fluxo < 0,
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    ends = with_events(ends, silver)
    return in_schema(ends.join(F.broadcast(sources), ["ano", "mes"]), GOLD, derived)

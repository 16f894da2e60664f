"""Gold: one row of fund-flow KPIs per fund (class or subclass) and month."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import GOLD, GOLD_KEY, MONEY, MONEY_SUM


def _ratio(numerator: Column, denominator: Column) -> Column:
    """A ratio of exact values as DOUBLE; NULL when the denominator is NULL or zero."""
    return F.when(denominator != 0, numerator.cast("double") / denominator.cast("double"))


def kpis(
    silver: DataFrame,
    arquivo_origem: str,
    arquivo_sha256: str,
    pipeline_version: str,
    processed_at: dt.datetime,
) -> DataFrame:
    """The month's KPIs per (cnpj_fundo, id_subclasse); sums are exact DECIMALs."""
    zero = F.lit(0).cast(MONEY)
    captacao = F.coalesce(F.col("captc_dia"), zero)
    resgate = F.coalesce(F.col("resg_dia"), zero)
    monthly = silver.groupBy(*GOLD_KEY).agg(
        F.count_distinct("dt_comptc").alias("dias_com_informe"),
        F.sum(captacao).alias("total_captacao"),
        F.sum(resgate).alias("total_resgate"),
        F.avg("vl_patrim_liq").alias("patrimonio_medio"),
        F.min_by("vl_patrim_liq", "dt_comptc").alias("patrimonio_inicial"),
        F.max_by("vl_patrim_liq", "dt_comptc").alias("patrimonio_final"),
        F.min_by("vl_quota", "dt_comptc").alias("cota_inicial"),
        F.max_by("vl_quota", "dt_comptc").alias("cota_final"),
        F.min_by("nr_cotst", "dt_comptc").alias("cotistas_inicial"),
        F.max_by("nr_cotst", "dt_comptc").alias("cotistas_final"),
        F.sum(F.when(captacao - resgate < 0, 1).otherwise(0)).alias("dias_fluxo_negativo"),
        F.max_by("tp_fundo", "dt_comptc").alias("tp_fundo"),
    )
    fluxo = (F.col("total_captacao") - F.col("total_resgate")).cast(MONEY_SUM)
    derived = {
        "fluxo_liquido": fluxo,
        "variacao_cota": _ratio(F.col("cota_final"), F.col("cota_inicial")) - 1,
        "variacao_cotistas": F.col("cotistas_final") - F.col("cotistas_inicial"),
        "taxa_resgate": _ratio(F.col("total_resgate"), F.col("patrimonio_medio")),
        "fluxo_liquido_pct_pl": _ratio(fluxo, F.col("patrimonio_medio")),
        "em_risco": fluxo < 0,
        "arquivo_origem": F.lit(arquivo_origem),
        "arquivo_sha256": F.lit(arquivo_sha256),
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    return monthly.select(
        *(
            derived.get(field.name, F.col(field.name)).cast(field.dataType).alias(field.name)
            for field in GOLD.fields
        )
    )

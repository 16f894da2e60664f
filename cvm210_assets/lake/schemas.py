"""Schemas of the Delta tables: the contract that transforms, tables, checks and SQL share."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

MONEY = DecimalType(17, 2)
QUOTA = DecimalType(27, 12)
MONEY_SUM = DecimalType(27, 2)
MONEY_MEAN = DecimalType(21, 6)


def _schema(*fields: tuple[str, DataType, str]) -> StructType:
    return StructType(
        [StructField(name, kind, True, {"comment": comment}) for name, kind, comment in fields]
    )


PARTITION_COLUMNS = ("ano", "mes")

_PARTITION = (
    ("ano", IntegerType(), "Year of the partition (reporting month)"),
    ("mes", IntegerType(), "Month of the partition, 1-12"),
)
_SOURCE_LINEAGE = (
    ("arquivo_origem", StringType(), "CSV the row came from (raw zone path)"),
    ("arquivo_sha256", StringType(), "sha256 of that CSV"),
    ("layout_cabecalho", StringType(), "Header layout of that CSV: a, b or c"),
    ("numero_linha", LongType(), "Physical line number in that CSV (header = 1)"),
)

# Bronze: lineage only; the source columns (all text, as read) are added per layout by schema
# evolution, so bronze's full schema is the union of the layouts seen.
BRONZE_LINEAGE = _schema(
    ("campos_extras", StringType(), "Fields beyond the header's count, as read (else NULL)"),
    ("qtd_campos", IntegerType(), "Number of ';'-separated fields on the line"),
    *_SOURCE_LINEAGE,
    ("dh_ingestao", TimestampType(), "When the row was loaded into bronze (UTC)"),
    *_PARTITION,
)

SILVER = _schema(
    ("tp_fundo", StringType(), "Fund or class type (TP_FUNDO / TP_FUNDO_CLASSE); NULL in layout a"),
    ("cnpj_fundo", StringType(), "Fund or class CNPJ, 14 digits without punctuation"),
    ("id_subclasse", StringType(), "Subclass id (CVM 175); NULL when the row is the class"),
    ("dt_comptc", DateType(), "Reporting date (data de competência)"),
    ("vl_total", MONEY, "Portfolio value, R$"),
    ("vl_quota", QUOTA, "Quota value, R$"),
    ("vl_patrim_liq", MONEY, "Net assets (patrimônio líquido), R$"),
    ("captc_dia", MONEY, "Inflows of the day (captação), R$"),
    ("resg_dia", MONEY, "Redemptions of the day (resgates), R$"),
    ("nr_cotst", IntegerType(), "Number of quota holders (cotistas)"),
    *_SOURCE_LINEAGE,
    ("dh_ingestao", TimestampType(), "When the source row was loaded into bronze (UTC)"),
    ("versao_pipeline", StringType(), "Pipeline version that wrote the row"),
    ("dh_processamento", TimestampType(), "When the row was last written to silver (UTC)"),
    *_PARTITION,
)
SILVER_KEY = ("cnpj_fundo", "id_subclasse", "dt_comptc")
SILVER_VALUES = (
    "tp_fundo",
    "vl_total",
    "vl_quota",
    "vl_patrim_liq",
    "captc_dia",
    "resg_dia",
    "nr_cotst",
)

SILVER_REJECTS = _schema(
    ("arquivo_origem", StringType(), "CSV the row came from"),
    ("arquivo_sha256", StringType(), "sha256 of that CSV"),
    ("numero_linha", LongType(), "Physical line number in that CSV (header = 1)"),
    ("registro", StringType(), "The line as read"),
    ("motivo", StringType(), "Reason code (see README, 'Rejected rows')"),
    ("detalhe", StringType(), "What exactly was wrong"),
    ("versao_pipeline", StringType(), "Pipeline version that judged the row"),
    ("dh_processamento", TimestampType(), "When the row was judged (UTC)"),
    *_PARTITION,
)

SILVER_CHANGES = _schema(
    ("cnpj_fundo", StringType(), "Fund or class CNPJ, 14 digits"),
    ("id_subclasse", StringType(), "Subclass id; NULL for the class itself"),
    ("dt_comptc", DateType(), "Reporting date whose row changed"),
    ("mudanca", StringType(), "inserida, alterada or removida by the restatement"),
    ("colunas_alteradas", StringType(), "For alterada: the silver columns whose value changed"),
    ("vl_patrim_liq_anterior", MONEY, "Net assets before the restatement, R$"),
    ("vl_patrim_liq_novo", MONEY, "Net assets after the restatement, R$"),
    ("captc_dia_anterior", MONEY, "Inflows before, R$"),
    ("captc_dia_novo", MONEY, "Inflows after, R$"),
    ("resg_dia_anterior", MONEY, "Redemptions before, R$"),
    ("resg_dia_novo", MONEY, "Redemptions after, R$"),
    ("vl_quota_anterior", QUOTA, "Quota before"),
    ("vl_quota_novo", QUOTA, "Quota after"),
    ("nr_cotst_anterior", IntegerType(), "Holders before"),
    ("nr_cotst_novo", IntegerType(), "Holders after"),
    ("variacao_fluxo_liquido", MONEY_SUM, "Change in the day's net flow (captc − resg), R$"),
    ("arquivo_sha256_anterior", StringType(), "sha256 of the CSV the month held before"),
    ("arquivo_sha256_novo", StringType(), "sha256 of the restated CSV"),
    ("dh_publicacao_cvm", TimestampType(), "Last-Modified of the restated file at CVM (UTC)"),
    ("dh_processamento", TimestampType(), "When cvm210 applied the restatement (UTC)"),
    *_PARTITION,
)

GOLD_KEY = ("cnpj_fundo", "id_subclasse", "ano", "mes")
GOLD = _schema(
    ("cnpj_fundo", StringType(), "Fund or class CNPJ, 14 digits"),
    ("id_subclasse", StringType(), "Subclass id; NULL for the class itself"),
    ("tp_fundo", StringType(), "Fund type on the month's last report"),
    ("dias_com_informe", IntegerType(), "Days with a daily report in the month"),
    ("total_captacao", MONEY_SUM, "Σ captc_dia: gross inflow of the month, R$"),
    ("total_resgate", MONEY_SUM, "Σ resg_dia: gross outflow of the month, R$"),
    ("fluxo_liquido", MONEY_SUM, "total_captacao − total_resgate: net flow, R$"),
    ("patrimonio_medio", MONEY_MEAN, "Mean of the daily net assets, R$"),
    ("patrimonio_inicial", MONEY, "Net assets on the month's first report, R$"),
    ("patrimonio_final", MONEY, "Net assets on the month's last report, R$"),
    ("cota_inicial", QUOTA, "Quota on the month's first report"),
    ("cota_final", QUOTA, "Quota on the month's last report"),
    ("cota_maxima", QUOTA, "Highest quota of the month"),
    ("cota_minima", QUOTA, "Lowest quota of the month"),
    ("variacao_cota", DoubleType(), "cota_final / cota_inicial − 1: the month's quota return"),
    ("cotistas_inicial", IntegerType(), "Holders on the month's first report"),
    ("cotistas_final", IntegerType(), "Holders on the month's last report"),
    ("variacao_cotistas", IntegerType(), "cotistas_final − cotistas_inicial"),
    ("taxa_resgate", DoubleType(), "total_resgate / patrimonio_medio"),
    ("fluxo_liquido_pct_pl", DoubleType(), "fluxo_liquido / patrimonio_medio"),
    ("dias_fluxo_negativo", IntegerType(), "Days with captc_dia − resg_dia < 0"),
    ("em_risco", BooleanType(), "fluxo_liquido < 0: the fund lost money to outflows"),
    ("arquivo_origem", StringType(), "CSV the month's silver was last synchronized to"),
    ("arquivo_sha256", StringType(), "sha256 of that CSV"),
    ("versao_pipeline", StringType(), "Pipeline version that computed the row"),
    ("dh_processamento", TimestampType(), "When the row was computed (UTC)"),
    *_PARTITION,
)

"""Schemas of the Delta tables: the contract that transforms, tables, checks and SQL share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
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

from cvm210_assets.gold_rules import PARES_MINIMO
from cvm210_assets.lake.table_catalog import PARTITION_COLUMNS

MONEY = DecimalType(17, 2)
QUOTA = DecimalType(27, 12)
MONEY_SUM = DecimalType(27, 2)
MONEY_MEAN = DecimalType(21, 6)


def in_schema(
    rows: DataFrame, schema: StructType, values: Mapping[str, Column] | None = None
) -> DataFrame:
    """`rows` as `schema`'s columns, in its order and types: each column is `values[name]`, else
    the column of that name."""
    values = values or {}
    return rows.select(
        *(typed(values.get(f.name, F.col(f.name)), f.dataType).alias(f.name) for f in schema)
    )


def month_index(ano: Column, mes: Column) -> Column:
    """A month as one ordered integer, ano × 12 + mes − 1: months apart are its difference."""
    return ano * 12 + mes - 1


def typed(column: Column, kind: DataType) -> Column:
    """`column` cast to `kind` by its SQL name: a type object sent through Spark Connect carries
    an explicit collation, which Delta records as `string collate UTF8_BINARY`, a type delta-rs
    cannot read."""
    return column.cast(kind.simpleString())


def literal_frame(
    spark: SparkSession, rows: Sequence[Sequence[Any]], schema: StructType
) -> DataFrame:
    """A few rows as a DataFrame of literals. createDataFrame of a Python list ships the rows
    through Python workers, started (and kept, 50 MB each) for a frame of ten rows; literals
    cost one constant in the plan. The whole frame is one SQL expression, sent to the JVM in
    one call: a Column per value took three Py4J calls each, 6.8 s for the lineage of a
    263-month range."""
    if not rows:
        return spark.range(0).select(
            *(F.lit(None).cast(f.dataType.simpleString()).alias(f.name) for f in schema)
        )
    structs = ", ".join(
        "named_struct("
        + ", ".join(
            f"'{f.name}', CAST({sql_literal(value)} AS {f.dataType.simpleString()})"
            for value, f in zip(row, schema.fields, strict=True)
        )
        + ")"
        for row in rows
    )
    return spark.range(1).selectExpr(f"inline(array({structs}))")


def sql_literal(value: Any) -> str:
    """`value` as a Spark SQL expression of the same value, whatever it holds: text as its
    UTF-8 bytes (no quoting to get wrong), instants as microseconds and days since the epoch,
    converted as Spark converts Python's (a naive datetime is local time)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"'{value}'"
    if isinstance(value, str):
        return f"CAST(X'{value.encode().hex()}' AS STRING)"
    if isinstance(value, dt.datetime):
        return f"timestamp_micros({TimestampType().toInternal(value)})"
    if isinstance(value, dt.date):
        return f"date_from_unix_date({DateType().toInternal(value)})"
    raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")


def _schema(*fields: tuple[str, DataType, str]) -> StructType:
    return StructType(
        [StructField(name, kind, True, {"comment": comment}) for name, kind, comment in fields]
    )


# What every row of one CSV shares, from bronze to silver and its rejects: its file and month.
CSV_LINEAGE = (
    "arquivo_origem",
    "arquivo_sha256",
    "layout_cabecalho",
    "dh_ingestao",
    *PARTITION_COLUMNS,
)

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
    ("dias_com_informe", IntegerType(), "Days with a daily report (dias com informe) in the month"),
    ("total_captacao", MONEY_SUM, "Σ captc_dia: gross inflow of the month, R$"),
    ("total_resgate", MONEY_SUM, "Σ resg_dia: gross outflow of the month, R$"),
    ("fluxo_liquido", MONEY_SUM, "total_captacao − total_resgate: net flow, R$"),
    (
        "patrimonio_medio",
        MONEY_MEAN,
        "Average net assets (patrimônio médio): mean of the days', R$",
    ),
    ("patrimonio_inicial", MONEY, "Starting net assets (patrimônio inicial): first report's, R$"),
    ("patrimonio_final", MONEY, "Ending net assets (patrimônio final): last report's, R$"),
    ("cota_inicial", QUOTA, "Quota value (cota) on the month's first report"),
    ("cota_final", QUOTA, "Quota value (cota) on the month's last report"),
    ("cota_maxima", QUOTA, "Highest quota of the month"),
    ("cota_minima", QUOTA, "Lowest quota of the month"),
    ("variacao_cota", DoubleType(), "cota_final / cota_inicial − 1: the month's quota return"),
    ("cotistas_inicial", IntegerType(), "Quota holders (cotistas) on the month's first report"),
    ("cotistas_final", IntegerType(), "Holders on the month's last report"),
    ("variacao_cotistas", IntegerType(), "cotistas_final − cotistas_inicial"),
    (
        "taxa_resgate",
        DoubleType(),
        "Redemption rate (taxa de resgate): total_resgate / patrimonio_medio",
    ),
    (
        "fluxo_liquido_pct_pl",
        DoubleType(),
        "Net flow as a share of net assets: fluxo_liquido / patrimonio_medio",
    ),
    (
        "dias_fluxo_negativo",
        IntegerType(),
        "Days of net outflow (dias de fluxo negativo): captc_dia < resg_dia",
    ),
    (
        "em_risco",
        BooleanType(),
        "At risk (em risco): fluxo_liquido < 0, the fund lost money to outflows",
    ),
    (
        "evento",
        StringType(),
        "Event (evento) whose flows are money moving between keys, not investors' flows:"
        " transferencia (PL moved to or from another key on one day), sucessao (one key stopped"
        " and another started with the same quota and PL); NULL for none (docs/events.md)",
    ),
    (
        "contraparte_cnpj",
        StringType(),
        "The event's other key (contraparte): its CNPJ; NULL when the data cannot tell",
    ),
    ("contraparte_id_subclasse", StringType(), "The other key's subclass id; NULL for a class"),
    (
        "rendimento",
        MONEY_SUM,
        "Return earned (rendimento): Σ over the month's reports after its first of the previous"
        " report's vl_patrim_liq × (vl_quota / previous vl_quota − 1), each rounded half-up to"
        " the cent, R$; NULL with one report or a quota missing or ≤ 0 (docs/analytics.md)",
    ),
    (
        "residuo_conciliacao",
        MONEY_SUM,
        "Flow reconciliation residual (resíduo): Σ over the same days of vl_patrim_liq −"
        " previous vl_patrim_liq − the day's return − (captc_dia − resg_dia), R$; 0 when net"
        " assets move only by return and flows, NULL when rendimento is",
    ),
    (
        "residuo_pct_pl",
        DoubleType(),
        "residuo_conciliacao / patrimonio_medio: beyond ±1 % (or R$ 1.00) the month's flows do"
        " not reconcile (check flows_reconcile)",
    ),
    ("arquivo_origem", StringType(), "CSV the month's silver was last synchronized to"),
    ("arquivo_sha256", StringType(), "sha256 of that CSV"),
    ("versao_pipeline", StringType(), "Pipeline version that computed the row"),
    ("dh_processamento", TimestampType(), "When the row was computed (UTC)"),
    *_PARTITION,
)

# The fund registry (issue #7): one row per fund, class or subclass, as CVM registers it today.
FUND_REGISTRY_KEY = ("cnpj_fundo", "id_subclasse")
FUND_REGISTRY = _schema(
    (
        "cnpj_fundo",
        StringType(),
        "CNPJ, 14 digits: the class's for CVM 175 classes, the fund's for older funds"
        " (the key of gold_kpis)",
    ),
    ("id_subclasse", StringType(), "Subclass id (CVM 175); NULL for the class or fund itself"),
    ("nome", StringType(), "Registered name (denominação social)"),
    ("tipo", StringType(), "Fund or class type (Tipo_Classe, Tipo_Fundo or TP_FUNDO)"),
    ("classe", StringType(), "CVM class (classificação): Renda Fixa, Ações, Multimercado, …"),
    ("classe_anbima", StringType(), "ANBIMA class (classificação ANBIMA)"),
    ("gestor", StringType(), "Manager (gestor); several joined with ' / ', sorted by name"),
    ("cnpj_gestor", StringType(), "Manager's CNPJ (or CPF), in the order of `gestor`"),
    ("administrador", StringType(), "Administrator (administrador fiduciário)"),
    ("cnpj_administrador", StringType(), "Administrator's CNPJ, 14 digits"),
    ("situacao", StringType(), "Registration status (situação), e.g. Em Funcionamento Normal"),
    (
        "data_situacao",
        DateType(),
        "Since when the status holds (Data_Inicio_Situacao / DT_INI_SIT)",
    ),
    (
        "data_cancelamento",
        DateType(),
        "When the registration was cancelled, if situacao says it is (Data_Cancelamento /"
        " DT_CANCEL, else data_situacao); NULL for a key not cancelled (docs/events.md)",
    ),
    (
        "fundo_de_cotas",
        BooleanType(),
        "Fund of funds (fundo de cotas: invests in other funds); NULL when CVM does not say",
    ),
    ("fonte", StringType(), "Source file: registro_fundo_classe (CVM 175) or cad_fi (older)"),
    ("dh_atualizacao", TimestampType(), "When cvm210 wrote this version of the registry (UTC)"),
)

# Breakdowns of gold_kpis by class, manager and administrator (issue #7).
GOLD_BREAKDOWNS_KEY = ("escopo", "dimensao", "valor", "ano", "mes")


def _window(months: int) -> tuple[tuple[str, DataType, str], ...]:
    span = f"the {months} months ending in this one"
    return (
        (f"total_captacao_{months}m", MONEY_SUM, f"Gross inflow over {span}, R$"),
        (f"total_resgate_{months}m", MONEY_SUM, f"Gross outflow over {span}, R$"),
        (f"fluxo_liquido_{months}m", MONEY_SUM, f"Net flow over {span}, R$"),
        (
            f"patrimonio_inicial_{months}m",
            MONEY_SUM,
            "Starting net assets of the window: Σ patrimonio_inicial of its first month, R$",
        ),
        (
            f"crescimento_organico_{months}m",
            DoubleType(),
            f"fluxo_liquido_{months}m / patrimonio_inicial_{months}m (organic growth)",
        ),
        (
            f"meses_{months}m",
            IntegerType(),
            f"Months of the window present in gold_kpis; the window's columns are NULL unless"
            f" all {months} are",
        ),
    )


GOLD_BREAKDOWNS = _schema(
    (
        "escopo",
        StringType(),
        "todos (every fund) or sem_fundos_de_cotas (funds of funds left out: no double counting)",
    ),
    ("dimensao", StringType(), "What the row groups by: mercado, classe, gestor or administrador"),
    (
        "valor",
        StringType(),
        "The class, manager or administrator (total for mercado; não informado without one)",
    ),
    ("fundos", IntegerType(), "Funds (classes and subclasses) of the group in the month"),
    ("total_captacao", MONEY_SUM, "Gross inflow of the month (captação), R$"),
    ("total_resgate", MONEY_SUM, "Gross outflow of the month (resgates), R$"),
    ("fluxo_liquido", MONEY_SUM, "Net flow of the month (fluxo líquido), R$"),
    (
        "patrimonio_inicial",
        MONEY_SUM,
        "Starting net assets: Σ of each fund's net assets on its first report of the month, R$",
    ),
    (
        "crescimento_organico",
        DoubleType(),
        "fluxo_liquido / patrimonio_inicial: growth from flows alone (organic growth)",
    ),
    *_window(3),
    *_window(12),
    (
        "fluxo_eventos",
        MONEY_SUM,
        "Net flow of the group's fund-months that are events (gold_kpis.evento): money moving"
        " between keys, not investors' (docs/events.md), R$",
    ),
    ("fluxo_organico", MONEY_SUM, "fluxo_liquido − fluxo_eventos: investors' net flow, R$"),
    (
        "crescimento_organico_sem_eventos",
        DoubleType(),
        "fluxo_organico / patrimonio_inicial: organic growth with events left out",
    ),
    ("versao_pipeline", StringType(), "Pipeline version that computed the row"),
    ("dh_processamento", TimestampType(), "When the row was computed (UTC)"),
    *_PARTITION,
)

# Each fund-month's standing among its peers (issue #17): written with gold_breakdowns.
GOLD_PARES = _schema(
    ("cnpj_fundo", StringType(), "Fund or class CNPJ, 14 digits"),
    ("id_subclasse", StringType(), "Subclass id; NULL for the class itself"),
    ("classe", StringType(), "CVM class the fund was ranked in (fund_registry); NULL: not ranked"),
    ("gestor", StringType(), "Manager whose funds it was ranked among (fund_registry)"),
    ("fluxo_liquido_pct_pl", DoubleType(), "gold_kpis' fluxo_liquido / patrimonio_medio: ranked"),
    (
        "pares_classe",
        IntegerType(),
        "Peers (pares): funds of the class with a fluxo_liquido_pct_pl this month, itself included",
    ),
    (
        "posicao_classe",
        IntegerType(),
        "Place in the class, 1 = the worst net flow; ties share the lower place; NULL with"
        " the percentile",
    ),
    (
        "percentil_classe",
        DoubleType(),
        "(posicao_classe − 1) / (pares_classe − 1): share of the class's other funds with a worse"
        f" net flow; 0 = the worst, 1 = the best; NULL below {PARES_MINIMO} peers",
    ),
    ("pares_gestor", IntegerType(), "Funds of the same manager with a fluxo_liquido_pct_pl"),
    ("posicao_gestor", IntegerType(), "Place among the manager's funds, 1 = the worst net flow"),
    (
        "percentil_gestor",
        DoubleType(),
        f"(posicao_gestor − 1) / (pares_gestor − 1): 0 = the manager's worst; NULL below"
        f" {PARES_MINIMO} peers",
    ),
    ("versao_pipeline", StringType(), "Pipeline version that computed the row"),
    ("dh_processamento", TimestampType(), "When the row was computed (UTC)"),
    *_PARTITION,
)

"""Silver: bronze rows judged against CVM's data dictionary, in one canonical schema.

Every bronze row ends up in exactly one of the two outputs: silver, or the rejects with the
first rule it broke (README, "Rejected rows"). Nothing is rounded, coerced or guessed.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, IntegerType

from cvm210_assets.lake.schemas import BRONZE_LINEAGE, SILVER, SILVER_KEY, SILVER_REJECTS
from cvm210_assets.partitions import Month
from cvm210_assets.source.layouts import Layout

# (column, precision, scale); NR_COTST is an INT. Checked in this order.
DECIMAL_FIELDS = (
    ("VL_TOTAL", 17, 2),
    ("VL_QUOTA", 27, 12),
    ("VL_PATRIM_LIQ", 17, 2),
    ("CAPTC_DIA", 17, 2),
    ("RESG_DIA", 17, 2),
)
SILVER_NAMES = {
    "VL_TOTAL": "vl_total",
    "VL_QUOTA": "vl_quota",
    "VL_PATRIM_LIQ": "vl_patrim_liq",
    "CAPTC_DIA": "captc_dia",
    "RESG_DIA": "resg_dia",
    "NR_COTST": "nr_cotst",
}
REJECT_REASONS = (
    "numero_de_campos",
    "cnpj_ausente",
    "cnpj_invalido",
    "data_ausente",
    "data_invalida",
    "fora_do_mes",
    "valor_invalido",
    "patrimonio_ausente",
    "patrimonio_nao_positivo",
    "duplicado",
)


def strip(column: Column) -> Column:
    """Trims ASCII whitespace at both ends (spaces, tabs, CR, LF, FF, VT)."""
    return F.regexp_replace(column, r"^[ \t\r\n\f\x0B]+|[ \t\r\n\f\x0B]+$", "")


def decimal_text_ok(text: Column, precision: int, scale: int) -> Column:
    """An exact decimal that fits DECIMAL(precision, scale) without rounding."""
    return text.rlike(rf"^[+-]?0*[0-9]{{1,{precision - scale}}}(\.[0-9]{{1,{scale}}})?$")


def _source(column: str) -> str:
    return f"src_{column}"


def judge(bronze: DataFrame, layout: Layout, month: Month) -> DataFrame:
    """Bronze rows with their parsed fields and `motivo`/`detalhe` (NULL for good rows)."""
    ncols = len(layout.columns)
    # Source columns are renamed: Spark's names are case-insensitive, CNPJ_FUNDO is cnpj_fundo.
    # Other layouts' columns (all NULL this month, present by schema evolution) are left out.
    source = bronze.select(
        *(F.col(name).alias(_source(name)) for name in layout.columns),
        *BRONZE_LINEAGE.fieldNames(),
    )
    text = {name: strip(F.col(_source(name))) for name in layout.columns}
    cnpj = F.regexp_replace(text[layout.cnpj_column], r"[./-]", "")
    date = F.when(
        text["DT_COMPTC"].rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
        F.try_to_date(text["DT_COMPTC"], "yyyy-MM-dd"),
    )
    values = {
        name: F.when(text[name] != "", text[name].try_cast(DecimalType(precision, scale)))
        for name, precision, scale in DECIMAL_FIELDS
    }
    values["NR_COTST"] = F.when(text["NR_COTST"] != "", text["NR_COTST"].try_cast(IntegerType()))
    value_ok = {
        name: (text[name] == "") | decimal_text_ok(text[name], precision, scale)
        for name, precision, scale in DECIMAL_FIELDS
    }
    value_ok["NR_COTST"] = (text["NR_COTST"] == "") | (
        text["NR_COTST"].rlike(r"^[+-]?[0-9]+$") & values["NR_COTST"].isNotNull()
    )
    first_bad_value = F.lit(None).cast("string")
    for name in reversed(SILVER_NAMES):
        first_bad_value = F.when(~value_ok[name], F.lit(name)).otherwise(first_bad_value)
    bad_value_text = F.lit(None).cast("string")
    for name in SILVER_NAMES:
        bad_value_text = F.when(first_bad_value == name, text[name]).otherwise(bad_value_text)

    pl = values["VL_PATRIM_LIQ"]
    rules: list[tuple[Column, str, Column]] = [
        (
            F.col("qtd_campos") != ncols,
            "numero_de_campos",
            F.format_string(f"esperados {ncols} campos, encontrados %d", F.col("qtd_campos")),
        ),
        (text[layout.cnpj_column] == "", "cnpj_ausente", F.lit(f"{layout.cnpj_column} vazio")),
        (
            ~cnpj.rlike("^[0-9]{14}$"),
            "cnpj_invalido",
            F.format_string(
                f"{layout.cnpj_column}='%s' não tem 14 dígitos", text[layout.cnpj_column]
            ),
        ),
        (text["DT_COMPTC"] == "", "data_ausente", F.lit("DT_COMPTC vazio")),
        (
            date.isNull(),
            "data_invalida",
            F.format_string("DT_COMPTC='%s' não é uma data AAAA-MM-DD", text["DT_COMPTC"]),
        ),
        (
            (F.year(date) != month.ano) | (F.month(date) != month.mes),
            "fora_do_mes",
            F.format_string(f"DT_COMPTC=%s fora de {month.key}", text["DT_COMPTC"]),
        ),
        (
            first_bad_value.isNotNull(),
            "valor_invalido",
            F.format_string("%s='%s' não cabe no tipo do campo", first_bad_value, bad_value_text),
        ),
        (text["VL_PATRIM_LIQ"] == "", "patrimonio_ausente", F.lit("VL_PATRIM_LIQ vazio")),
        (
            pl <= 0,
            "patrimonio_nao_positivo",
            F.format_string("VL_PATRIM_LIQ=%s", text["VL_PATRIM_LIQ"]),
        ),
    ]
    motivo = F.lit(None).cast("string")
    detalhe = F.lit(None).cast("string")
    for condition, reason, detail in reversed(rules):
        motivo = F.when(condition, F.lit(reason)).otherwise(motivo)
        detalhe = F.when(condition, detail).otherwise(detalhe)

    def optional_text(column: str | None) -> Column:
        if column is None:
            return F.lit(None).cast("string")
        return F.when(text[column] != "", text[column])

    parsed = source.select(
        "*",
        optional_text(layout.type_column).alias("tp_fundo"),
        cnpj.alias("cnpj_fundo"),
        optional_text(layout.subclass_column).alias("id_subclasse"),
        date.alias("dt_comptc"),
        *(values[name].alias(silver) for name, silver in SILVER_NAMES.items()),
        motivo.alias("motivo"),
        detalhe.alias("detalhe"),
    )
    # Last row of the file wins: earlier rows with the same key are duplicates.
    last_line = F.max(F.when(F.col("motivo").isNull(), F.col("numero_linha"))).over(
        Window.partitionBy(*SILVER_KEY)
    )
    duplicate = F.col("motivo").isNull() & (F.col("numero_linha") < F.col("_last_line"))
    return (
        parsed.withColumn("_last_line", last_line)
        .withColumn("motivo", F.when(duplicate, F.lit("duplicado")).otherwise(F.col("motivo")))
        .withColumn(
            "detalhe",
            F.when(
                duplicate,
                F.format_string("mesma chave que a linha %d, que prevalece", F.col("_last_line")),
            ).otherwise(F.col("detalhe")),
        )
        .drop("_last_line")
    )


def silver_rows(judged: DataFrame, pipeline_version: str, processed_at: dt.datetime) -> DataFrame:
    """The rows that passed every rule, in silver's schema."""
    extra = {
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    return judged.where(F.col("motivo").isNull()).select(
        *(
            extra.get(field.name, F.col(field.name)).cast(field.dataType).alias(field.name)
            for field in SILVER.fields
        )
    )


def rejected_rows(
    judged: DataFrame, layout: Layout, pipeline_version: str, processed_at: dt.datetime
) -> DataFrame:
    """The rows that broke a rule, as read, with the reason."""
    fields = F.array(*(F.col(_source(name)) for name in layout.columns))
    shown = F.slice(fields, F.lit(1), F.least(F.col("qtd_campos"), F.lit(len(layout.columns))))
    extra = {
        "registro": F.concat_ws(";", shown, F.col("campos_extras")),
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    return judged.where(F.col("motivo").isNotNull()).select(
        *(
            extra.get(field.name, F.col(field.name)).cast(field.dataType).alias(field.name)
            for field in SILVER_REJECTS.fields
        )
    )

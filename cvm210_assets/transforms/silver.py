"""Silver: bronze rows judged against CVM's data dictionary, in one canonical schema.

Every bronze row ends up in exactly one of the two outputs: silver, or the rejects with the
first rule it broke (docs/data-model.md, "Rejected rows"). Nothing is rounded, coerced or guessed.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DecimalType, IntegerType

from cvm210_assets.lake.schemas import (
    CSV_LINEAGE,
    PARTITION_COLUMNS,
    SILVER,
    SILVER_KEY,
    SILVER_REJECTS,
    in_schema,
)
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
SILVER_NAMES_ORDER = (
    "tp_fundo",
    "cnpj_fundo",
    "id_subclasse",
    "dt_comptc",
    *SILVER_NAMES.values(),
)
# A key repeats within a month only.
_MONTH_KEY = (*SILVER_KEY, *PARTITION_COLUMNS)
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
    return F.btrim(column, F.lit(" \t\r\n\f\x0b"))


def decimal_text_ok(text: Column, precision: int, scale: int) -> Column:
    """An exact decimal that fits DECIMAL(precision, scale) without rounding."""
    return text.rlike(rf"^[+-]?0*[0-9]{{1,{precision - scale}}}(\.[0-9]{{1,{scale}}})?$")


def _text(column: str) -> str:
    return f"txt_{column}"


def judge(bronze: DataFrame, layout: Layout) -> DataFrame:
    """Bronze rows with their parsed fields and `motivo`/`detalhe` (NULL for good rows)."""
    single = judge_rows(bronze, layout)
    return mark_duplicates(single, repeated_keys(single))


def judge_rows(bronze: DataFrame, layout: Layout) -> DataFrame:
    """Each row judged on its own: parsed fields and the first rule it breaks, if any. Rows of
    several months of one layout are judged together, each against its own month (ano, mes).

    Built in stages, each naming its results, so that every expression is computed once per
    row: one nested expression would repeat its parts and overflow Spark's code generation.
    """
    ncols = len(layout.columns)
    # Source columns are renamed (Spark's names are case-insensitive: CNPJ_FUNDO would clash
    # with cnpj_fundo); other layouts' columns, present by schema evolution, are left out.
    trimmed = bronze.select(
        *(strip(F.col(name)).alias(_text(name)) for name in layout.columns),
        "numero_linha",
        "qtd_campos",
        *CSV_LINEAGE,
    )
    text = {name: F.col(_text(name)) for name in layout.columns}

    def optional_text(column: str | None) -> Column:
        if column is None:
            return F.lit(None).cast("string")
        return F.when(text[column] != "", text[column])

    values = {
        silver: F.when(text[name] != "", text[name].try_cast(DecimalType(precision, scale)))
        for name, precision, scale in DECIMAL_FIELDS
        for silver in [SILVER_NAMES[name]]
    }
    values["nr_cotst"] = F.when(text["NR_COTST"] != "", text["NR_COTST"].try_cast(IntegerType()))
    parsed = trimmed.select(
        "*",
        optional_text(layout.type_column).alias("tp_fundo"),
        F.regexp_replace(text[layout.cnpj_column], r"[./-]", "").alias("cnpj_fundo"),
        optional_text(layout.subclass_column).alias("id_subclasse"),
        F.when(
            text["DT_COMPTC"].rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
            text["DT_COMPTC"].try_cast(DateType()),  # NULL for 2024-02-30
        ).alias("dt_comptc"),
        *(value.alias(name) for name, value in values.items()),
    )

    value_ok = {
        name: (text[name] == "") | decimal_text_ok(text[name], precision, scale)
        for name, precision, scale in DECIMAL_FIELDS
    }
    value_ok["NR_COTST"] = (text["NR_COTST"] == "") | (
        text["NR_COTST"].rlike(r"^[+-]?[0-9]+$") & F.col("nr_cotst").isNotNull()
    )
    with_bad_value = parsed.select(
        "*",
        F.coalesce(*(F.when(~ok, F.lit(name)) for name, ok in value_ok.items())).alias("_bad"),
        F.coalesce(*(F.when(~ok, text[name]) for name, ok in value_ok.items())).alias("_bad_text"),
    )

    date = F.col("dt_comptc")
    rules: list[tuple[Column, str, Column]] = [
        (
            F.col("qtd_campos") != ncols,
            "numero_de_campos",
            F.format_string(f"esperados {ncols} campos, encontrados %d", F.col("qtd_campos")),
        ),
        (text[layout.cnpj_column] == "", "cnpj_ausente", F.lit(f"{layout.cnpj_column} vazio")),
        (
            ~F.col("cnpj_fundo").rlike("^[0-9]{14}$"),
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
            (F.year(date) != F.col("ano")) | (F.month(date) != F.col("mes")),
            "fora_do_mes",
            F.format_string("DT_COMPTC=%s fora de %04d-%02d", text["DT_COMPTC"], "ano", "mes"),
        ),
        (
            F.col("_bad").isNotNull(),
            "valor_invalido",
            F.format_string("%s='%s' não cabe no tipo do campo", "_bad", "_bad_text"),
        ),
        (text["VL_PATRIM_LIQ"] == "", "patrimonio_ausente", F.lit("VL_PATRIM_LIQ vazio")),
        (
            F.col("vl_patrim_liq") <= 0,
            "patrimonio_nao_positivo",
            F.format_string("VL_PATRIM_LIQ=%s", text["VL_PATRIM_LIQ"]),
        ),
    ]
    # The first rule broken is the reason: a rule's condition is NULL-safe or NULL, never an
    # error, so evaluating all of them and keeping the first hit is the same as stopping there.
    rule_index = F.coalesce(
        *(F.when(condition, F.lit(i)) for i, (condition, _, _) in enumerate(rules))
    )
    judged = with_bad_value.withColumn("_rule", rule_index).select(
        "numero_linha",
        *CSV_LINEAGE,
        *SILVER_NAMES_ORDER,
        F.coalesce(
            *(F.when(F.col("_rule") == i, F.lit(r)) for i, (_, r, _) in enumerate(rules))
        ).alias("motivo"),
        F.coalesce(*(F.when(F.col("_rule") == i, d) for i, (_, _, d) in enumerate(rules))).alias(
            "detalhe"
        ),
    )
    return judged


def repeated_keys(judged: DataFrame) -> DataFrame:
    """The keys of more than one valid row, each with its last line, which wins. Few rows:
    persist them, and silver and its rejects each join them to the judged rows."""
    return (
        judged.where(F.col("motivo").isNull())
        .groupBy(*_MONTH_KEY)
        .agg(F.max("numero_linha").alias("_last_line"), F.count(F.lit(1)).alias("_n"))
        .where(F.col("_n") > 1)
        .select(*(F.col(c).alias(f"_r_{c}") for c in _MONTH_KEY), "_last_line")
    )


def mark_duplicates(judged: DataFrame, repeated: DataFrame) -> DataFrame:
    """Last row of the file wins: earlier valid rows with a `repeated` key become `duplicado`.

    The repeated keys are broadcast and joined back: no shuffle of the rows, no window over
    every row.
    """
    on = [F.col(c).eqNullSafe(F.col(f"_r_{c}")) for c in _MONTH_KEY]
    with_last = judged.join(F.broadcast(repeated), on, "left").drop(
        *(f"_r_{c}" for c in _MONTH_KEY)
    )
    duplicate = F.col("motivo").isNull() & (F.col("numero_linha") < F.col("_last_line"))
    return (
        with_last.withColumn(
            "detalhe",
            F.when(
                duplicate,
                F.format_string("mesma chave que a linha %d, que prevalece", F.col("_last_line")),
            ).otherwise(F.col("detalhe")),
        )
        .withColumn("motivo", F.when(duplicate, F.lit("duplicado")).otherwise(F.col("motivo")))
        .drop("_last_line")
    )


def _processing(pipeline_version: str, processed_at: dt.datetime) -> dict[str, Column]:
    """What silver adds to bronze's lineage: the code's version and when it ran."""
    return {
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }


def silver_rows(judged: DataFrame, pipeline_version: str, processed_at: dt.datetime) -> DataFrame:
    """The rows that passed every rule, in silver's schema, with their CSV's lineage."""
    extra = _processing(pipeline_version, processed_at)
    return in_schema(judged.where(F.col("motivo").isNull()), SILVER, extra)


def rejected_rows(
    judged: DataFrame,
    bronze: DataFrame,
    layout: Layout,
    pipeline_version: str,
    processed_at: dt.datetime,
) -> DataFrame:
    """The rows that broke a rule, as read (rebuilt from bronze's fields), with the reason."""
    line = [*PARTITION_COLUMNS, "numero_linha"]
    verdicts = judged.where(F.col("motivo").isNotNull()).select(*line, "motivo", "detalhe")
    fields = F.array(*(F.col(name) for name in layout.columns))
    shown = F.slice(fields, F.lit(1), F.least(F.col("qtd_campos"), F.lit(len(layout.columns))))
    extra = _processing(pipeline_version, processed_at) | {
        "registro": F.concat_ws(";", shown, "campos_extras")
    }
    # Rejects are few: broadcast them; the line is rebuilt only for the rows that matched.
    return in_schema(bronze.join(F.broadcast(verdicts), line), SILVER_REJECTS, extra)

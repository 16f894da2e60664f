"""Outflow alerts: the month's funds that cross a rule, each with the explanation it carries.

Pure PySpark over gold (the month's money, exact), silver (the daily rows, for streaks of
net outflow days and the window's dates) and, for the peer rule, gold_pares (each month's
standing among peers). One row per fund (class or subclass) and month that crosses at least
one rule; `detalhes` lists every rule crossed with its value and threshold.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cvm210_assets.alerts.config import AlertRules
from cvm210_assets.lake.schemas import MONEY, MONEY_SUM, in_schema, month_index

KEY = ("cnpj_fundo", "id_subclasse")
RULES = (
    "net_outflow_pct",
    "net_outflow_amount",
    "consecutive_outflow_days",
    "holders_drop_pct",
    "peer_percentile",
)
# How the peer rule names its group in words.
PEER_WORDS = {"classe": "class", "gestor": "manager's funds"}

DETAIL = StructType(
    [
        StructField("regra", StringType(), True, {"comment": "Rule name (README, Outflow alerts)"}),
        StructField("valor", StringType(), True, {"comment": "The fund's value, exact"}),
        StructField("limite", StringType(), True, {"comment": "The rule's threshold"}),
        StructField("texto", StringType(), True, {"comment": "The explanation, in words"}),
    ]
)


def _field(name: str, kind: DataType, comment: str) -> StructField:
    return StructField(name, kind, True, {"comment": comment})


OUTFLOW_ALERTS = StructType(
    [
        _field("alert_id", StringType(), "Stable id: month, fund, subclass and rules crossed"),
        _field("cnpj_fundo", StringType(), "Fund or class CNPJ, 14 digits"),
        _field("id_subclasse", StringType(), "Subclass id; NULL for the class itself"),
        _field("tp_fundo", StringType(), "Fund type on the month's last report"),
        _field("nome", StringType(), "Fund name from fund_registry (NULL when unknown)"),
        _field("gestor", StringType(), "Manager from fund_registry (NULL when unknown)"),
        _field("cnpj_gestor", StringType(), "Manager's CNPJ from fund_registry"),
        _field("administrador", StringType(), "Administrator from fund_registry"),
        _field("regras", StringType(), "Rules crossed, comma-separated"),
        _field("explicacao", StringType(), "Why: one sentence per rule crossed"),
        _field("detalhes", ArrayType(DETAIL), "Each rule crossed: value, threshold, words"),
        _field("dt_inicio", DateType(), "Window start: the month's first report"),
        _field("dt_fim", DateType(), "Window end: the month's last report so far"),
        _field("patrimonio_inicial", MONEY, "Net assets on the first report, R$"),
        _field("patrimonio_final", MONEY, "Net assets on the last report, R$"),
        _field("total_resgate", MONEY_SUM, "Gross outflow of the window, R$"),
        _field("fluxo_liquido", MONEY_SUM, "Net flow of the window, R$ (negative: outflow)"),
        _field("saida_liquida_pct_pl", DoubleType(), "−fluxo_liquido / patrimonio_inicial"),
        _field("dias_consecutivos_saida", IntegerType(), "Longest run of net outflow reports"),
        _field("cotistas_inicial", IntegerType(), "Holders on the first report"),
        _field("cotistas_final", IntegerType(), "Holders on the last report"),
        _field("versao_pipeline", StringType(), "Pipeline version that computed the row"),
        _field("dh_processamento", TimestampType(), "When the row was computed (UTC)"),
        _field("ano", IntegerType(), "Year of the partition"),
        _field("mes", IntegerType(), "Month of the partition, 1-12"),
    ]
)


def outflow_streaks(silver: DataFrame) -> DataFrame:
    """Per fund: the window's first and last report, and its longest run of consecutive reports
    with net outflow (captc_dia − resg_dia < 0). Days without a report (holidays) do not break
    a run: consecutive means one report after the other."""
    zero = F.lit(0).cast(MONEY)
    flow = F.coalesce("captc_dia", zero) - F.coalesce("resg_dia", zero)
    by_fund = Window.partitionBy(*KEY).orderBy("dt_comptc")
    by_sign = Window.partitionBy(*KEY, "_out").orderBy("dt_comptc")
    days = silver.select(*KEY, "dt_comptc", (flow < 0).alias("_out"))
    # Gaps and islands: within a run, both row numbers grow together, so their difference is
    # constant and names the run.
    runs = (
        days.withColumn("_run", F.row_number().over(by_fund) - F.row_number().over(by_sign))
        .where("_out")
        .groupBy(*KEY, "_run")
        .agg(
            F.count("*").alias("n"), F.min("dt_comptc").alias("de"), F.max("dt_comptc").alias("ate")
        )
        .groupBy(*KEY)
        .agg(F.max(F.struct("n", "ate", "de")).alias("_longest"))
    )
    window = silver.groupBy(*KEY).agg(
        F.min("dt_comptc").alias("dt_inicio"), F.max("dt_comptc").alias("dt_fim")
    )
    return _join(window, runs, "left").select(
        *(F.col(f"a.{c}").alias(c) for c in KEY),
        "dt_inicio",
        "dt_fim",
        F.coalesce(F.col("_longest.n"), F.lit(0)).cast("int").alias("dias_consecutivos_saida"),
        F.col("_longest.de").alias("sequencia_de"),
        F.col("_longest.ate").alias("sequencia_ate"),
    )


def _index(frame: DataFrame) -> Column:
    return month_index(frame["ano"], frame["mes"])


def peer_months(gold: DataFrame, pares: DataFrame, rules: AlertRules) -> DataFrame:
    """Per gold row's fund: `meses_pares`, the months among the `peer_percentile_months` ending
    in the row's own in which the fund stood in the worst `peer_percentile` % of its
    `peer_group` with a net outflow, oldest first (ano, mes, posicao, pares, percentil, grupo).
    A month without a standing (not in gold_pares, too few peers, no ratio) is not one of them.
    Exact: (posicao − 1) × 100 ≤ X × (pares − 1), the percentile's own fraction."""
    group, months, limit = rules.peer_group, rules.peer_percentile_months, rules.peer_percentile
    posicao, pares_n = F.col(f"posicao_{group}"), F.col(f"pares_{group}")
    worst = pares.where(
        ((posicao - 1) * 100 <= F.lit(limit) * (pares_n - 1)) & (F.col("fluxo_liquido_pct_pl") < 0)
    ).select(
        *KEY,
        _index(pares).alias("idx"),
        F.struct(
            "ano",
            "mes",
            posicao.alias("posicao"),
            pares_n.alias("pares"),
            F.col(f"percentil_{group}").alias("percentil"),
            F.col(group).alias("grupo"),
        ).alias("m"),
    )
    target = gold.select(*KEY, _index(gold).alias("idx"))
    on = [F.col(f"a.{c}").eqNullSafe(F.col(f"b.{c}")) for c in KEY]
    on.append(F.col("b.idx").between(F.col("a.idx") - (months - 1), F.col("a.idx")))
    return (
        target.alias("a")
        .join(worst.alias("b"), on=on, how="inner")
        .groupBy(*(F.col(f"a.{c}").alias(c) for c in KEY))
        .agg(F.sort_array(F.collect_list(F.struct("b.idx", "b.m"))).alias("_sorted"))
        .select(*KEY, F.transform("_sorted", lambda s: s["m"]).alias("meses_pares"))
    )


def _join(left: DataFrame, right: DataFrame, how: str) -> DataFrame:
    """Join on the fund's key, NULL subclass equal to NULL. Aliased: both sides come from the
    same silver, and unaliased column references would compare a column with itself."""
    on = [F.col(f"a.{c}").eqNullSafe(F.col(f"b.{c}")) for c in KEY]
    return left.alias("a").join(right.alias("b"), on=on, how=how)


def _money(column: str | Column) -> Column:
    return F.format_number(F.col(column) if isinstance(column, str) else column, 2)


def _detail(crossed: Column, rule: str, value: Column, limit: str, text: Column) -> Column:
    return F.when(
        crossed,
        F.struct(
            F.lit(rule).alias("regra"),
            value.cast("string").alias("valor"),
            F.lit(limit).alias("limite"),
            text.alias("texto"),
        ),
    )


def outflow_alerts(
    gold: DataFrame,
    silver: DataFrame,
    rules: AlertRules,
    pipeline_version: str,
    processed_at: dt.datetime,
    pares: DataFrame | None = None,
) -> DataFrame:
    """The month's alerts: funds at or above the size floor, in no event, that cross at least
    one rule.
    `pares`: gold_pares rows of (at least) the peer rule's months; without them (the rule off,
    or no gold_pares yet) the peer rule crosses for no fund."""
    streaks = outflow_streaks(silver)
    month = _join(gold, streaks, "inner").select(
        "a.*", *(F.col(f"b.{c}") for c in streaks.columns if c not in KEY)
    )
    peer_rule = rules.peer_percentile is not None and pares is not None
    if peer_rule:
        streak = peer_months(gold, pares, rules)
        month = _join(month, streak, "left").select("a.*", "b.meses_pares")
    # An event (gold_kpis.evento: a transfer or succession between keys) is no investor's
    # outflow: its fund-month is not alerted (docs/events.md).
    month = month.where(
        (F.col("patrimonio_inicial") >= F.lit(rules.min_net_assets)) & F.col("evento").isNull()
    )
    outflow = -F.col("fluxo_liquido")
    window = F.concat_ws(" to ", F.col("dt_inicio").cast("string"), F.col("dt_fim").cast("string"))
    pct = outflow.cast("double") / F.col("patrimonio_inicial").cast("double")
    details = []
    if rules.net_outflow_pct is not None:
        limit = rules.net_outflow_pct
        details.append(
            _detail(
                # Exact: outflow × 100 ≥ X × net assets, no division.
                (outflow > 0) & (outflow * 100 >= F.lit(limit) * F.col("patrimonio_inicial")),
                "net_outflow_pct",
                F.format_number(pct * 100, 2),
                f"{limit} %",
                F.format_string(
                    "net outflow of R$ %s is %s %% of the net assets of R$ %s on %s"
                    " (rule: at least %s %%), %s",
                    _money(outflow),
                    F.format_number(pct * 100, 2),
                    _money("patrimonio_inicial"),
                    F.col("dt_inicio").cast("string"),
                    F.lit(str(limit)),
                    window,
                ),
            )
        )
    if rules.net_outflow_amount is not None:
        limit = rules.net_outflow_amount
        details.append(
            _detail(
                (outflow > 0) & (outflow >= F.lit(limit)),
                "net_outflow_amount",
                outflow,
                f"R$ {limit:,.2f}",
                F.format_string(
                    "net outflow of R$ %s (rule: at least R$ %s), %s",
                    _money(outflow),
                    F.lit(f"{limit:,.2f}"),
                    window,
                ),
            )
        )
    if rules.consecutive_outflow_days is not None:
        limit = rules.consecutive_outflow_days
        details.append(
            _detail(
                F.col("dias_consecutivos_saida") >= limit,
                "consecutive_outflow_days",
                F.col("dias_consecutivos_saida"),
                f"{limit} reports",
                F.format_string(
                    "net outflow on %d consecutive reports, %s to %s (rule: at least %d)",
                    F.col("dias_consecutivos_saida"),
                    F.col("sequencia_de").cast("string"),
                    F.col("sequencia_ate").cast("string"),
                    F.lit(limit),
                ),
            )
        )
    if rules.holders_drop_pct is not None:
        limit = rules.holders_drop_pct
        drop = F.col("cotistas_inicial") - F.col("cotistas_final")
        drop_pct = drop.cast("double") / F.col("cotistas_inicial").cast("double") * 100
        details.append(
            _detail(
                (F.col("cotistas_inicial") > 0)
                & (drop > 0)
                & (drop.cast(DecimalType(20, 0)) * 100 >= F.lit(limit) * F.col("cotistas_inicial")),
                "holders_drop_pct",
                F.format_number(drop_pct, 2),
                f"{limit} %",
                F.format_string(
                    "holders fell from %d to %d, %s %% (rule: at least %s %%), %s",
                    F.col("cotistas_inicial"),
                    F.col("cotistas_final"),
                    F.format_number(drop_pct, 2),
                    F.lit(str(limit)),
                    window,
                ),
            )
        )
    if peer_rule:
        limit, months = rules.peer_percentile, rules.peer_percentile_months
        word = PEER_WORDS[rules.peer_group]
        latest = F.element_at("meses_pares", -1)
        details.append(
            _detail(
                F.coalesce(F.size("meses_pares") == months, F.lit(False)),
                "peer_percentile",
                F.format_number(latest["percentil"] * 100, 2),
                f"{limit} % of its {word}, {months} month(s)",
                F.format_string(
                    "net flow in the worst %s %% of its %s (%s) for %d month(s) running: %s"
                    " (rule: the worst %s %% for %d month(s))",
                    F.lit(str(limit)),
                    F.lit(word),
                    latest["grupo"],
                    F.lit(months),
                    F.array_join(
                        F.transform(
                            "meses_pares",
                            lambda m: F.format_string(
                                "%04d-%02d place %d of %d (percentile %s %%)",
                                m["ano"],
                                m["mes"],
                                m["posicao"],
                                m["pares"],
                                F.format_number(m["percentil"] * 100, 2),
                            ),
                        ),
                        ", ",
                    ),
                    F.lit(str(limit)),
                    F.lit(months),
                ),
            )
        )
    if not details:
        crossed = F.array().cast(ArrayType(DETAIL))
    else:
        crossed = F.filter(F.array(*details), lambda d: d.isNotNull())
    flagged = month.withColumn("detalhes", crossed).where(F.size("detalhes") > 0)
    regras = F.array_join(F.transform("detalhes", lambda d: d["regra"]), ",")
    derived = {
        "regras": regras,
        "explicacao": F.array_join(F.transform("detalhes", lambda d: d["texto"]), "; "),
        "alert_id": F.substring(
            F.sha2(
                F.concat_ws(
                    "|", "ano", "mes", "cnpj_fundo", F.coalesce("id_subclasse", F.lit("")), regras
                ),
                256,
            ),
            1,
            24,
        ),
        "saida_liquida_pct_pl": pct,
        "nome": F.lit(None),
        "gestor": F.lit(None),
        "cnpj_gestor": F.lit(None),
        "administrador": F.lit(None),
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    return in_schema(flagged, OUTFLOW_ALERTS, derived)

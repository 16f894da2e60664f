"""Gold: one row of fund-flow KPIs per fund (class or subclass) and month."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from cvm210_assets.gold_rules import TOLERANCIA_MINIMA, TOLERANCIA_PCT_PL
from cvm210_assets.lake.schemas import (
    GOLD,
    GOLD_KEY,
    MONEY,
    MONEY_SUM,
    QUOTA,
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


def _quota_units(quota: Column) -> Column:
    """A quota in units of 10⁻¹² as an integral DECIMAL(27,0), exactly: two ×10⁶ steps keep
    every intermediate type within 38 digits, so Spark adjusts none (whatever
    spark.sql.decimalOperations.allowPrecisionLoss says) and nothing can overflow."""
    million = F.lit(1_000_000).cast("decimal(7,0)")
    return ((quota.cast(QUOTA) * million).cast("decimal(27,6)") * million).cast("decimal(27,0)")


def _exact_return(pl_anterior: Column, cota_anterior: Column, cota: Column) -> Column:
    """pl_anterior × (cota / cota_anterior − 1) rounded half-up to the cent, exactly: Spark's
    decimal division keeps 6 to 10 decimals of a quota ratio (not enough for a large fund's
    cents), so the quotient is taken in integers (cents × quota units), its remainder exact
    and its quotient through DOUBLE corrected once. NULL when a quota is missing or not
    positive, when pl_anterior × |Δcota| reaches R$ 10²⁴ (an absurd quota: 38 digits) or the
    return R$ 10²⁵ (DECIMAL(27,2))."""
    cents = (pl_anterior * 100).cast("decimal(17,0)")
    divisor = F.when(cota_anterior > 0, _quota_units(cota_anterior))  # never divides by 0
    dividend = F.try_multiply(cents, _quota_units(cota) - divisor)  # (38,0); NULL past 38 digits
    remainder = dividend % divisor  # exact, with the dividend's sign
    multiple = dividend - remainder  # an exact multiple of the divisor

    def quotient(value: Column) -> Column:  # nearest integer; exact below 2⁵² in size
        return F.round(value.cast("double") / divisor.cast("double")).try_cast("decimal(38,0)")

    first = quotient(multiple)
    truncated = first + quotient(multiple - F.try_multiply(first, divisor))
    away = F.when(dividend > 0, 1).otherwise(-1)
    rounded = truncated + F.when(F.abs(remainder) * 2 >= divisor, away).otherwise(0)
    reais = (rounded.try_cast("decimal(27,0)") * F.lit(Decimal("0.01"))).cast(MONEY_SUM)
    return F.when((cota_anterior > 0) & (cota > 0), reais)


# The fast path's bounds (see `_fast_return`), as DOUBLE literals.
_U16 = 2.0**-49  # 16 × 2⁻⁵³: twice the proven relative error
_SLACK = 2.0**-30  # absolute, in cents: the comparison's own rounding is below 2⁻⁵⁴
_MAX_CENTS = 2.0**50  # |return| in cents: integers and halves exact, far below 2⁵³
_MAX_PRODUCT = 1e25  # 100 × |pl_anterior| × (cota_anterior + cota): the exact path's 10³⁸


def _fast_return(pl_anterior: Column, cota_anterior: Column, cota: Column) -> tuple[Column, Column]:
    """`_exact_return`'s value where the bound below proves DOUBLE gets it: y = pl_anterior ×
    (cota − cota_anterior) / cota_anterior × 100 in cents, from the DOUBLE P, A, B of the
    three decimals, each correctly rounded (Spark's Decimal.toDouble is BigDecimal's
    doubleValue), so each of them and each of the 4 operations after adds a relative error
    ≤ u = 2⁻⁵³. With p, a, b the exact values (a, b > 0) and r = 100·p·(b − a)/a the exact
    return in cents, B − A = (b − a) + (b·δb − a·δa) and so

        |y − r| ≤ 100·|p|/a · (|b − a|·6.01u + (a + b)·1.01u) ≤ 7.02u · 100·|p|·(a + b)/a,

    as |b − a| < a + b. G = 100·|P|·(A + B)/A computed in DOUBLE is at least
    100·|p|·(a + b)/a × (1 − 8.1u), so E = 16u·G + 2⁻³⁰ bounds |y − r|. When

    - 100·|P|·(A + B) < 10²⁵: |cents × Δ quota units| < 10³⁸, the exact path's bound, is met;
    - |y| < 2⁵⁰ cents: far within DECIMAL(27,2), and floor(|y|) and |y| − floor(|y|) = f are
      exact (f is y's low bits);
    - |f − ½| > E: no half cent lies within E of |y|, so r and y round (half-up, away from
      zero) to the same cent (when |y| ≤ E both are within ½ of zero and round to 0),

    the cent is floor(|y|) + [f > ½] with y's sign, in a BIGINT (`applies`, and that cent as
    DECIMAL(27,2)); otherwise the exact path. `applies` needs a, b > 0 as well."""
    p, b = pl_anterior.cast("double"), cota.cast("double")
    a = F.when(cota_anterior > 0, cota_anterior.cast("double"))  # never divides by 0
    y = p * (b - a) / a * 100
    size = F.abs(p) * 100 * (a + b)
    margin = size / a * F.lit(_U16) + F.lit(_SLACK)
    whole = F.floor(F.abs(y))
    fraction = F.abs(y) - whole
    applies = (
        (size < F.lit(_MAX_PRODUCT))
        & (F.abs(y) < F.lit(_MAX_CENTS))
        & (F.abs(fraction - 0.5) > margin)
    )
    cent = whole + F.when(fraction > 0.5, 1).otherwise(0)
    signed = F.when(y < 0, -cent).otherwise(cent)
    return applies, (signed.cast("decimal(18,0)") * F.lit(Decimal("0.01"))).cast(MONEY_SUM)


def _return_of_the_day(pl_anterior: Column, cota_anterior: Column, cota: Column) -> Column:
    """`_exact_return`, through `_fast_return` where its bound allows (a fraction within the
    error bound of ½ takes the exact path: about 1 day in 1,400 of a R$ 1 billion fund, 1 in
    140,000 of a R$ 10 million one; so does a fund or a quota too large). One CASE WHEN: Spark
    evaluates the exact branch only for the rows that need it (its subexpressions are in no
    other branch, so none is hoisted)."""
    fast, reais = _fast_return(pl_anterior, cota_anterior, cota)
    positive = (cota_anterior > 0) & (cota > 0)
    return F.when(positive & fast, reais).otherwise(_exact_return(pl_anterior, cota_anterior, cota))


def daily_reconciliation(silver: DataFrame) -> DataFrame:
    """silver's rows with the daily step of the flow reconciliation (docs/analytics.md) against
    the key's previous report of the month: `tem_anterior`, `rendimento_dia` (the return the
    previous day's net assets earned at the quota's return) and `residuo_dia` (what neither
    that return nor the day's flows explain). Partitioned like gold's groupBy, so the two
    share one shuffle."""
    previous = Window.partitionBy(*GOLD_KEY).orderBy("dt_comptc")
    zero = F.lit(0).cast(MONEY)
    days = silver.withColumns(
        {
            "_pl_anterior": F.lag("vl_patrim_liq").over(previous),
            "_cota_anterior": F.lag("vl_quota").over(previous),
        }
    )
    rendimento = _return_of_the_day(
        F.col("_pl_anterior"), F.col("_cota_anterior"), F.col("vl_quota")
    )
    fluxo = F.coalesce(F.col("captc_dia"), zero) - F.coalesce(F.col("resg_dia"), zero)
    residuo = F.col("vl_patrim_liq") - F.col("_pl_anterior") - F.col("rendimento_dia") - fluxo
    return (
        days.withColumns(
            {"tem_anterior": F.col("_pl_anterior").isNotNull(), "rendimento_dia": rendimento}
        )
        .withColumn("residuo_dia", residuo)
        .drop("_pl_anterior", "_cota_anterior")
    )


def _month_of_days(day: str) -> Column:
    """Σ of a daily reconciliation column over the month's reports after its first; NULL when
    the month has one report or a day's value is NULL (the month cannot be reconciled)."""
    pairs = F.count_if("tem_anterior")
    unknown = F.count_if(F.col("tem_anterior") & F.col(day).isNull())
    return F.when((pairs > 0) & (unknown == 0), F.sum(day)).try_cast(MONEY_SUM)


def fund_months(silver: DataFrame) -> DataFrame:
    """silver's rows reconciled day by day and aggregated to one row per key and month: the
    sums and extremes of `kpis`, and the month's first and last report as structs `_first` and
    `_last` (dt_comptc, vl_patrim_liq, vl_quota, nr_cotst, tp_fundo), which the succession rule
    reads too (transforms/events.py). Cache it when both read it: each would aggregate again."""
    zero = F.lit(0).cast(MONEY)
    captacao = F.coalesce(F.col("captc_dia"), zero)
    resgate = F.coalesce(F.col("resg_dia"), zero)
    # The first and the last report of the month, each as one struct ordered by its date.
    day = F.struct("dt_comptc", "vl_patrim_liq", "vl_quota", "nr_cotst", "tp_fundo")
    return (
        daily_reconciliation(silver)
        .groupBy(*GOLD_KEY)
        .agg(
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
            _month_of_days("rendimento_dia").alias("rendimento"),
            _month_of_days("residuo_dia").alias("residuo_conciliacao"),
        )
    )


def kpis(
    silver: DataFrame,
    sources: DataFrame,
    pipeline_version: str,
    processed_at: dt.datetime,
    monthly: DataFrame | None = None,
) -> DataFrame:
    """Each month's KPIs per (cnpj_fundo, id_subclasse); sums are exact DECIMALs. `sources` is
    `month_sources(...)` of silver's months; `monthly` is `fund_months(silver)`, when the
    caller has cached it (its KPIs and the event rules both read it)."""
    if monthly is None:
        monthly = fund_months(silver)
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
        "residuo_pct_pl": _ratio(F.col("residuo_conciliacao"), F.col("patrimonio_medio")),
        "versao_pipeline": F.lit(pipeline_version),
        "dh_processamento": F.lit(processed_at),
    }
    ends = with_events(ends, silver)
    return in_schema(ends.join(F.broadcast(sources), ["ano", "mes"]), GOLD, derived)


def fora_da_tolerancia() -> Column:
    """Over a gold row: its flows do not reconcile within the tolerance (docs/analytics.md),
    |residuo_conciliacao| > max(1 % of patrimonio_medio, R$ 1.00); NULL without a residual."""
    limite = F.greatest(
        F.col("patrimonio_medio") * F.lit(TOLERANCIA_PCT_PL), F.lit(TOLERANCIA_MINIMA)
    )
    return F.abs(F.col("residuo_conciliacao")) > limite

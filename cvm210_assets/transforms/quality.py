"""Data-quality measures computed before a Delta commit, so bad data is never committed.

Each function runs one aggregation and returns plain numbers; the assets turn them into
asset-check results. A check "fails" when its count of offending rows is not zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import GOLD_KEY, SILVER_KEY
from cvm210_assets.partitions import Month

_CNPJ_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_WEIGHTS_2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)


def cnpj_check_digits_ok(cnpj: Column) -> Column:
    """True when a 14-digit CNPJ's two check digits are right (the modulo-11 rule)."""
    digit = [F.substring(cnpj, i + 1, 1).cast("int") for i in range(14)]

    def check(weights: tuple[int, ...]) -> Column:
        total = sum((d * w for d, w in zip(digit, weights, strict=False)), F.lit(0))
        rest = total % 11
        return F.when(rest < 2, 0).otherwise(11 - rest)

    return (check(_CNPJ_WEIGHTS_1) == digit[12]) & (check(_CNPJ_WEIGHTS_2) == digit[13])


@dataclass(frozen=True)
class SilverQuality:
    rows: int
    missing_required: int
    non_positive_net_assets: int
    duplicate_keys: int
    outside_month: int
    bad_cnpj_check_digits: int
    bad_cnpj_examples: list[str]


def silver_quality(silver: DataFrame, month: Month) -> SilverQuality:
    required = ("cnpj_fundo", "dt_comptc", "vl_patrim_liq")
    key = F.struct(*(F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in SILVER_KEY))
    bad_digits = ~cnpj_check_digits_ok(F.col("cnpj_fundo"))
    row = silver.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.greatest(*(F.col(c).isNull() for c in required)), 1).otherwise(0)),
        F.sum(F.when(F.col("vl_patrim_liq") <= 0, 1).otherwise(0)),
        F.count_distinct(key),
        F.sum(
            F.when(
                (F.year("dt_comptc") != month.ano) | (F.month("dt_comptc") != month.mes), 1
            ).otherwise(0)
        ),
        F.count_distinct(F.when(bad_digits, F.col("cnpj_fundo"))),
        F.slice(F.sort_array(F.collect_set(F.when(bad_digits, F.col("cnpj_fundo")))), 1, 5),
    ).first()
    rows = row[0]
    return SilverQuality(
        rows=rows,
        missing_required=row[1] or 0,
        non_positive_net_assets=row[2] or 0,
        duplicate_keys=rows - row[3],
        outside_month=row[4] or 0,
        bad_cnpj_check_digits=row[5],
        bad_cnpj_examples=list(row[6]),
    )


@dataclass(frozen=True)
class GoldQuality:
    rows: int
    duplicate_keys: int
    gold_totals: tuple
    silver_totals: tuple


def gold_quality(gold: DataFrame, silver: DataFrame) -> GoldQuality:
    key = F.struct(*(F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in GOLD_KEY))
    g = gold.agg(
        F.count(F.lit(1)),
        F.count_distinct(key),
        F.sum("total_captacao"),
        F.sum("total_resgate"),
        F.sum("fluxo_liquido"),
        F.sum("dias_com_informe"),
    ).first()
    s = silver.agg(
        F.sum("captc_dia"),
        F.sum("resg_dia"),
        F.sum(F.coalesce("captc_dia", F.lit(0)) - F.coalesce("resg_dia", F.lit(0))),
        F.count(F.lit(1)),
    ).first()
    zero_if_none = lambda values: tuple(0 if v is None else v for v in values)  # noqa: E731
    return GoldQuality(
        rows=g[0],
        duplicate_keys=g[0] - g[1],
        gold_totals=zero_if_none(g[2:]),
        silver_totals=zero_if_none(s),
    )

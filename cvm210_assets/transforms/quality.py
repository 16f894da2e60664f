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
    """Measures on the rows about to be committed; `silver` should be cached by the caller."""
    required = ("cnpj_fundo", "dt_comptc", "vl_patrim_liq")
    outside = (F.year("dt_comptc") != month.ano) | (F.month("dt_comptc") != month.mes)
    row = silver.agg(
        F.count(F.lit(1)),
        F.count_if(F.greatest(*(F.col(c).isNull() for c in required))),
        F.count_if(F.col("vl_patrim_liq") <= 0),
        F.count_if(outside),
    ).first()
    distinct_keys = silver.select(*SILVER_KEY).distinct().count()
    # Check digits per distinct CNPJ (tens of thousands), not per row (over a million).
    bad = [
        r[0]
        for r in silver.select("cnpj_fundo")
        .distinct()
        .where(~cnpj_check_digits_ok(F.col("cnpj_fundo")))
        .collect()
    ]
    return SilverQuality(
        rows=row[0],
        missing_required=row[1],
        non_positive_net_assets=row[2],
        duplicate_keys=row[0] - distinct_keys,
        outside_month=row[3],
        bad_cnpj_check_digits=len(bad),
        bad_cnpj_examples=sorted(bad)[:5],
    )


@dataclass(frozen=True)
class GoldQuality:
    rows: int
    duplicate_keys: int
    gold_totals: tuple
    silver_totals: tuple


def gold_quality(gold: DataFrame, silver: DataFrame) -> GoldQuality:
    g = gold.agg(
        F.count(F.lit(1)),
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
    return GoldQuality(
        rows=g[0],
        duplicate_keys=g[0] - gold.select(*GOLD_KEY).distinct().count(),
        gold_totals=_zero_if_none(g[1:]),
        silver_totals=_zero_if_none(s),
    )


def _zero_if_none(values: tuple) -> tuple:
    """SUM of no rows is NULL; for comparing totals it is zero."""
    return tuple(0 if v is None else v for v in values)

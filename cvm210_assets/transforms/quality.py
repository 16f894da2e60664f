"""Data-quality measures of the rows about to be committed, so bad data is never committed.

The measures are Spark aggregations over the very frames the assets then write (cached, so
they are computed once): what is checked is exactly what would be written. The assets turn
the numbers into asset-check results; a check fails when its count of offending rows is not 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import GOLD_KEY, SILVER_KEY
from cvm210_assets.partitions import Month

_CNPJ_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_WEIGHTS_2 = (6, *_CNPJ_WEIGHTS_1)


def cnpj_check_digits_ok(cnpj: str) -> bool:
    """True when a 14-digit CNPJ's two check digits are right (the modulo-11 rule)."""
    return not bad_check_digits([cnpj])


def bad_check_digits(cnpjs: list[str]) -> list[str]:
    """The CNPJs whose check digits are wrong (or that are not 14 digits), in one vectorized
    pass over a month's distinct CNPJs (tens of thousands): as a Spark expression, the rule's
    28 substrings compiled slowly enough to cost seconds even on those."""
    shaped = [c for c in cnpjs if len(c) == 14 and c.isascii() and c.isdigit()]
    wrong = [c for c in cnpjs if not (len(c) == 14 and c.isascii() and c.isdigit())]
    if not shaped:
        return wrong
    digits = np.frombuffer("".join(shaped).encode(), dtype=np.uint8).reshape(-1, 14) - 48
    digits = digits.astype(np.int64)

    def check(weights: tuple[int, ...]) -> np.ndarray:
        rest = digits[:, : len(weights)] @ np.array(weights) % 11
        return np.where(rest < 2, 0, 11 - rest)

    ok = (check(_CNPJ_WEIGHTS_1) == digits[:, 12]) & (check(_CNPJ_WEIGHTS_2) == digits[:, 13])
    return wrong + [c for c, good in zip(shaped, ok, strict=True) if not good]


@dataclass(frozen=True)
class SilverQuality:
    rows: int
    missing_required: int
    non_positive_net_assets: int
    duplicate_keys: int
    outside_month: int
    bad_cnpj_check_digits: int
    bad_cnpj_examples: list[str]
    latest_dt_comptc: str | None  # the freshness check reads it: the month's newest report


def silver_quality(silver: DataFrame, month: Month) -> SilverQuality:
    date = F.col("dt_comptc")
    totals = silver.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(
            F.col("cnpj_fundo").isNull() | date.isNull() | F.col("vl_patrim_liq").isNull()
        ).alias("missing"),
        F.count_if(F.col("vl_patrim_liq") <= 0).alias("non_positive"),
        F.count_if((F.year(date) != month.ano) | (F.month(date) != month.mes)).alias("outside"),
        F.max(date).alias("latest"),
    ).first()
    distinct_keys = silver.select(*SILVER_KEY).distinct().count()
    # Check digits per distinct CNPJ (tens of thousands), on the driver, not per row.
    cnpjs = [r[0] for r in silver.select("cnpj_fundo").distinct().collect() if r[0] is not None]
    bad = sorted(bad_check_digits(cnpjs))
    return SilverQuality(
        rows=totals["rows"],
        missing_required=totals["missing"],
        non_positive_net_assets=totals["non_positive"],
        duplicate_keys=totals["rows"] - distinct_keys,
        outside_month=totals["outside"],
        bad_cnpj_check_digits=len(bad),
        bad_cnpj_examples=bad[:5],
        latest_dt_comptc=totals["latest"].isoformat() if totals["latest"] else None,
    )


@dataclass(frozen=True)
class GoldQuality:
    rows: int
    duplicate_keys: int
    gold_totals: tuple
    silver_totals: tuple


def silver_totals(silver: DataFrame) -> tuple[Decimal, Decimal, Decimal, int]:
    """Σ captc_dia, Σ resg_dia, Σ net flow and the row count of a silver month."""
    zero = F.lit(0).cast("decimal(17,2)")
    row = silver.agg(
        F.sum("captc_dia"),
        F.sum("resg_dia"),
        F.sum(F.coalesce("captc_dia", zero) - F.coalesce("resg_dia", zero)),
        F.count(F.lit(1)),
    ).first()
    return _zero_if_none(tuple(row))


def gold_quality(gold: DataFrame, silver: tuple) -> GoldQuality:
    row = gold.agg(
        F.count(F.lit(1)),
        *(F.sum(c) for c in ("total_captacao", "total_resgate", "fluxo_liquido")),
        F.sum("dias_com_informe").cast("long"),
    ).first()
    rows = row[0]
    return GoldQuality(
        rows=rows,
        duplicate_keys=rows - gold.select(*GOLD_KEY).distinct().count(),
        gold_totals=_zero_if_none(tuple(row[1:])),
        silver_totals=_zero_if_none(silver),
    )


def _zero_if_none(values: tuple) -> tuple:
    """SUM of no rows is NULL; for comparing totals it is zero."""
    return tuple(0 if v is None else v for v in values)

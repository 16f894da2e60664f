"""Data-quality measures of the rows about to be committed, so bad data is never committed.

The measures read the staged rows themselves (Arrow, on the driver), not a recomputation of
them: what is checked is exactly what would be written. The assets turn the numbers into
asset-check results; a check fails when its count of offending rows is not zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    pass: a month has tens of thousands of distinct CNPJs."""
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


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0


def _distinct_rows(table: pa.Table, columns: tuple[str, ...]) -> int:
    return table.group_by(list(columns)).aggregate([]).num_rows


@dataclass(frozen=True)
class SilverQuality:
    rows: int
    missing_required: int
    non_positive_net_assets: int
    duplicate_keys: int
    outside_month: int
    bad_cnpj_check_digits: int
    bad_cnpj_examples: list[str]


def silver_quality(silver: pa.Table, month: Month) -> SilverQuality:
    required = ("cnpj_fundo", "dt_comptc", "vl_patrim_liq")
    missing = pc.or_(
        pc.or_(pc.is_null(silver["cnpj_fundo"]), pc.is_null(silver["dt_comptc"])),
        pc.is_null(silver[required[2]]),
    )
    dates = silver["dt_comptc"]
    outside = pc.or_(
        pc.not_equal(pc.year(dates), month.ano), pc.not_equal(pc.month(dates), month.mes)
    )
    # Check digits per distinct CNPJ (tens of thousands), not per row (over a million).
    bad = sorted(bad_check_digits(pc.unique(silver["cnpj_fundo"].drop_null()).to_pylist()))
    return SilverQuality(
        rows=silver.num_rows,
        missing_required=_count(missing),
        non_positive_net_assets=_count(pc.less_equal(silver["vl_patrim_liq"], 0)),
        duplicate_keys=silver.num_rows - _distinct_rows(silver, SILVER_KEY),
        outside_month=_count(outside),
        bad_cnpj_check_digits=len(bad),
        bad_cnpj_examples=bad[:5],
    )


@dataclass(frozen=True)
class GoldQuality:
    rows: int
    duplicate_keys: int
    gold_totals: tuple
    silver_totals: tuple


def silver_totals(silver: DataFrame) -> tuple[Decimal, Decimal, Decimal, int]:
    """Σ captc_dia, Σ resg_dia, Σ net flow and the row count of a silver month (Spark)."""
    zero = F.lit(0).cast("decimal(17,2)")
    row = silver.agg(
        F.sum("captc_dia"),
        F.sum("resg_dia"),
        F.sum(F.coalesce("captc_dia", zero) - F.coalesce("resg_dia", zero)),
        F.count(F.lit(1)),
    ).first()
    return _zero_if_none(tuple(row))


def gold_quality(gold: pa.Table, silver: tuple) -> GoldQuality:
    sums = tuple(
        pc.sum(gold[c]).as_py()
        for c in ("total_captacao", "total_resgate", "fluxo_liquido", "dias_com_informe")
    )
    return GoldQuality(
        rows=gold.num_rows,
        duplicate_keys=gold.num_rows - _distinct_rows(gold, GOLD_KEY),
        gold_totals=_zero_if_none(sums),
        silver_totals=_zero_if_none(silver),
    )


def _zero_if_none(values: tuple) -> tuple:
    """SUM of no rows is NULL; for comparing totals it is zero."""
    return tuple(0 if v is None else v for v in values)

"""What a restatement changed: silver's month before and after, compared key by key.

CVM rewrites months it already published. Users need to see which funds and days changed and
by how much money, not only that a new file arrived; this is the row-level record of it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import (
    MONEY_SUM,
    SILVER_CHANGES,
    SILVER_KEY,
    SILVER_VALUES,
    in_schema,
)
from cvm210_assets.partitions import Month

INSERTED, UPDATED, DELETED = "inserida", "alterada", "removida"
TRACKED = ("vl_patrim_liq", "captc_dia", "resg_dia", "vl_quota", "nr_cotst")


@dataclass(frozen=True)
class Restatement:
    """Which file version replaced which, and when CVM published it."""

    previous_sha256: str
    new_sha256: str
    published_at: dt.datetime | None
    processed_at: dt.datetime


def _net_flow(prefix: str) -> Column:
    captc = F.coalesce(F.col(f"{prefix}captc_dia"), F.lit(0))
    resg = F.coalesce(F.col(f"{prefix}resg_dia"), F.lit(0))
    return captc - resg


def restatement_changes(
    before: DataFrame, after: DataFrame, month: Month, restatement: Restatement
) -> DataFrame:
    """One row per key inserted, removed or with a changed value, in SILVER_CHANGES' schema."""
    columns = (*SILVER_KEY, *SILVER_VALUES)
    old = before.select(*[F.col(c).alias(f"o_{c}") for c in columns])
    new = after.select(*[F.col(c).alias(f"n_{c}") for c in columns])
    same_key = reduce(
        lambda a, b: a & b, [F.col(f"o_{c}").eqNullSafe(F.col(f"n_{c}")) for c in SILVER_KEY]
    )
    joined = old.join(new, same_key, "full_outer")
    differs = {c: ~F.col(f"o_{c}").eqNullSafe(F.col(f"n_{c}")) for c in SILVER_VALUES}
    kind = (
        F.when(F.col("n_cnpj_fundo").isNull(), F.lit(DELETED))
        .when(F.col("o_cnpj_fundo").isNull(), F.lit(INSERTED))
        .when(reduce(lambda a, b: a | b, differs.values()), F.lit(UPDATED))
    )
    changed_columns = F.concat_ws(",", *[F.when(flag, F.lit(c)) for c, flag in differs.items()])
    changes = joined.withColumn("mudanca", kind).where(F.col("mudanca").isNotNull())
    values = {
        **{c: F.coalesce(F.col(f"n_{c}"), F.col(f"o_{c}")) for c in SILVER_KEY},
        "mudanca": F.col("mudanca"),
        "colunas_alteradas": F.when(F.col("mudanca") == UPDATED, changed_columns),
        **{
            f"{c}_{side}": F.col(f"{p}_{c}")
            for c in TRACKED
            for side, p in (("anterior", "o"), ("novo", "n"))
        },
        "variacao_fluxo_liquido": (_net_flow("n_") - _net_flow("o_")).cast(MONEY_SUM),
        "arquivo_sha256_anterior": F.lit(restatement.previous_sha256),
        "arquivo_sha256_novo": F.lit(restatement.new_sha256),
        "dh_publicacao_cvm": F.lit(restatement.published_at).cast("timestamp"),
        "dh_processamento": F.lit(restatement.processed_at).cast("timestamp"),
        "ano": F.lit(month.ano),
        "mes": F.lit(month.mes),
    }
    return in_schema(changes, SILVER_CHANGES, values)

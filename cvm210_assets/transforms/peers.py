"""Peer-relative flows: where each fund-month's net flow stands among its class and its manager's
funds (docs/peers.md).

Within each month, the funds of one CVM class (resp. one manager, as fund_registry names them,
attributed like the breakdowns: the subclass's entry, else its class's) that have a
`fluxo_liquido_pct_pl` are ordered from the worst net flow to the best:

- `pares_*`: how many they are, the fund itself included;
- `posicao_*`: the fund's place, 1 = the worst; tied funds share the first of their places;
- `percentil_*` = (posicao − 1) / (pares − 1), Spark's percent_rank: the share of the other
  funds whose net flow was strictly worse. 0 = the worst, 1 = the best.

Place and percentile are NULL for a group of fewer than PARES_MINIMO funds (a lone fund would be
its class's worst), and the whole standing is NULL for a fund without a ratio or without a class
(manager): "não informado" is no peer group. Funds of funds are ranked with the rest: the ratio
is the fund's own flow, which its investors moved, double counting or not.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cvm210_assets.gold_rules import PARES_MINIMO, PEER_GROUPS
from cvm210_assets.lake.schemas import GOLD_PARES, in_schema
from cvm210_assets.transforms.breakdowns import attribute

RATIO = "fluxo_liquido_pct_pl"


def _standing(group: str) -> dict[str, Column]:
    """pares_, posicao_ and percentil_ of `group` for each row."""
    # Rows without a ratio or a group go to a NULL partition of their own and are masked.
    key = F.when(F.col(RATIO).isNotNull(), F.col(group))
    within = Window.partitionBy("ano", "mes", key)
    ordered = within.orderBy(RATIO)
    pares = F.count(F.lit(1)).over(within)
    ranked = key.isNotNull() & (pares >= PARES_MINIMO)
    return {
        f"pares_{group}": F.when(key.isNotNull(), pares),
        f"posicao_{group}": F.when(ranked, F.rank().over(ordered)),
        f"percentil_{group}": F.when(ranked, F.percent_rank().over(ordered)),
    }


def peers(
    gold: DataFrame, registry: DataFrame, pipeline_version: str, processed_at: dt.datetime
) -> DataFrame:
    """One row (schema GOLD_PARES) per gold row: its standing in its class and among its
    manager's funds, within its month. `registry` has the columns `attribute` needs."""
    attributed = attribute(gold, registry)
    values: dict[str, Column] = {}
    for group in PEER_GROUPS:
        values.update(_standing(group))
    values["versao_pipeline"] = F.lit(pipeline_version)
    values["dh_processamento"] = F.lit(processed_at)
    return in_schema(attributed, GOLD_PARES, values)

"""Breakdowns of gold_kpis by class, manager and administrator, with 3- and 12-month windows.

For the month M and each group (the market as a whole, a class, a manager, an administrator):
- the month's gross inflow, gross outflow and net flow (Σ of the funds' gold values);
- organic growth = net flow ÷ starting net assets, the starting net assets being Σ of each
  fund's `patrimonio_inicial` (its net assets on its first report of M);
- over the 3 and 12 months ending in M: the sums of the flows, ÷ the starting net assets of
  the window's first month (Σ `patrimonio_inicial` in M-2, resp. M-11, of the group's funds
  then). A window is complete when every one of its months is in gold_kpis; when one is
  missing its columns are NULL (a partial sum would pass for the whole window) and
  `meses_*m` says how many months were there.

A fund belongs to the group its registry entry names: the subclass's row (cnpj_fundo,
id_subclasse), else its class's (cnpj_fundo, NULL); without an entry, or without the value,
to "não informado". Funds of funds (fundo_de_cotas) put into other funds money those funds
report again, so every group comes twice: escopo `todos` (every fund) and
`sem_fundos_de_cotas` (funds of funds left out; a fund whose registry does not say is kept).

Events (gold_kpis.evento: a transfer or succession between keys; and the registry's
`encerramento`, a key's last month before its cancellation, docs/events.md) are no investor's
decision: the month's `fluxo_eventos` sums their net flow, and `fluxo_organico` and
`crescimento_organico_sem_eventos` leave it out. The other columns keep every fund-month.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cvm210_assets.lake.schemas import GOLD_BREAKDOWNS, MONEY_SUM, in_schema, month_index
from cvm210_assets.partitions import Month
from cvm210_assets.transforms.events import registry_events

NAO_INFORMADO = "não informado"
DIMENSIONS = ("classe", "gestor", "administrador")
WINDOWS = (3, 12)
ALL_FUNDS = "todos"
WITHOUT_FOF = "sem_fundos_de_cotas"
FLOWS = ("total_captacao", "total_resgate", "fluxo_liquido")
GROUP = ("escopo", "dimensao", "valor")
REGISTRY_COLUMNS = ("classe", "gestor", "administrador", "fundo_de_cotas")


def _index(month: Month) -> int:
    return month.ano * 12 + month.mes - 1


def _growth(flow: Column, start: Column) -> Column:
    """Net flow over starting net assets, as DOUBLE; NULL without starting net assets."""
    return F.when(start > 0, flow.cast("double") / start.cast("double"))


def attribute(gold: DataFrame, registry: DataFrame) -> DataFrame:
    """Gold rows with their registry columns: the subclass's entry, else the class's."""
    sub = registry.where(F.col("id_subclasse").isNotNull()).select(
        F.col("cnpj_fundo").alias("_s_cnpj"),
        F.col("id_subclasse").alias("_s_sub"),
        F.lit(True).alias("_s_found"),
        *(F.col(c).alias(f"_s_{c}") for c in REGISTRY_COLUMNS),
    )
    cls = registry.where(F.col("id_subclasse").isNull()).select(
        F.col("cnpj_fundo").alias("_c_cnpj"), *(F.col(c).alias(f"_c_{c}") for c in REGISTRY_COLUMNS)
    )
    joined = gold.join(
        sub, (gold.cnpj_fundo == sub._s_cnpj) & (gold.id_subclasse == sub._s_sub), "left"
    ).join(cls, gold.cnpj_fundo == cls._c_cnpj, "left")
    found = F.col("_s_found").isNotNull()
    return joined.select(
        *gold.columns,
        *(
            F.when(found, F.col(f"_s_{c}")).otherwise(F.col(f"_c_{c}")).alias(c)
            for c in REGISTRY_COLUMNS
        ),
    )


def monthly_groups(attributed: DataFrame) -> DataFrame:
    """Σ per (escopo, dimensao, valor, month): every fund in `todos`, and in
    `sem_fundos_de_cotas` unless it is a fund of funds."""
    fof = F.coalesce(F.col("fundo_de_cotas"), F.lit(False))
    scopes = F.when(fof, F.array(F.lit(ALL_FUNDS))).otherwise(
        F.array(F.lit(ALL_FUNDS), F.lit(WITHOUT_FOF))
    )
    groups = F.array(
        F.struct(F.lit("mercado").alias("dimensao"), F.lit("total").alias("valor")),
        *(
            F.struct(
                F.lit(d).alias("dimensao"),
                F.coalesce(F.col(d), F.lit(NAO_INFORMADO)).alias("valor"),
            )
            for d in DIMENSIONS
        ),
    )
    # One generator per select: scopes first, then the groups of each scope's row.
    zero = F.lit(0).cast(MONEY_SUM)
    events = F.when(F.col("evento").isNotNull(), F.col("fluxo_liquido")).otherwise(zero)
    sums = (*FLOWS, "patrimonio_inicial", "fluxo_eventos")
    scoped = attributed.select(
        month_index(F.col("ano"), F.col("mes")).alias("idx"),
        F.explode(scopes).alias("escopo"),
        *DIMENSIONS,
        *FLOWS,
        "patrimonio_inicial",
        events.alias("fluxo_eventos"),
    )
    long = scoped.select("idx", "escopo", F.explode(groups).alias("_g"), *sums)
    long = long.select("idx", "escopo", "_g.dimensao", "_g.valor", *sums)
    return long.groupBy(*GROUP, "idx").agg(
        F.count(F.lit(1)).cast("int").alias("fundos"), *(F.sum(c).alias(c) for c in sums)
    )


def breakdowns(
    gold: DataFrame,
    registry: DataFrame,
    month: Month,
    present: Sequence[Month],
    pipeline_version: str,
    processed_at: dt.datetime,
) -> DataFrame:
    """The month's breakdown rows (schema GOLD_BREAKDOWNS) from the gold rows of the months
    `present` among the 12 ending in `month` (which must be one of them), and of those after
    it that `registry_events` reads (a key still reporting then did not close before)."""
    target = _index(month)
    marked = registry_events(gold, registry).where(
        month_index(F.col("ano"), F.col("mes")) <= target
    )
    monthly = monthly_groups(attribute(marked, registry))
    rows = monthly.where(F.col("idx") == target).drop("idx")
    have = {_index(m) for m in present}
    for months in WINDOWS:
        first = target - months + 1
        count = sum(1 for i in range(first, target + 1) if i in have)
        if count == months:
            sums = (
                monthly.where(F.col("idx").between(first, target))
                .groupBy(*GROUP)
                .agg(*(F.sum(c).alias(f"{c}_{months}m") for c in FLOWS))
            )
            start = monthly.where(F.col("idx") == first).select(
                *GROUP, F.col("patrimonio_inicial").alias(f"patrimonio_inicial_{months}m")
            )
            rows = rows.join(sums, list(GROUP), "left").join(start, list(GROUP), "left")
            rows = rows.withColumn(
                f"patrimonio_inicial_{months}m",
                F.coalesce(F.col(f"patrimonio_inicial_{months}m"), F.lit(0).cast(MONEY_SUM)),
            )
        else:
            for c in (*FLOWS, "patrimonio_inicial"):
                rows = rows.withColumn(f"{c}_{months}m", F.lit(None).cast(MONEY_SUM))
        rows = rows.withColumn(
            f"crescimento_organico_{months}m",
            _growth(F.col(f"fluxo_liquido_{months}m"), F.col(f"patrimonio_inicial_{months}m")),
        ).withColumn(f"meses_{months}m", F.lit(count))
    rows = rows.withColumns(
        {
            "crescimento_organico": _growth(F.col("fluxo_liquido"), F.col("patrimonio_inicial")),
            "fluxo_organico": F.col("fluxo_liquido") - F.col("fluxo_eventos"),
        }
    )
    rows = rows.withColumns(
        {
            "crescimento_organico_sem_eventos": _growth(
                F.col("fluxo_organico"), F.col("patrimonio_inicial")
            ),
            "versao_pipeline": F.lit(pipeline_version),
            "dh_processamento": F.lit(processed_at),
            "ano": F.lit(month.ano),
            "mes": F.lit(month.mes),
        }
    )
    return in_schema(rows, GOLD_BREAKDOWNS)

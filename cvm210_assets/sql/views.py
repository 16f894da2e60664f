"""The original design's tables and views, defined once and rendered for DuckDB and Spark SQL.

The tables and the names of their views are the catalog's (`lake/table_catalog.py`); here are
the original's columns a table's own lack, and the SELECTs of the views over several tables.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from cvm210_assets.gold_rules import ENCERRAMENTO, MESES_ENCERRAMENTO, PEER_GROUPS
from cvm210_assets.lake.table_catalog import (
    GOLD_FUNDOS_VIEW,
    GOLD_TABLE,
    LAKE_TABLES,
    PARES_TABLE,
    REGISTRY_TABLE,
    SILVER_TABLE,
    LakeTable,
)


@dataclass(frozen=True)
class View:
    """A table of the original design: a Delta table plus the original's extra columns."""

    table: str
    # Extra column -> SQL expression over the table's row (alias t).
    columns: Mapping[str, str] = field(default_factory=dict)


# The original design's columns that a table's own lack, by table.
EXTRA_COLUMNS: dict[LakeTable, dict[str, str]] = {
    SILVER_TABLE: {"dh_processamento_silver": "t.dh_processamento"},
    GOLD_TABLE: {
        "dias_negociacao": "t.dias_com_informe",
        "valor_total_movimentado": "t.total_captacao + t.total_resgate",
        # A return in percent. The original's (max − min) ÷ min was a range: see docs/sql.md.
        "variacao_cota_mes": "100 * t.variacao_cota",
        "dh_geracao_analytics": "t.dh_processamento",
    },
}
VIEWS: dict[str, View] = {t.view: View(t.name, EXTRA_COLUMNS.get(t, {})) for t in LAKE_TABLES}

# The registry's columns that gold_fundos adds to each gold row.
REGISTRY_COLUMNS = (
    "nome",
    "classe",
    "classe_anbima",
    "gestor",
    "cnpj_gestor",
    "administrador",
    "cnpj_administrador",
    "situacao",
    "fundo_de_cotas",
)
# ... and those of the registry's event, NULL while the registry predates them.
REGISTRY_DATES = ("data_situacao", "data_cancelamento")


# gold_pares' columns that gold_fundos adds (docs/peers.md), with their SQL types.
PARES_COLUMNS = {
    f"{measure}_{group}": kind
    for group in PEER_GROUPS
    for measure, kind in (("pares", "INTEGER"), ("posicao", "INTEGER"), ("percentil", "DOUBLE"))
}


def _evento_registro() -> str:
    """`encerramento` as `registry_events` (transforms/events.py) marks it: no daily event, the
    key (its subclass, else its class) cancelled in the month or the MESES_ENCERRAMENTO after
    it, and no later month of the key's in gold up to the cancellation's."""
    cancelamento = "coalesce(s.data_cancelamento, c.data_cancelamento)"
    cancelled_in = f"year({cancelamento}) * 12 + month({cancelamento}) - 1"
    month = "g.ano * 12 + g.mes - 1"
    following = (
        f"lead({month}) OVER (PARTITION BY g.cnpj_fundo, g.id_subclasse ORDER BY g.ano, g.mes)"
    )
    return (
        f"CASE WHEN g.evento IS NULL AND {cancelled_in} BETWEEN {month}"
        f" AND {month} + {MESES_ENCERRAMENTO}"
        f" AND ({following} IS NULL OR {following} > {cancelled_in})"
        f" THEN '{ENCERRAMENTO}' END"
    )


def gold_fundos_sql(
    relations: Mapping[str, str], columns: Mapping[str, Collection[str]] | None = None
) -> str:
    """gold_kpis with the fund's name, class, manager and administrator: a subclass's row
    takes its subclass's registry entry, else its class's (one row of gold, one row here); its
    peer standing from gold_pares, NULL until gold_breakdowns has written the month; and
    `evento_registro`, the registry's event (docs/events.md). `columns`: each table's columns
    when known; a gold or registry written before the event's columns then shows them NULL
    (None: today's tables, as on Databricks)."""
    has = columns or {}
    dates = set(REGISTRY_DATES) <= set(has.get(REGISTRY_TABLE.name, REGISTRY_DATES))
    picked = [
        f"CASE WHEN s.cnpj_fundo IS NOT NULL THEN s.{c} ELSE c.{c} END AS {c}"
        for c in (*REGISTRY_COLUMNS, *(REGISTRY_DATES if dates else ()))
    ]
    picked += [] if dates else [f"CAST(NULL AS DATE) AS {c}" for c in REGISTRY_DATES]
    dated = dates and "evento" in has.get(GOLD_TABLE.name, ("evento",))
    picked.append(f"{_evento_registro() if dated else 'CAST(NULL AS STRING)'} AS evento_registro")
    pares = relations.get(PARES_TABLE.name)
    if pares is None:
        picked += [f"CAST(NULL AS {kind}) AS {c}" for c, kind in PARES_COLUMNS.items()]
        join = ""
    else:
        picked += [f"p.{c}" for c in PARES_COLUMNS]
        join = (
            f" LEFT JOIN {pares} AS p ON p.ano = g.ano AND p.mes = g.mes AND p.cnpj_fundo ="
            " g.cnpj_fundo AND p.id_subclasse IS NOT DISTINCT FROM g.id_subclasse"
        )
    return (
        f"SELECT g.*, {', '.join(picked)} FROM {relations[GOLD_TABLE.name]} AS g"
        f" LEFT JOIN {relations[REGISTRY_TABLE.name]} AS s"
        " ON s.cnpj_fundo = g.cnpj_fundo AND s.id_subclasse = g.id_subclasse"
        f" LEFT JOIN {relations[REGISTRY_TABLE.name]} AS c"
        f" ON c.cnpj_fundo = g.cnpj_fundo AND c.id_subclasse IS NULL{join}"
    )


# Views over several tables: name -> (the tables, its SELECT over them and their columns).
Select = Callable[[Mapping[str, str], Mapping[str, Collection[str]] | None], str]
JOINED_VIEWS: dict[str, tuple[tuple[str, ...], Select]] = {
    GOLD_FUNDOS_VIEW.view: (tuple(t.name for t in GOLD_FUNDOS_VIEW.tables), gold_fundos_sql)
}


def joined_views(
    relations: Mapping[str, str], columns: Mapping[str, Collection[str]] | None = None
) -> list[tuple[str, str]]:
    """The joined views whose tables are all in `relations`: (name, SELECT) each. `columns`:
    each table's columns when known (an older table may lack the newest)."""
    return [
        (name, select(relations, columns))
        for name, (needs, select) in JOINED_VIEWS.items()
        if all(t in relations for t in needs)
    ]


def view_sql(name: str, relations: Mapping[str, str]) -> str:
    """The SELECT of view `name`, over `relations` (Delta table -> how the engine names it)."""
    view = VIEWS[name]
    extras = [f"{expression} AS {column}" for column, expression in view.columns.items()]
    return f"SELECT {', '.join(['t.*', *extras])} FROM {relations[view.table]} AS t"

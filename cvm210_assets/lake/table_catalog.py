"""The lake's tables, each named here once: its folder under the lake root, the asset whose step
writes it, its name in SQL, its partition columns and the columns its files are sorted by.

Everything that names a table reads it here: the assets (their writes and `dagster/table_name`),
`cvm210 sql` (its views and its help), the delta-rs and Spark callers, and the weekly upkeep.
No Spark, Dagster or Arrow is imported: `cvm210 --help` reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass

SQL_SCHEMA = "cvm_p210"  # the original design's schema
PARTITION_COLUMNS = ("ano", "mes")  # a monthly table's partitions: one folder per month


@dataclass(frozen=True)
class LakeTable:
    """One Delta table of the lake."""

    name: str  # its folder under the lake root, and its own name in `cvm210 sql`
    asset: str  # the asset whose step writes it (a side table: that of its owner)
    view: str  # its name in the original design, in SQL_SCHEMA
    partition_by: tuple[str, ...] = PARTITION_COLUMNS
    # Each write sorts a month's rows by these, and Delta keeps file statistics on them alone.
    cluster_by: tuple[str, ...] = ()
    # The upkeep Z-orders a month left in several files by these (none: compaction only). They
    # are the columns readers filter on, so a prefix of `cluster_by` or its columns interleaved:
    # Z-order on one column is that column's sort, on two it keeps both selective.
    zorder_by: tuple[str, ...] = ()

    @property
    def sql_name(self) -> str:
        return f"{SQL_SCHEMA}.{self.view}"


@dataclass(frozen=True)
class JoinedView:
    """A view of the original design over several tables (its SELECT is in sql/views.py)."""

    view: str
    tables: tuple[LakeTable, ...]
    # Joined when they exist; until then their columns are NULL.
    optional: tuple[LakeTable, ...] = ()

    @property
    def sql_name(self) -> str:
        return f"{SQL_SCHEMA}.{self.view}"


BRONZE_TABLE = LakeTable(name="bronze", asset="bronze", view="bronze_inf_diario")
SILVER_TABLE = LakeTable(
    name="silver",
    asset="silver",
    view="silver_inf_diario",
    cluster_by=("cnpj_fundo", "id_subclasse", "dt_comptc"),
    zorder_by=("cnpj_fundo", "dt_comptc"),
)
REJECTS_TABLE = LakeTable(
    name="silver_rejects", asset="silver", view="silver_rejects", cluster_by=("numero_linha",)
)
CHANGES_TABLE = LakeTable(
    name="silver_changes",
    asset="silver",
    view="silver_changes",
    cluster_by=("cnpj_fundo", "dt_comptc"),
    zorder_by=("cnpj_fundo",),
)
GOLD_TABLE = LakeTable(
    name="gold_kpis",
    asset="gold_kpis",
    view="gold_cvm210_analytics",
    cluster_by=("cnpj_fundo", "id_subclasse"),
    zorder_by=("cnpj_fundo",),
)
BREAKDOWNS_TABLE = LakeTable(
    name="gold_breakdowns",
    asset="gold_breakdowns",
    view="gold_breakdowns",
    cluster_by=("escopo", "dimensao", "valor"),
)
# Each fund-month's standing among its class and its manager's funds, beside the breakdowns:
# per registry column of gold_rules.PEER_GROUPS: pares_<g>, posicao_<g> and percentil_<g>.
PARES_TABLE = LakeTable(
    name="gold_pares",
    asset="gold_breakdowns",
    view="gold_pares",
    cluster_by=("cnpj_fundo", "id_subclasse"),
)
ALERTS_TABLE = LakeTable(
    name="outflow_alerts",
    asset="outflow_alerts",
    view="outflow_alerts",
    cluster_by=("cnpj_fundo", "id_subclasse"),
)
# One small append per message sent (by delta-rs, unsorted): the table that fragments most.
DELIVERIES_TABLE = LakeTable(
    name="alert_deliveries", asset="alert_deliveries", view="alert_deliveries"
)
# Replaced whole every day, unpartitioned: nothing to compact, old versions to vacuum.
REGISTRY_TABLE = LakeTable(
    name="fund_registry", asset="fund_registry", view="fund_registry", partition_by=()
)

LAKE_TABLES = (
    BRONZE_TABLE,
    SILVER_TABLE,
    REJECTS_TABLE,
    CHANGES_TABLE,
    GOLD_TABLE,
    BREAKDOWNS_TABLE,
    PARES_TABLE,
    ALERTS_TABLE,
    DELIVERIES_TABLE,
    REGISTRY_TABLE,
)
TABLES = tuple(t.name for t in LAKE_TABLES)

# gold_kpis with each fund's name, class, manager and administrator, and its peer standing.
GOLD_FUNDOS_VIEW = JoinedView("gold_fundos", (GOLD_TABLE, REGISTRY_TABLE), (PARES_TABLE,))
JOINED_VIEWS = (GOLD_FUNDOS_VIEW,)


def view_names() -> list[str]:
    """The original design's names of the tables and views, as `cvm210 sql` knows them."""
    return [v.sql_name for v in (*LAKE_TABLES, *JOINED_VIEWS)]


def sql_names() -> list[str]:
    """Every name `cvm210 sql` knows a table by: the original design's, then the tables' own."""
    return [*view_names(), *TABLES]

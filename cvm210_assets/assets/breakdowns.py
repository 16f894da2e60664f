"""gold_breakdowns: the month's flows and organic growth by class, manager and administrator."""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.catalog import percent
from cvm210_assets.assets.common import (
    Check,
    Outcome,
    digest,
    fingerprint,
    markdown_table,
    now_utc,
    table_schema,
)
from cvm210_assets.assets.gold import GOLD_ASSET, following_gold, following_months
from cvm210_assets.assets.monthly import (
    Judged,
    MonthlyAsset,
    Plan,
    Work,
    Written,
    commit_metadata,
    materialize,
)
from cvm210_assets.assets.registry import REGISTRY_ASSET
from cvm210_assets.gold_rules import PARES_MINIMO, PEER_GROUPS
from cvm210_assets.lake.schemas import (
    FUND_REGISTRY,
    GOLD_BREAKDOWNS,
    GOLD_PARES,
    literal_frame,
)
from cvm210_assets.lake.spark_tables import months_predicate
from cvm210_assets.lake.table_catalog import (
    BREAKDOWNS_TABLE,
    GOLD_TABLE,
    PARES_TABLE,
    REGISTRY_TABLE,
)
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.transforms.breakdowns import (
    ALL_FUNDS,
    DIMENSIONS,
    REGISTRY_COLUMNS,
    WINDOWS,
    breakdowns,
)
from cvm210_assets.transforms.peers import peers

BREAKDOWNS_ASSET = BREAKDOWNS_TABLE.asset
WINDOW_MONTHS = max(WINDOWS)
GOLD_MONTHS = "gold_months"  # the fingerprint's field naming the window's months in gold

ADD_UP_TO_MARKET = Check(
    "groups_add_up_to_market",
    "For each escopo and dimension, the groups' funds, inflows, outflows and net flows add up to"
    " the market's: every fund is in exactly one group.",
)
CHECKS = (ADD_UP_TO_MARKET,)


def evaluate(rows: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    """Σ over each dimension's groups equals the market row of the same escopo."""
    totals: dict[tuple[str, str], tuple] = {}
    for row in rows:
        key = (row["escopo"], row["dimensao"])
        values = (row["fundos"], row["total_captacao"], row["total_resgate"], row["fluxo_liquido"])
        previous = totals.get(key, (0, 0, 0, 0))
        totals[key] = tuple(a + b for a, b in zip(previous, values, strict=True))
    wrong = [
        f"{escopo}/{dimensao}"
        for (escopo, dimensao), values in totals.items()
        if dimensao != "mercado" and values != totals.get((escopo, "mercado"))
    ]
    return [Outcome(ADD_UP_TO_MARKET, not wrong, {"mismatched": ", ".join(wrong) or "none"})]


@asset(
    deps=[
        # The 12-month window reads the eleven months before the partition's.
        AssetDep(
            GOLD_ASSET,
            partition_mapping=TimeWindowPartitionMapping(start_offset=-(WINDOW_MONTHS - 1)),
        ),
        AssetDep(REGISTRY_ASSET),
    ],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(BREAKDOWNS_ASSET) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(GOLD_BREAKDOWNS),
        "dagster/table_name": BREAKDOWNS_TABLE.sql_name,
        "pares_table": f"{PARES_TABLE.name} (SQL: {PARES_TABLE.sql_name})",
        "pares_columns": MetadataValue.table_schema(table_schema(GOLD_PARES)),
    },
    description=(
        "Per month: gross inflow, outflow, net flow and organic growth (net flow ÷ starting net"
        " assets) of the market, of each CVM class, manager and administrator, for the month"
        " and the 3 and 12 months ending in it; each twice, with every fund and without funds"
        " of funds (escopo). Groups come from fund_registry. See docs/registry-and-breakdowns.md."
        " Beside them, the gold_pares table written in the same step: each fund's place and"
        " percentile of fluxo_liquido_pct_pl in its class and among its manager's funds"
        " (docs/peers.md)."
    ),
)
def gold_breakdowns(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize(GoldBreakdowns(), context, lake, pyspark)


class GoldBreakdowns(MonthlyAsset):
    """A month at a time: its window's gold months and the registry, redone when any changes."""

    name = BREAKDOWNS_ASSET
    upstream = GOLD_ASSET
    checks = CHECKS

    def wanted(self, lake: Lake, month: Month, upstream: Mapping[str, Any]) -> dict[str, str]:
        """The fingerprint of every input (each gold month's version and the registry's): the
        month is recomputed when any of them changes. It also names the window's months in
        gold, which the judge reads, the months after it that the registry's event reads, and
        the peers' minimum, part of gold_pares: a month written before gold_pares existed (its
        record has no such key) is redone once to write it."""
        state = lake.state
        window = month.window(WINDOW_MONTHS)
        records = {m: state.get(GOLD_ASSET, m) for m in window}
        registry = state.get(REGISTRY_ASSET)
        inputs = {
            "gold": {
                m.key: [r["source_sha256"], r["delta_version"]] for m, r in records.items() if r
            },
            "registry": registry["delta_version"] if registry else None,
        }
        present = ", ".join(m.key for m in window if records[m])
        return {
            **fingerprint(digest(inputs)),
            GOLD_MONTHS: present,
            "pares_minimo": str(PARES_MINIMO),
            **following_gold(state, month),
        }

    @contextmanager
    def judge(self, work: Work, plans: Sequence[Plan]) -> Iterator[Judged]:
        (plan,) = plans
        month, spark, tables = plan.month, work.spark, work.tables
        # The gold months the fingerprint recorded: the month is computed from what its state
        # record says, not from a second look at gold's state.
        present = [Month.from_key(k) for k in plan.wanted[GOLD_MONTHS].split(", ") if k]
        # ... and the months after it, which the registry's event reads alone.
        gold = tables.read_months(GOLD_TABLE.name, present + following_months(plan.wanted))
        # The registry is written by delta-rs wherever Dagster runs; Delta Lake reads it here.
        columns = ["cnpj_fundo", "id_subclasse", *REGISTRY_COLUMNS, "data_cancelamento"]
        registry = tables.read(REGISTRY_TABLE.name)
        if registry is None:
            schema = StructType([FUND_REGISTRY[c] for c in columns])
            registry = literal_frame(spark, [], schema)
        # A registry written before data_cancelamento has no event to read (events.py).
        registry = registry.select(*(c for c in columns if c in registry.columns))
        processed_at = now_utc()
        frame = breakdowns(gold, registry, month, present, PIPELINE_VERSION, processed_at).persist()
        standing = peers(
            gold.where(months_predicate([month])), registry, PIPELINE_VERSION, processed_at
        )
        try:
            # A few hundred groups: they come to the driver for the check and the metadata.
            rows = [r.asDict() for r in frame.collect()]

            def write(passed: Sequence[Plan]) -> dict[Month, Written]:
                commit = commit_metadata(passed)
                # Peers first: the breakdowns' state record, written last, marks the month done.
                pares_version = tables.replace_months(
                    PARES_TABLE.name, standing, [month], commit, cluster_by=PARES_TABLE.cluster_by
                ).version
                version = tables.replace_months(
                    BREAKDOWNS_TABLE.name,
                    frame,
                    [month],
                    commit,
                    cluster_by=BREAKDOWNS_TABLE.cluster_by,
                ).version
                metadata = {
                    "dagster/row_count": len(rows),
                    "registry_present": tables.version(REGISTRY_TABLE.name) is not None,
                    "months_in_gold": ", ".join(m.key for m in present),
                    **{
                        f"window_{n}m_complete": sum(m >= month.shift(1 - n) for m in present) == n
                        for n in WINDOWS
                    },
                    "delta_version": version,
                    "table": MetadataValue.path(tables.uri(BREAKDOWNS_TABLE.name)),
                    **{f"net_flow_by_{d}": _top(rows, d) for d in DIMENSIONS},
                    **_ranked(tables.read_months(PARES_TABLE.name, [month])),
                    "pares_delta_version": pares_version,
                    "pares_table": MetadataValue.path(tables.uri(PARES_TABLE.name)),
                }
                record = {
                    "rows": len(rows),
                    "delta_version": version,
                    "pares_delta_version": pares_version,
                }
                return {month: Written(record, metadata)}

            yield Judged({month: evaluate(rows)}, write)
        finally:
            frame.unpersist()


def _ranked(standing: DataFrame) -> dict[str, int]:
    """How many of the month's funds have a standing: rows, and percentiles per peer group."""
    counts = standing.agg(
        F.count(F.lit(1)).alias("pares_rows"),
        *(F.count(f"percentil_{g}").alias(f"pares_ranked_{g}") for g in PEER_GROUPS),
    ).first()
    return counts.asDict()


def _top(groups: Sequence[Mapping[str, Any]], dimension: str) -> MetadataValue:
    """The dimension's ten groups with the largest net outflow (every fund)."""
    rows = [r for r in groups if r["escopo"] == ALL_FUNDS and r["dimensao"] == dimension]
    rows.sort(key=lambda r: r["fluxo_liquido"])
    ratios = ("crescimento_organico", "crescimento_organico_12m")
    return markdown_table(
        [{**r, **{c: percent(r[c]) for c in ratios}} for r in rows[:10]],
        [
            "valor",
            "fundos",
            "fluxo_liquido",
            "total_resgate",
            "crescimento_organico",
            "crescimento_organico_12m",
        ],
    )

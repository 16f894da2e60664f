"""gold_kpis: fund-flow KPIs per fund and month, recomputed from each month's silver."""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    asset,
)
from dagster_pyspark import LazyPySparkResource

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.catalog import net_flow_markdown, percent, recorded_net_flow
from cvm210_assets.assets.common import (
    Check,
    Outcome,
    digest,
    markdown_table,
    now_utc,
    table_schema,
)
from cvm210_assets.assets.monthly import (
    Judged,
    MonthlyAsset,
    Plan,
    Work,
    Written,
    commit_metadata,
    materialize,
)
from cvm210_assets.assets.silver import SILVER_ASSET
from cvm210_assets.gold_rules import MESES_ENCERRAMENTO, TOLERANCIA_MINIMA, TOLERANCIA_PCT_PL
from cvm210_assets.lake.raw_zone import StateStore, csv_key
from cvm210_assets.lake.schemas import GOLD
from cvm210_assets.lake.spark_tables import first_rows_by_month, months_predicate
from cvm210_assets.lake.table_catalog import (
    GOLD_TABLE,
    SILVER_TABLE,
)
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.transforms.events import REGRAS_EVENTOS, REGRAS_REGISTRO
from cvm210_assets.transforms.gold import fund_months, kpis, month_sources
from cvm210_assets.transforms.quality import (
    GoldQuality,
    gold_quality,
    largest_residuals,
    silver_totals,
)

GOLD_ASSET = GOLD_TABLE.asset
# The fingerprint field naming gold's months after a month that `registry_events` reads.
GOLD_FOLLOWING = "gold_meses_seguintes"


def following_gold(state: StateStore, month: Month) -> dict[str, str]:
    """Fingerprint fields for a reader of fund_registry's events (transforms/events.py): the
    rule's version and gold's months after `month` it reads, named and with their versions. A
    key still reporting in one did not close in `month`: one that arrives or changes redoes it."""
    after = [month.shift(k) for k in range(1, MESES_ENCERRAMENTO + 1)]
    records = {m: state.get(GOLD_ASSET, m) for m in after}
    present = {m.key: [r["source_sha256"], r["delta_version"]] for m, r in records.items() if r}
    return {
        "regras_registro": REGRAS_REGISTRO,
        GOLD_FOLLOWING: ", ".join(present),
        "gold_meses_seguintes_sha256": digest(present),
    }


def following_months(wanted: Mapping[str, str]) -> list[Month]:
    """The months after the partition's that its fingerprint found in gold (`following_gold`):
    the step reads what its state record says, not a second look at gold's state."""
    return [Month.from_key(k) for k in wanted[GOLD_FOLLOWING].split(", ") if k]


TOTALS_MATCH_SILVER = Check(
    "gold_totals_equal_silver_sums",
    "Σ total_captacao, Σ total_resgate, Σ fluxo_liquido and Σ dias_com_informe equal the"
    " month's silver sums and row count, to the cent.",
)
ONE_ROW_PER_KEY = Check(
    "one_gold_row_per_key", "One gold row per (cnpj_fundo, id_subclasse, ano, mes)."
)
TOLERANCE = (
    f"|residuo_conciliacao| > max({TOLERANCIA_PCT_PL:.0%} of patrimonio_medio,"
    f" R$ {TOLERANCIA_MINIMA})"
)
FLOWS_RECONCILE = Check(
    "flows_reconcile",
    "Each fund-month's net assets move by its return and flows alone: no residuo_conciliacao"
    f" beyond the tolerance, {TOLERANCE} (docs/analytics.md). A warning: reporting errors,"
    " unit slips, missing days and events are CVM's data; the month is written.",
    blocking=False,
    severity=AssetCheckSeverity.WARN,
)
CHECKS = (TOTALS_MATCH_SILVER, ONE_ROW_PER_KEY, FLOWS_RECONCILE)
TOTAL_NAMES = ("captacao", "resgate", "fluxo_liquido", "dias_com_informe")
# The columns of the largest residuals' table, in the check's metadata.
RESIDUAL_COLUMNS = (
    "cnpj_fundo",
    "id_subclasse",
    "dias_com_informe",
    "patrimonio_medio",
    "fluxo_liquido",
    "rendimento",
    "residuo_conciliacao",
    "residuo_pct_pl",
)
LARGEST = 10


def evaluate(quality: GoldQuality) -> list[Outcome]:
    totals = {
        f"{name}_gold": str(g) for name, g in zip(TOTAL_NAMES, quality.gold_totals, strict=True)
    } | {
        f"{name}_silver": str(s) for name, s in zip(TOTAL_NAMES, quality.silver_totals, strict=True)
    }
    return [
        Outcome(TOTALS_MATCH_SILVER, quality.gold_totals == quality.silver_totals, totals),
        Outcome(
            ONE_ROW_PER_KEY, quality.duplicate_keys == 0, {"duplicate_keys": quality.duplicate_keys}
        ),
    ]


def evaluate_reconciliation(quality: GoldQuality, largest: Sequence[Mapping[str, Any]]) -> Outcome:
    """flows_reconcile from the month's counts and its largest residuals beyond the tolerance
    (largest |residuo_conciliacao| first); pure, so the check is testable without Spark."""
    checked, over = quality.reconciled, quality.over_tolerance
    return Outcome(
        FLOWS_RECONCILE,
        over == 0,
        {
            "fund_months_checked": checked,
            "fund_months_over_tolerance": over,
            "share_over_tolerance": over / checked if checked else 0.0,
            "fund_months_not_reconcilable": quality.not_reconcilable,
            "tolerance": TOLERANCE,
            "largest_residuals": markdown_table(
                [{**r, "residuo_pct_pl": percent(r["residuo_pct_pl"])} for r in largest],
                RESIDUAL_COLUMNS,
            ),
        },
    )


@asset(
    deps=[SILVER_ASSET],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(GOLD_ASSET) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(GOLD),
        "dagster/table_name": GOLD_TABLE.sql_name,
    },
    description=(
        "One row per fund (class or subclass) and month: inflows, outflows, net flow, average"
        " net assets, quota return, holders, outflow-risk flags, and the flow reconciliation"
        " (return earned and the residual that neither return nor flows explain). Sums are"
        " exact DECIMALs."
    ),
)
def gold_kpis(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize(GoldKpis(), context, lake, pyspark)


class GoldKpis(MonthlyAsset):
    """Any months together: each month's KPIs come from its own silver rows alone."""

    name = GOLD_ASSET
    upstream = SILVER_ASSET
    checks = CHECKS

    def batch_key(self, plan: Plan) -> str:
        return "gold"

    def wanted(self, lake: Lake, month: Month, upstream: Mapping[str, Any]) -> dict[str, str]:
        """Silver's month and the code, and the event rules' version: a month written before
        gold had events (its record has no such key) is redone once to add them, without
        reprocessing bronze or silver."""
        return {**super().wanted(lake, month, upstream), "regras_eventos": REGRAS_EVENTOS}

    @contextmanager
    def judge(self, work: Work, plans: Sequence[Plan]) -> Iterator[Judged]:
        tables, months = work.tables, [p.month for p in plans]
        # Silver is read twice (KPIs, then the sums the check compares them with, independently):
        # each read prunes to the columns it needs, cheaper than caching the months.
        source = tables.read_months(SILVER_TABLE.name, months)
        sources = month_sources(
            work.spark, {p.month: (csv_key(p.month), p.wanted["source_sha256"]) for p in plans}
        )
        # The KPIs and the succession rule both read each key-month's aggregate: cached, it is
        # computed once (a 3.7 M-row batch's KPIs: 2-4 s less JVM CPU of about 30 in three of
        # four paired runs, benchmarks/README.md).
        monthly = fund_months(source).persist()
        gold = kpis(source, sources, PIPELINE_VERSION, now_utc(), monthly).persist()
        try:
            quality = gold_quality(gold, silver_totals(source), months)
            monthly.unpersist()  # gold is cached: the aggregate is read no more
            over = any(quality[m].over_tolerance for m in months)  # else spare the job
            largest = largest_residuals(gold, RESIDUAL_COLUMNS, LARGEST) if over else {}
            outcomes = {
                m: [*evaluate(quality[m]), evaluate_reconciliation(quality[m], largest.get(m, []))]
                for m in months
            }

            def write(passed: Sequence[Plan]) -> dict[Month, Written]:
                done = [p.month for p in passed]
                rows = gold.where(months_predicate(done)) if len(passed) < len(plans) else gold
                top_outflows = first_rows_by_month(
                    rows.where("fluxo_liquido < 0"), 10, ["fluxo_liquido"]
                )
                version = tables.replace_months(
                    GOLD_TABLE.name,
                    rows,
                    done,
                    commit_metadata(passed),
                    cluster_by=GOLD_TABLE.cluster_by,
                ).version
                flows = {m: quality[m].net_flow for m in done}
                return {
                    m: _written(
                        work, m, quality[m], top_outflows.get(m, []), version,
                        _last_12_months(work, m, flows),
                    )
                    for m in done
                }  # fmt: skip

            yield Judged(outcomes, write)
        finally:
            gold.unpersist()
            monthly.unpersist()


def _last_12_months(
    work: Work, month: Month, batch: Mapping[Month, Decimal]
) -> list[tuple[str, Decimal]]:
    """The market's net flow in the 12 months ending in `month`: as recorded in the lake, and
    as just computed for the batch's months (not recorded yet)."""
    points = dict(recorded_net_flow(work.lake.state, GOLD_ASSET, month, 12))
    points |= {m.key: flow for m, flow in batch.items() if month.shift(-11) <= m <= month}
    return sorted(points.items())


def _written(
    work: Work,
    month: Month,
    quality: GoldQuality,
    top_outflows: list[dict[str, Any]],
    version: int,
    last_12_months: list[tuple[str, Decimal]],
) -> Written:
    """The month's state record and metadata."""
    at_risk, net_flow, outflow = quality.funds_in_net_outflow, quality.net_flow, quality.outflow
    return Written(
        record={
            "rows": quality.rows,
            "delta_version": version,
            "net_flow_total": str(net_flow),  # the catalog's 12-month chart reads it
        },
        metadata={
            # The catalog's chart: the market's net flow over the last 12 months in the lake.
            "net_flow_12_months": MetadataValue.md(net_flow_markdown(last_12_months)),
            "dagster/row_count": quality.rows,
            "funds_in_net_outflow": at_risk,
            "net_flow_total": str(net_flow),
            "outflow_total": str(outflow),
            "delta_version": version,
            "table": MetadataValue.path(work.tables.uri(GOLD_TABLE.name)),
            "largest_net_outflows": markdown_table(
                [
                    {**r, "fluxo_liquido_pct_pl": percent(r["fluxo_liquido_pct_pl"])}
                    for r in top_outflows
                ],
                [
                    "cnpj_fundo",
                    "id_subclasse",
                    "tp_fundo",
                    "fluxo_liquido",
                    "total_resgate",
                    "patrimonio_medio",
                    "fluxo_liquido_pct_pl",
                ],
            ),
        },
    )

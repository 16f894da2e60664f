"""gold_kpis: fund-flow KPIs per fund and month, recomputed from the month's silver."""

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import functions as F

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.catalog import (
    net_flow_chart,
    recorded_net_flow,
)
from cvm210_assets.assets.common import (
    SKIPPED,
    Check,
    MonthResult,
    Outcome,
    blocking_failure,
    fingerprint,
    is_current,
    markdown_table,
    materialize_months,
    now_utc,
    require,
    run_label,
    table_schema,
    unchanged,
)
from cvm210_assets.assets.silver import SILVER_ASSET
from cvm210_assets.lake.raw_zone import csv_key
from cvm210_assets.lake.schemas import GOLD
from cvm210_assets.lake.spark_tables import first_rows
from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.transforms.gold import kpis
from cvm210_assets.transforms.quality import GoldQuality, gold_quality, silver_totals

GOLD_ASSET = "gold_kpis"

TOTALS_MATCH_SILVER = Check(
    "gold_totals_equal_silver_sums",
    "Σ total_captacao, Σ total_resgate, Σ fluxo_liquido and Σ dias_com_informe equal the"
    " month's silver sums and row count, to the cent.",
)
ONE_ROW_PER_KEY = Check(
    "one_gold_row_per_key", "One gold row per (cnpj_fundo, id_subclasse, ano, mes)."
)
CHECKS = (TOTALS_MATCH_SILVER, ONE_ROW_PER_KEY)
TOTAL_NAMES = ("captacao", "resgate", "fluxo_liquido", "dias_com_informe")


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


@asset(
    deps=[SILVER_ASSET],
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lakehouse",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    check_specs=[c.spec(GOLD_ASSET) for c in CHECKS],
    metadata={
        "dagster/column_schema": table_schema(GOLD),
        "dagster/table_name": "cvm_p210.gold_cvm210_analytics",
    },
    description=(
        "One row per fund (class or subclass) and month: inflows, outflows, net flow, average"
        " net assets, quota return, holders, outflow-risk flags. Sums are exact DECIMALs."
    ),
)
def gold_kpis(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize_months(
        context, GOLD_ASSET, CHECKS, lambda month: _compute(context, lake, pyspark, month)
    )


def _compute(
    context: AssetExecutionContext, lake: Lake, pyspark: LazyPySparkResource, month: Month
) -> MonthResult:
    with lake.month_lock(month, owner=run_label(context)):
        state = lake.state
        silver_state = require(state, SILVER_ASSET, month)
        wanted = fingerprint(silver_state["source_sha256"])
        previous = state.get(GOLD_ASSET, month)
        if is_current(previous, wanted):
            return unchanged(context, GOLD_ASSET, month, CHECKS, previous)

        spark = pyspark.spark_session
        tables = lake.spark_tables(spark)
        # Silver is read twice (KPIs, then the sums the check compares them with, independently):
        # each read prunes to the columns it needs, cheaper than caching the whole month.
        source = tables.read_months(SILVER_ASSET, [month])
        gold = kpis(
            source, csv_key(month), wanted["source_sha256"], PIPELINE_VERSION, now_utc()
        ).persist()
        try:
            quality = gold_quality(gold, silver_totals(source))
            outcomes = evaluate(quality)
            if blocking_failure(outcomes):
                return MonthResult(month, {}, outcomes)
            summary = gold.agg(
                F.count_if("em_risco"), F.sum("fluxo_liquido"), F.sum("total_resgate")
            ).first()
            top_outflows = first_rows(gold.where("fluxo_liquido < 0"), 10, ["fluxo_liquido"])
            write = tables.replace_months(
                GOLD_ASSET,
                gold,
                [month],
                {"cvm210.month": month.key, **wanted},
                cluster_by=("cnpj_fundo", "id_subclasse"),
            )
        finally:
            gold.unpersist()
        state.put(
            GOLD_ASSET,
            month,
            {
                **wanted,
                "rows": quality.rows,
                "delta_version": write.version,
                "net_flow_total": str(summary[1] or 0),  # the catalog's 12-month chart reads it
                "checks": [o.record() for o in outcomes],
            },
        )
        # The catalog's chart: the market's net flow over the last 12 months in the lake.
        chart = net_flow_chart(recorded_net_flow(state, GOLD_ASSET, month, 12))
        return MonthResult(
            month,
            outcomes=outcomes,
            data_version=wanted["source_sha256"],
            metadata={
                "net_flow_12_months": MetadataValue.json(chart),
                "dagster/row_count": quality.rows,
                "funds_in_net_outflow": summary[0] or 0,
                "net_flow_total": str(summary[1] or 0),
                "outflow_total": str(summary[2] or 0),
                "delta_version": write.version,
                "table": MetadataValue.path(tables.uri(GOLD_ASSET)),
                "largest_net_outflows": markdown_table(
                    top_outflows,
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
                SKIPPED: False,
            },
        )

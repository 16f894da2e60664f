"""outflow_alerts and alert_deliveries: who crossed an outflow rule, and telling the advisors.

Two assets so that a failed send never loses an alert: the alerts are committed first; the
deliveries read them back and send what the delivery log does not have yet, so a send that
failed is simply due again on the next run.
"""

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)
from dagster_pyspark import LazyPySparkResource

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.alerts.channels import (
    AlertDelivery,
    DeliveryError,
    OutflowRules,
    delivered,
    record,
)
from cvm210_assets.alerts.config import AlertRules
from cvm210_assets.alerts.messages import (
    email_message,
    email_text,
    fund_label,
    plan,
    webhook_body,
    with_registry,
)
from cvm210_assets.assets.breakdowns import BREAKDOWNS_ASSET
from cvm210_assets.assets.common import (
    MonthResult,
    digest,
    fingerprint,
    markdown_table,
    materialize_months,
    now_utc,
    run_label,
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
from cvm210_assets.assets.silver import SILVER_ASSET
from cvm210_assets.lake.schemas import in_schema
from cvm210_assets.lake.spark_tables import months_predicate
from cvm210_assets.lake.table_catalog import (
    ALERTS_TABLE,
    DELIVERIES_TABLE,
    GOLD_TABLE,
    PARES_TABLE,
    REGISTRY_TABLE,
    SILVER_TABLE,
)
from cvm210_assets.partitions import MONTH_POOL, Month, monthly_partitions
from cvm210_assets.resources import Lake, SparkStepLauncher
from cvm210_assets.transforms.alerts import OUTFLOW_ALERTS, RULES
from cvm210_assets.transforms.alerts import outflow_alerts as alert_rows
from cvm210_assets.transforms.events import REGRAS_EVENTOS, registry_events

ALERTS_ASSET = ALERTS_TABLE.asset
DELIVERIES_ASSET = DELIVERIES_TABLE.asset
REGISTRY_COLUMNS = [
    "cnpj_fundo",
    "id_subclasse",
    "nome",
    "gestor",
    "cnpj_gestor",
    "administrador",
    "dh_atualizacao",
]


@asset(
    # fund_registry by key: its names and managers label the alerts when it exists, and its
    # cancellations mark the months that are no investor's outflow (docs/events.md).
    # gold_breakdowns writes gold_pares, which the peer rule reads: the month's and, through
    # the fingerprint (the rule's months are configurable), the months before it.
    deps=[SILVER_ASSET, GOLD_ASSET, REGISTRY_TABLE.asset, BREAKDOWNS_ASSET],
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="alerts",
    kinds={"spark", "delta"},
    code_version=PIPELINE_VERSION,
    metadata={
        "dagster/column_schema": table_schema(OUTFLOW_ALERTS),
        "dagster/table_name": ALERTS_TABLE.sql_name,
    },
    description=(
        "Funds whose month crossed an outflow rule (CVM210_ALERT_RULES): net outflow as a share"
        " of net assets or in R$, consecutive days of net outflow, holders falling, and (when"
        " configured) the worst percentile of its class or manager for months running (from"
        " gold_pares); funds below the size floor excluded. Each alert explains itself (rule,"
        " values, window) and names the fund and its manager when fund_registry has them."
    ),
)
def outflow_alerts(
    context: AssetExecutionContext,
    lake: Lake,
    pyspark: LazyPySparkResource,
    outflow_rules: OutflowRules,
    step_launcher: SparkStepLauncher,  # runs the step on Databricks when set (README)
):
    yield from materialize(OutflowAlerts(outflow_rules.rules()), context, lake, pyspark)


class OutflowAlerts(MonthlyAsset):
    """A month at a time; redone when its gold, the rules, the registry or gold's months after
    it (which the registry's event reads) change."""

    name = ALERTS_ASSET
    upstream = GOLD_ASSET

    def __init__(self, rules: AlertRules) -> None:
        self.rules = rules

    def wanted(self, lake: Lake, month: Month, upstream: Mapping[str, Any]) -> dict[str, str]:
        return {
            **fingerprint(upstream["source_sha256"]),
            "rules_sha256": self.rules.fingerprint(),
            "regras_eventos": REGRAS_EVENTOS,  # events are not alerted: redone when they change
            "fund_registry_version": str(lake.tables.version(REGISTRY_TABLE.name)),
            **following_gold(lake.state, month),
            **self._peers_wanted(lake, month),
        }

    def _peer_months(self, month: Month) -> list[Month]:
        """The months the peer rule reads, oldest first; none while the rule is off."""
        if self.rules.peer_percentile is None:
            return []
        return month.window(self.rules.peer_percentile_months)

    def _peers_wanted(self, lake: Lake, month: Month) -> dict[str, str]:
        """The gold_pares version of each of the rule's months (None: not written yet), so a
        standing that arrives or changes recomputes the month."""
        months = self._peer_months(month)
        if not months:
            return {}
        records = {m.key: lake.state.get(BREAKDOWNS_ASSET, m) for m in months}
        versions = {k: r.get("pares_delta_version") if r else None for k, r in records.items()}
        return {"gold_pares_sha256": digest(versions)}

    def unchanged_metadata(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        return {f"alerts_{rule}": previous["by_rule"].get(rule, 0) for rule in RULES}

    @contextmanager
    def judge(self, work: Work, plans: Sequence[Plan]) -> Iterator[Judged]:
        (plan,) = plans
        month, spark, tables = plan.month, work.spark, work.tables
        # The registry version the fingerprint recorded, read at that version: the alerts are
        # named from the registry their state record says they were.
        recorded = plan.wanted["fund_registry_version"]
        registry_version = None if recorded == str(None) else int(recorded)
        peer_months = self._peer_months(month)
        registry = (
            None
            if registry_version is None
            else work.lake.tables.dataset(REGISTRY_TABLE.name, registry_version)
        )
        # The month and those after it, which the registry's event reads alone.
        gold = tables.read_months(GOLD_TABLE.name, [month, *following_months(plan.wanted)])
        if registry is not None and "data_cancelamento" in registry.schema.names:
            import pyarrow.compute as pc  # not with the code location: most runs skip this

            cancelled = registry.to_table(
                columns=["cnpj_fundo", "id_subclasse", "data_cancelamento"],
                filter=pc.field("data_cancelamento").is_valid(),
            )
            gold = registry_events(gold, spark.createDataFrame(cancelled))
        frame = alert_rows(
            gold.where(months_predicate([month])),
            tables.read_months(SILVER_TABLE.name, [month]),
            self.rules,
            PIPELINE_VERSION,
            now_utc(),
            tables.read_months(PARES_TABLE.name, peer_months) if peer_months else None,
        )
        # A month's alerts are tens of rows: they come to the driver to be named from the
        # registry (delta-rs reads it anywhere) and shown, and go back to Spark to be written.
        names = None if registry is None else registry.to_table(columns=REGISTRY_COLUMNS)
        named = with_registry(frame.toArrow(), names)

        def write(passed: Sequence[Plan]) -> dict[Month, Written]:
            version = tables.replace_months(
                ALERTS_TABLE.name,
                in_schema(spark.createDataFrame(named), OUTFLOW_ALERTS),
                [month],
                commit_metadata(passed),
                cluster_by=ALERTS_TABLE.cluster_by,
            ).version
            rows = named.to_pylist()
            by_rule = Counter(rule for r in rows for rule in r["regras"].split(","))
            metadata = {
                "dagster/row_count": len(rows),
                **_alert_metadata(by_rule, rows),
                "fund_registry": (
                    f"version {registry_version}"
                    if registry_version is not None
                    else "absent: alerts carry no names"
                ),
                "delta_version": version,
                "table": MetadataValue.path(tables.uri(ALERTS_TABLE.name)),
            }
            return {month: Written({"rows": len(rows), "by_rule": dict(by_rule)}, metadata)}

        yield Judged({month: []}, write)


def _alert_metadata(by_rule: dict[str, int], rows: list[dict[str, Any]]) -> dict[str, Any]:
    top = sorted(rows, key=lambda r: r["fluxo_liquido"])[:20]
    return {
        **{f"alerts_{rule}": by_rule.get(rule, 0) for rule in RULES},
        "alerts": markdown_table(
            [
                {**r, "fundo": fund_label(r), "saida_pct": f"{r['saida_liquida_pct_pl']:.2%}"}
                for r in top
            ],
            ["fundo", "gestor", "regras", "fluxo_liquido", "saida_pct", "explicacao"],
        ),
    }


class DeliveryConfig(Config):
    """Per run: `dry_run: true` renders what would be sent, sends nothing, records nothing."""

    dry_run: bool = False


@asset(
    deps=[ALERTS_ASSET],
    metadata={
        "dagster/column_schema": TableSchema(
            columns=[
                TableColumn("alert_id", "string", "The alert sent (outflow_alerts.alert_id)"),
                TableColumn("assessor", "string", "Advisor it went to (watchlist name)"),
                TableColumn("canal", "string", "email or webhook"),
                TableColumn("destino", "string", "Address or URL it went to"),
                TableColumn("cnpj_fundo", "string", "The fund, 14 digits"),
                TableColumn("id_subclasse", "string", "Subclass; NULL for the class"),
                TableColumn("dh_envio", "timestamp", "When it was sent (UTC)"),
                TableColumn("ano", "int", "Year of the alert's month"),
                TableColumn("mes", "int", "Month of the alert's month"),
            ]
        ),
        "dagster/table_name": DELIVERIES_TABLE.sql_name,
    },
    partitions_def=monthly_partitions,
    pool=MONTH_POOL,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="alerts",
    kinds={"delta"},
    description=(
        "The month's alerts sent to the advisors who watch the fund or its manager"
        " (CVM210_ALERTS_WATCHLIST), by e-mail and webhook. Each send is logged in the"
        " alert_deliveries table right after it succeeds, and never repeated; a failed send"
        " is due again on the next run."
    ),
)
def alert_deliveries(
    context: AssetExecutionContext,
    config: DeliveryConfig,
    lake: Lake,
    alert_delivery: AlertDelivery,
):
    yield from materialize_months(
        context,
        DELIVERIES_ASSET,
        (),
        lambda m: _deliver(context, config.dry_run, lake, alert_delivery, m),
    )


def _deliver(
    context: AssetExecutionContext,
    dry_run: bool,
    lake: Lake,
    channels: AlertDelivery,
    month: Month,
) -> MonthResult:
    tables = lake.tables  # deliveries run where Dagster runs, never on Spark
    advisors = channels.advisors()
    alerts = tables.read_month_arrow(ALERTS_TABLE.name, month)
    rows = [] if alerts is None else alerts.to_pylist()
    rows = [{**r, "ano": month.ano, "mes": month.mes} for r in rows]
    with lake.month_lock(month, owner=run_label(context)):
        due = plan(rows, advisors, delivered(tables, month))
        summary = {
            "alerts": len(rows),
            "advisors": len(advisors),
            "dry_run": dry_run,
            "due": len(due),
        }
        table = markdown_table(
            [
                {"assessor": d.advisor.name, "canal": d.channel, "destino": d.destination,
                 "fundo": fund_label(d.alert), "alert_id": d.alert["alert_id"]}
                for d in due
            ],
            ["assessor", "canal", "destino", "fundo", "alert_id"],
        )  # fmt: skip
        if dry_run:
            for d in due:
                rendered = (
                    email_text(email_message(d, channels.sender))
                    if d.channel == "email"
                    else webhook_body(d).decode()
                )
                context.log.info(f"dry run: would send to {d.destination}:\n{rendered}")
            return MonthResult(month, {**summary, "would_send": table, "sent": 0})
        secrets = channels.secrets(advisors)
        sent, failures = 0, []
        for d in due:
            try:
                channels.send(d, secrets)
            except DeliveryError as error:
                context.log.error(str(error))
                failures.append(str(error))
                continue
            # Recorded only now, and between sends: never while a send is in flight.
            record(tables, d, now_utc())
            sent += 1
            context.log.info(f"sent alert {d.alert['alert_id']} by {d.channel} to {d.advisor.name}")
    if failures:
        raise DeliveryError(
            f"{month}: {len(failures)} of {len(due)} sends failed ({sent} sent and logged); the"
            " next run retries them:\n" + "\n".join(failures)
        )
    return MonthResult(
        month,
        {
            **summary,
            "sent": sent,
            "deliveries": table,
            "delivery_log": MetadataValue.path(tables.uri(DELIVERIES_TABLE.name)),
        },
    )

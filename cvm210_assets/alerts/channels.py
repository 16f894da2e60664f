"""Resources of the alerts: the rules (read when the code location loads) and the delivery
channels (SMTP, webhooks) with the delivery log in the lake.

Credentials are read from the environment at the moment of sending (settings.secret) and never
stored in settings or a resource's configuration, so Dagster's UI, run config and logs never
hold them; any error text is scrubbed of them before it leaves this module.
"""

import datetime as dt
import smtplib
import ssl
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

import requests
from dagster import ConfigurableResource
from deltalake import write_deltalake

from cvm210_assets.alerts.config import Advisor, AlertRules, load_rules, load_watchlist
from cvm210_assets.alerts.messages import Delivery, email_message, webhook_body
from cvm210_assets.lake.table_catalog import DELIVERIES_TABLE
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.settings import SMTP_PASSWORD_VAR, AlertSettings, secret

if TYPE_CHECKING:
    import pyarrow as pa


@cache
def delivery_log_schema() -> "pa.Schema":
    """alert_deliveries' schema, built when first used: pyarrow (with numpy) is not imported
    when the code location loads, 0.15 s of every run, most of which send nothing."""
    import pyarrow as pa

    return pa.schema(
        [
            ("alert_id", pa.string()),
            ("assessor", pa.string()),
            ("canal", pa.string()),
            ("destino", pa.string()),
            ("cnpj_fundo", pa.string()),
            ("id_subclasse", pa.string()),
            ("dh_envio", pa.timestamp("us", tz="UTC")),
            ("ano", pa.int32()),
            ("mes", pa.int32()),
        ]
    )


class OutflowRules(ConfigurableResource):
    """The thresholds of the rules file (CVM210_ALERT_RULES) or the defaults, as plain values:
    they travel with the step wherever it runs (a Databricks cluster has no copy of the file)."""

    min_net_assets: str
    net_outflow_pct: str | None
    net_outflow_amount: str | None
    consecutive_outflow_days: int | None
    holders_drop_pct: str | None
    peer_percentile: str | None
    peer_percentile_months: int
    peer_group: str

    @classmethod
    def from_file(cls, path: str | None) -> "OutflowRules":
        rules = load_rules(path)
        return cls(
            min_net_assets=str(rules.min_net_assets),
            net_outflow_pct=_text(rules.net_outflow_pct),
            net_outflow_amount=_text(rules.net_outflow_amount),
            consecutive_outflow_days=rules.consecutive_outflow_days,
            holders_drop_pct=_text(rules.holders_drop_pct),
            peer_percentile=_text(rules.peer_percentile),
            peer_percentile_months=rules.peer_percentile_months,
            peer_group=rules.peer_group,
        )

    def rules(self) -> AlertRules:
        return AlertRules(
            min_net_assets=Decimal(self.min_net_assets),
            net_outflow_pct=_decimal(self.net_outflow_pct),
            net_outflow_amount=_decimal(self.net_outflow_amount),
            consecutive_outflow_days=self.consecutive_outflow_days,
            holders_drop_pct=_decimal(self.holders_drop_pct),
            peer_percentile=_decimal(self.peer_percentile),
            peer_percentile_months=self.peer_percentile_months,
            peer_group=self.peer_group,
        )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class DeliveryError(RuntimeError):
    """A send that failed; its text holds no credential."""


class AlertDelivery(ConfigurableResource):
    """SMTP and webhook delivery to the advisors of the watchlist file."""

    watchlist_file: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    sender: str = "cvm210@localhost"
    timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> "AlertDelivery":
        return cls(
            watchlist_file=alerts.watchlist_file,
            smtp_host=alerts.smtp_host,
            smtp_port=alerts.smtp_port,
            smtp_security=alerts.smtp_security,
            smtp_user=alerts.smtp_user,
            sender=alerts.sender,
        )

    def advisors(self) -> list[Advisor]:
        return load_watchlist(self.watchlist_file)

    def secrets(self, advisors: list[Advisor]) -> list[str]:
        """Every credential in play, to scrub from any text that could be shown."""
        names = [SMTP_PASSWORD_VAR, *(a.webhook_token_env for a in advisors if a.webhook_token_env)]
        return [value for value in map(secret, names) if value]

    def send(self, delivery: Delivery, secrets: list[str]) -> None:
        """Send one delivery or raise DeliveryError (scrubbed of `secrets`)."""
        try:
            if delivery.channel == "email":
                self._email(delivery)
            else:
                self._webhook(delivery)
        except (OSError, smtplib.SMTPException, requests.RequestException, DeliveryError) as error:
            to = f"{delivery.advisor.name} ({delivery.destination})"
            text = f"{delivery.channel} to {to} failed: {error}"
            raise DeliveryError(scrub(text, secrets)) from None

    def _email(self, delivery: Delivery) -> None:
        if not self.smtp_host:
            raise DeliveryError("no SMTP server: set CVM210_SMTP_HOST")
        message = email_message(delivery, self.sender)
        context = ssl.create_default_context()
        if self.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(
                self.smtp_host, self.smtp_port, timeout=self.timeout_seconds, context=context
            )
        else:
            client = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds)
        with client:
            if self.smtp_security == "starttls":
                client.starttls(context=context)
            if self.smtp_user:
                client.login(self.smtp_user, secret(SMTP_PASSWORD_VAR))
            client.send_message(message)

    def _webhook(self, delivery: Delivery) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            # Receivers can drop a repeat: a send whose log write was lost is sent again.
            "Idempotency-Key": f"{delivery.alert['alert_id']}:{delivery.advisor.name}",
        }
        token_env = delivery.advisor.webhook_token_env
        if token_env:
            token = secret(token_env)
            if not token:
                raise DeliveryError(f"{token_env} is not set (the webhook's bearer token)")
            headers["Authorization"] = f"Bearer {token}"
        response = requests.post(
            delivery.destination,
            data=webhook_body(delivery),
            headers=headers,
            timeout=self.timeout_seconds,
            allow_redirects=False,  # never carry the token to another address
        )
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}")


def scrub(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def delivered(tables: DeltaRsTables, month: Month) -> set[tuple[str, str, str]]:
    """(alert id, advisor, channel) of the month's successful sends."""
    log = tables.read_month_arrow(DELIVERIES_TABLE.name, month)
    if log is None:
        return set()
    return {(r["alert_id"], r["assessor"], r["canal"]) for r in log.to_pylist()}


def record(tables: DeltaRsTables, delivery: Delivery, sent_at: dt.datetime) -> None:
    """Append one successful send to the log: one small atomic commit, right after the send."""
    alert = delivery.alert
    row = {
        "alert_id": alert["alert_id"],
        "assessor": delivery.advisor.name,
        "canal": delivery.channel,
        "destino": delivery.destination,
        "cnpj_fundo": alert["cnpj_fundo"],
        "id_subclasse": alert["id_subclasse"],
        "dh_envio": sent_at,
        "ano": alert["ano"],
        "mes": alert["mes"],
    }
    import pyarrow as pa

    write_deltalake(
        tables.uri(DELIVERIES_TABLE.name),
        pa.Table.from_pylist([row], schema=delivery_log_schema()),
        mode="append",
        partition_by=list(DELIVERIES_TABLE.partition_by),
        storage_options=tables.options,
    )

"""What is sent to whom: registry names on alerts, routing to advisors, e-mails and webhook
bodies. Pure functions: the channels (alerts/channels.py) only carry what these render."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from cvm210_assets.alerts.config import Advisor

if TYPE_CHECKING:
    import pyarrow as pa

REGISTRY_COLUMNS = ("nome", "gestor", "cnpj_gestor", "administrador")


def with_registry(alerts: pa.Table, registry: pa.Table | None) -> pa.Table:
    """Alerts with the fund's name, manager and administrator from fund_registry: the
    subclass's own entry, else its class's (id_subclasse NULL); unknown funds keep NULLs."""
    if registry is None or alerts.num_rows == 0:
        return alerts
    entries: dict[tuple[str, str | None], dict[str, Any]] = {}
    # Newest entry last, so it wins when the registry repeats a key.
    rows = sorted(
        registry.to_pylist(),
        key=lambda r: (r.get("dh_atualizacao") is not None, r.get("dh_atualizacao") or 0),
    )
    for row in rows:
        entries[(row["cnpj_fundo"], row.get("id_subclasse"))] = row
    names = []
    for alert in alerts.to_pylist():
        entry = entries.get((alert["cnpj_fundo"], alert["id_subclasse"])) or entries.get(
            (alert["cnpj_fundo"], None), {}
        )
        names.append({**alert, **{c: entry.get(c) for c in REGISTRY_COLUMNS}})
    import pyarrow as pa  # not with the code location

    return pa.Table.from_pylist(names, schema=alerts.schema)


@dataclass(frozen=True)
class Delivery:
    """One alert to one advisor over one channel: the unit the delivery log records."""

    alert: Mapping[str, Any]
    advisor: Advisor
    channel: str  # "email" or "webhook"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.alert["alert_id"], self.advisor.name, self.channel)

    @property
    def destination(self) -> str:
        return str(self.advisor.email if self.channel == "email" else self.advisor.webhook)


def plan(
    alerts: Iterable[Mapping[str, Any]],
    advisors: Sequence[Advisor],
    delivered: set[tuple[str, str, str]],
) -> list[Delivery]:
    """Every (alert, advisor, channel) that is due: the advisor watches the fund or its manager,
    and the delivery log has no successful send of it."""
    due = []
    for alert in alerts:
        for advisor in advisors:
            if advisor.watches(alert):
                for channel in advisor.channels:
                    delivery = Delivery(alert, advisor, channel)
                    if delivery.key not in delivered:
                        due.append(delivery)
    return due


def format_cnpj(digits: str) -> str:
    d = digits
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}" if len(d) == 14 else d


def fund_label(alert: Mapping[str, Any]) -> str:
    """The fund as a person reads it: its name when the registry has it, and its CNPJ."""
    cnpj = format_cnpj(alert["cnpj_fundo"])
    subclass = f" subclass {alert['id_subclasse']}" if alert.get("id_subclasse") else ""
    return f"{alert['nome']} ({cnpj}{subclass})" if alert.get("nome") else f"{cnpj}{subclass}"


def month_key(alert: Mapping[str, Any]) -> str:
    return f"{alert['ano']:04d}-{alert['mes']:02d}"


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"R$ {value:,.2f}"


def email_message(delivery: Delivery, sender: str) -> EmailMessage:
    """A plain-text e-mail: what crossed which rule, with the numbers behind it."""
    alert = delivery.alert
    message = EmailMessage()
    message["From"] = sender
    message["To"] = delivery.destination
    message["Subject"] = f"cvm210 alert {month_key(alert)}: {fund_label(alert)}"
    message["X-Cvm210-Alert-Id"] = alert["alert_id"]
    lines = [
        f"Hello {delivery.advisor.name},",
        "",
        f"{fund_label(alert)} crossed {len(alert['detalhes'])} outflow rule(s) in"
        f" {month_key(alert)} ({alert['dt_inicio']} to {alert['dt_fim']}):",
        "",
        *(f"- {d['regra']}: {d['texto']}" for d in alert["detalhes"]),
        "",
        f"Manager: {alert.get('gestor') or 'unknown'}",
        f"Administrator: {alert.get('administrador') or 'unknown'}",
        f"Net assets: {_money(alert['patrimonio_inicial'])} on {alert['dt_inicio']},"
        f" {_money(alert['patrimonio_final'])} on {alert['dt_fim']}",
        f"Net flow: {_money(alert['fluxo_liquido'])}"
        f" (gross outflow {_money(alert['total_resgate'])})",
        f"Holders: {alert['cotistas_inicial']} -> {alert['cotistas_final']}",
        "",
        f"Alert {alert['alert_id']}, from CVM's daily fund reports (cvm210).",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


def email_text(message: EmailMessage) -> str:
    """An e-mail as a person reads it (headers unfolded, body decoded), for dry runs."""
    headers = [f"{name}: {message[name]}" for name in ("From", "To", "Subject")]
    return "\n".join(headers) + "\n\n" + message.get_content()


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, as the lake holds it
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def webhook_payload(delivery: Delivery) -> dict[str, Any]:
    """The JSON a CRM receives: the alert, its explanation and the fund, money as strings."""
    alert = delivery.alert
    return {
        "alert_id": alert["alert_id"],
        "advisor": delivery.advisor.name,
        "month": month_key(alert),
        "window": {"start": _json_value(alert["dt_inicio"]), "end": _json_value(alert["dt_fim"])},
        "fund": {
            "cnpj": alert["cnpj_fundo"],
            "id_subclasse": alert["id_subclasse"],
            "label": fund_label(alert),
            **{
                c: alert.get(c)
                for c in ("nome", "tp_fundo", "gestor", "cnpj_gestor", "administrador")
            },
        },
        "rules": [
            {"rule": d["regra"], "value": d["valor"], "threshold": d["limite"], "text": d["texto"]}
            for d in alert["detalhes"]
        ],
        "explanation": alert["explicacao"],
        "values": {
            c: _json_value(alert[c])
            for c in (
                "patrimonio_inicial",
                "patrimonio_final",
                "fluxo_liquido",
                "total_resgate",
                "saida_liquida_pct_pl",
                "dias_consecutivos_saida",
                "cotistas_inicial",
                "cotistas_final",
            )
        },
    }


def webhook_body(delivery: Delivery) -> bytes:
    return json.dumps(webhook_payload(delivery), ensure_ascii=False).encode("utf-8")

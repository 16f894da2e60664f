"""Outflow alerts end to end: the fake CVM, the pipeline, alerts, deliveries to a real SMTP
server and an HTTP receiver on 127.0.0.1, the dedup, the dry run, retries, the report."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from dagster import ExecuteInProcessResult, materialize
from deltalake import write_deltalake

from cvm210_assets.alerts.channels import AlertDelivery
from cvm210_assets.assets.alerts import outflow_alerts
from cvm210_assets.assets.breakdowns import gold_breakdowns
from cvm210_assets.cli import main
from cvm210_assets.definitions import ALERT_ASSETS
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.partitions import Month
from cvm210_assets.report import report_data
from cvm210_assets.transforms.registry import arrow_schema
from cvm210_assets_tests.conftest import (
    Pipeline,
    free_port,
    make_pipeline,
    materialization_metadata,
)
from cvm210_assets_tests.expectations import over_tolerance
from cvm210_assets_tests.reference import expected_month

PLANTED = "planted-SECRET-5b1e0c77"
MONTH = "2024-03"
FUND_NAME = "Fundo Alfa Portabilidade FIC FIM"
MANAGER = "Gestora Alfa Ltda"
TOKEN_ENV = "CVM210_TEST_WEBHOOK_TOKEN"
# The test SMTP server takes AUTH without TLS (it has no certificate); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


# --- the receivers ------------------------------------------------------------------------


@dataclass
class Mailbox:
    """A real SMTP server (aiosmtpd) that requires AUTH with the planted password."""

    user: str
    password: str
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user.encode(),
            self.password.encode(),
        )
        self.logins.append(data.login if isinstance(data, LoginPassword) else b"?")
        return AuthResult(success=ok, handled=False)  # handled=False: answer 535 on failure


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Mailbox, int]]:
    password = f"smtp-{PLANTED}"
    monkeypatch.setenv("CVM210_SMTP_PASSWORD", password)
    mailbox = Mailbox("cvm210", password)
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_required=True,
        auth_require_tls=False,  # the test server has no certificate; production uses STARTTLS
    )
    controller.start()
    yield mailbox, port
    controller.stop()


@dataclass
class Webhook:
    """An HTTP receiver: records each POST; answers the statuses queued in `fail`, else 204."""

    received: list[dict[str, Any]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    monkeypatch.setenv(TOKEN_ENV, f"token-{PLANTED}")
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = hook.fail.pop(0) if hook.fail else 204
            hook.received.append(
                {"path": self.path, "headers": dict(self.headers), "body": body, "status": status}
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/crm/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


# --- the month, the registry, the watchlist -----------------------------------------------


@dataclass(frozen=True)
class Crafted:
    csv: bytes
    target: str  # the fund that loses 10 %, 14 digits
    small: str  # a fund below the size floor that loses 20 %
    quiet: str  # a fund with no alert, watched by Bruno


def _digits(cnpj: str) -> str:
    return cnpj.replace(".", "").replace("/", "").replace("-", "")


def lose(lines: list[str], cnpj: str, share: Decimal) -> None:
    """Rewrite the fund's rows (layout b): no inflows; from its second report on, redemptions
    that add up to `share` of its net assets on the first report, net assets falling with them."""
    rows = [i for i, line in enumerate(lines) if line and line.split(";")[1] == cnpj]
    start = Decimal(lines[rows[0]].split(";")[5])
    total = (start * share).quantize(Decimal("0.01"))
    daily = (total / (len(rows) - 1)).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    redeemed = Decimal(0)
    for n, i in enumerate(rows):
        fields = lines[i].split(";")
        outflow = Decimal(0) if n == 0 else daily if n < len(rows) - 1 else total - redeemed
        redeemed += outflow
        fields[5] = f"{start - redeemed:.2f}"
        fields[6], fields[7] = "0.00", f"{outflow:.2f}"
        lines[i] = ";".join(fields)


def crafted_month() -> Crafted:
    """A generated month (no fund crosses the default rules: checked by the oracle below) in
    which the largest fund loses 10 % of its net assets and a small one 20 %."""
    lines = generate_month(MonthSpec(2024, 3, "b", n_funds=30, seed=1)).decode("latin-1")
    lines = lines.split("\n")
    first_pl: dict[str, Decimal] = {}
    for line in lines[1:-1]:
        fields = line.split(";")
        first_pl.setdefault(fields[1], Decimal(fields[5]))
    by_size = sorted(first_pl, key=first_pl.__getitem__)
    target, small, quiet = by_size[-1], by_size[0], by_size[-2]
    assert first_pl[small] < Decimal("10000000") <= first_pl[target]
    lose(lines, target, Decimal("0.10"))
    lose(lines, small, Decimal("0.20"))
    return Crafted("\n".join(lines).encode("latin-1"), *map(_digits, (target, small, quiet)))


REGISTRY_SCHEMA = pa.schema(
    [
        ("cnpj_fundo", pa.string()),
        ("id_subclasse", pa.string()),
        ("nome", pa.string()),
        ("tipo", pa.string()),
        ("classe", pa.string()),
        ("classe_anbima", pa.string()),
        ("gestor", pa.string()),
        ("cnpj_gestor", pa.string()),
        ("administrador", pa.string()),
        ("cnpj_administrador", pa.string()),
        ("situacao", pa.string()),
        ("fundo_de_cotas", pa.bool_()),
        ("fonte", pa.string()),
        ("dh_atualizacao", pa.timestamp("us", tz="UTC")),
    ]
)


def write_registry(pipeline: Pipeline, month: Crafted) -> None:
    """A tiny fund_registry in the other team's contract: the target and the quiet fund."""

    def entry(cnpj: str, nome: str) -> dict[str, Any]:
        return {
            "cnpj_fundo": cnpj,
            "nome": nome,
            "tipo": "FI",
            "classe": "Multimercado",
            "gestor": MANAGER,
            "cnpj_gestor": "12345678000195",
            "administrador": "Administradora Beta S.A.",
            "situacao": "EM FUNCIONAMENTO NORMAL",
            "fundo_de_cotas": True,
            "fonte": "registro_fundo_classe",
        }

    rows = [entry(month.target, FUND_NAME), entry(month.quiet, "Fundo Quieto FIM")]
    write_deltalake(
        pipeline.tables.uri("fund_registry"),
        pa.Table.from_pylist(rows, schema=REGISTRY_SCHEMA),
        storage_options=pipeline.tables.options,
    )


def watchlist(path: Path, hook: Webhook, quiet: str) -> str:
    """Ana watches the manager (e-mail and webhook); Bruno watches a fund with no alert."""
    path.write_text(
        f"""advisors:
  - name: Ana Souza
    email: ana.souza@example.com.br
    webhook: {hook.url}
    webhook_token_env: {TOKEN_ENV}
    managers: ["{MANAGER.upper()}"]
  - name: Bruno Lima
    email: bruno.lima@example.com.br
    cnpjs: ["{quiet}"]
"""
    )
    return str(path)


def delivery(watchlist_file: str, port: int) -> AlertDelivery:
    return AlertDelivery(
        watchlist_file=watchlist_file,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_user="cvm210",
        sender="alertas@cvm210.example.com.br",
    )


def run_alerts(
    pipeline: Pipeline,
    channels: AlertDelivery,
    dry_run: bool = False,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    return materialize(
        ALERT_ASSETS,
        partition_key=MONTH,
        resources={**pipeline.resources, "alert_delivery": channels},
        instance=pipeline.instance,
        run_config={"ops": {"alert_deliveries": {"config": {"dry_run": dry_run}}}},
        raise_on_error=raise_on_error,
    )


def log_rows(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    return sorted(
        (r["alert_id"], r["assessor"], r["canal"]) for r in pipeline.rows("alert_deliveries", MONTH)
    )


# --- done when ----------------------------------------------------------------------------


def test_a_fund_losing_10_percent_is_one_alert_one_email_one_webhook_and_tops_the_report(
    pipeline: Pipeline, fake_cvm: FakeCvm, smtp, webhook: Webhook, tmp_path: Path
) -> None:
    mailbox, port = smtp
    month = crafted_month()
    oracle = {g.cnpj_fundo: g for g in expected_month(month.csv, 2024, 3).gold}
    assert min(oracle.values(), key=lambda g: g.fluxo_liquido).cnpj_fundo == month.target
    fake_cvm.publish_month(2024, 3, month.csv)
    pipeline.run(MONTH)
    write_registry(pipeline, month)
    channels = delivery(watchlist(tmp_path / "watchlist.yaml", webhook, month.quiet), port)

    first = run_alerts(pipeline, channels)

    (alert,) = pipeline.rows("outflow_alerts", MONTH)
    assert alert["cnpj_fundo"] == month.target
    assert (alert["nome"], alert["gestor"]) == (FUND_NAME, MANAGER)
    assert alert["regras"] == "net_outflow_pct,consecutive_outflow_days"
    assert alert["fluxo_liquido"] == oracle[month.target].fluxo_liquido
    assert alert["fluxo_liquido"] == -(alert["patrimonio_inicial"] * Decimal("0.10")).quantize(
        Decimal("0.01")
    )
    assert "is 10.00 % of the net assets" in alert["explicacao"]
    metadata = materialization_metadata(first, "outflow_alerts")
    assert metadata["alerts_net_outflow_pct"] == 1
    assert metadata["alerts_net_outflow_amount"] == 0
    assert FUND_NAME in metadata["alerts"]

    (mail,) = mailbox.messages
    assert mail["To"] == "ana.souza@example.com.br"
    assert FUND_NAME in mail["Subject"]
    assert alert["explicacao"].split(" (rule")[0] in mail.get_content()
    (call,) = webhook.received
    assert call["path"] == "/crm/alerts"
    assert call["headers"]["Authorization"] == f"Bearer token-{PLANTED}"
    payload = json.loads(call["body"])
    assert payload["fund"]["nome"] == FUND_NAME
    assert payload["advisor"] == "Ana Souza"
    assert payload["values"]["fluxo_liquido"] == str(alert["fluxo_liquido"])
    assert log_rows(pipeline) == [
        (alert["alert_id"], "Ana Souza", "email"),
        (alert["alert_id"], "Ana Souza", "webhook"),
    ]
    assert materialization_metadata(first, "alert_deliveries")["sent"] == 2

    again = run_alerts(pipeline, channels)

    assert len(mailbox.messages) == 1 and len(webhook.received) == 1
    assert materialization_metadata(again, "outflow_alerts")["cvm210/unchanged"] is True
    assert materialization_metadata(again, "alert_deliveries")["due"] == 0

    out = tmp_path / "report.html"
    assert main(["report", "--month", MONTH, "--lake", pipeline.settings.lake_uri,
                 "--out", str(out)]) == 0  # fmt: skip
    page = Page.parse(out.read_text(encoding="utf-8"))
    outflows, alerts, residuals = page.tables
    assert outflows[1][:3] == ["1", FUND_NAME, format_cnpj(month.target)]
    assert alerts[1][0] == FUND_NAME
    # The crafted fund's net assets fall by its redemptions alone while its quota keeps its
    # generated return: its flows do not reconcile (the oracle agrees), and the report says so.
    over = over_tolerance(expected_month(month.csv, 2024, 3).gold)
    assert [g.cnpj_fundo for g in over] == [month.target]
    assert residuals[1][:2] == [FUND_NAME, format_cnpj(month.target)]
    assert residuals[1][5] == f"{over[0].residuo_conciliacao:,.2f}"
    assert page.external == []
    (image,) = page.images
    assert (
        base64.b64decode(image.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    )


def format_cnpj(d: str) -> str:
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}"


class Page(HTMLParser):
    """The report as a browser would load it: its tables' cells, images, outside references."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Page:
        page = cls()
        page.feed(text)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "link", "iframe", "object"):
            self.external.append(tag)
        for name in ("src", "href"):
            value = values.get(name) or ""
            if value and not value.startswith("data:"):
                self.external.append(value)
        if tag == "img":
            self.images.append(values.get("src") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


# --- delivery on a lake with alerts already computed --------------------------------------


@pytest.fixture(scope="module")
def alerted_lake(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Crafted]:
    """One pipeline run and one alerts run, shared: each test delivers from its own copy."""
    month = crafted_month()
    lake = str(tmp_path_factory.mktemp("alerted") / "lake")
    with FakeCvm() as fake:
        fake.publish_month(2024, 3, month.csv)
        pipeline = make_pipeline(lake, fake.base_url)
        pipeline.run(MONTH)
    write_registry(pipeline, month)
    materialize([ALERT_ASSETS[0]], partition_key=MONTH, resources=pipeline.resources,
                instance=pipeline.instance)  # fmt: skip
    return lake, month


@pytest.fixture
def copied(alerted_lake: tuple[str, Crafted], tmp_path: Path) -> tuple[Pipeline, Crafted]:
    lake, month = alerted_lake
    shutil.copytree(lake, tmp_path / "lake")
    return make_pipeline(str(tmp_path / "lake"), "http://127.0.0.1:1"), month


def deliver(pipeline: Pipeline, channels: AlertDelivery, **options: Any) -> ExecuteInProcessResult:
    return materialize(
        [ALERT_ASSETS[1]],
        partition_key=MONTH,
        resources={**pipeline.resources, "alert_delivery": channels},
        instance=pipeline.instance,
        run_config={"ops": {"alert_deliveries": {"config": options}}},
        raise_on_error=False,
    )


def test_dry_run_renders_what_would_be_sent_and_sends_and_records_nothing(
    copied, smtp, webhook: Webhook, tmp_path: Path
) -> None:
    pipeline, month = copied
    mailbox, port = smtp
    channels = delivery(watchlist(tmp_path / "w.yaml", webhook, month.quiet), port)

    dry = deliver(pipeline, channels, dry_run=True)

    assert dry.success
    assert mailbox.messages == [] and webhook.received == []
    assert pipeline.tables.version("alert_deliveries") is None
    metadata = materialization_metadata(dry, "alert_deliveries")
    assert (metadata["dry_run"], metadata["due"], metadata["sent"]) == (True, 2, 0)
    assert "ana.souza@example.com.br" in metadata["would_send"]
    rendered = [
        r.user_message
        for r in pipeline.instance.all_logs(dry.run_id)
        if "dry run" in r.user_message
    ]
    assert len(rendered) == 2
    assert any(f"Subject: cvm210 alert 2024-03: {FUND_NAME}" in m for m in rendered)
    assert any('"nome": "Fundo Alfa Portabilidade FIC FIM"' in m for m in rendered)

    assert deliver(pipeline, channels).success
    assert len(mailbox.messages) == 1 and len(webhook.received) == 1


def test_a_failed_webhook_fails_the_step_keeps_the_alert_and_is_retried_next_run(
    copied, smtp, webhook: Webhook, tmp_path: Path
) -> None:
    pipeline, month = copied
    mailbox, port = smtp
    channels = delivery(watchlist(tmp_path / "w.yaml", webhook, month.quiet), port)
    webhook.fail = [503]

    failed = deliver(pipeline, channels)

    assert not failed.success
    (alert,) = pipeline.rows("outflow_alerts", MONTH)
    assert len(mailbox.messages) == 1 and len(webhook.received) == 1
    assert log_rows(pipeline) == [(alert["alert_id"], "Ana Souza", "email")]
    errors = [r.user_message for r in pipeline.instance.all_logs(failed.run_id)]
    assert any("webhook to Ana Souza" in m and "HTTP 503" in m for m in errors)

    retried = deliver(pipeline, channels)

    assert retried.success
    assert len(mailbox.messages) == 1  # the e-mail is not sent twice
    assert [c["status"] for c in webhook.received] == [503, 204]
    assert webhook.received[0]["body"] == webhook.received[1]["body"]
    assert log_rows(pipeline) == [
        (alert["alert_id"], "Ana Souza", "email"),
        (alert["alert_id"], "Ana Souza", "webhook"),
    ]
    assert materialization_metadata(retried, "alert_deliveries")["sent"] == 1


def test_planted_delivery_credentials_appear_nowhere(
    copied, smtp, webhook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, month = copied
    mailbox, port = smtp
    channels = delivery(watchlist(tmp_path / "w.yaml", webhook, month.quiet), port)
    results = [deliver(pipeline, channels, dry_run=True)]
    # Both sends fail: the server refuses the login, the webhook answers 500. The errors name
    # the server's answers, never the password tried or the token sent.
    right = os.environ["CVM210_SMTP_PASSWORD"]
    monkeypatch.setenv("CVM210_SMTP_PASSWORD", f"wrong-{PLANTED}")
    webhook.fail = [500]
    results.append(deliver(pipeline, channels))
    monkeypatch.setenv("CVM210_SMTP_PASSWORD", right)
    results.append(deliver(pipeline, channels))

    assert [r.success for r in results] == [True, False, True]
    assert set(mailbox.logins) == {b"cvm210"}  # smtplib tries PLAIN, then LOGIN
    assert len(mailbox.messages) == 1
    assert [c["status"] for c in webhook.received] == [500, 204]
    seen: list[str] = [repr(channels), repr(pipeline.resources)]
    for result in results:
        seen += [repr(r) for r in pipeline.instance.all_logs(result.run_id)]
    for path in Path(pipeline.settings.lake_uri).rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    seen += [m.as_string() for m in mailbox.messages]
    seen += [c["body"].decode() for c in webhook.received]
    everything = "\n".join(seen)
    for sample in ("HTTP 500", "Authentication", "dry run: would send", FUND_NAME):
        assert sample in everything, sample
    assert [text[:200] for text in seen if PLANTED in text] == []


def test_a_fund_the_registry_cancelled_after_its_last_month_is_an_event_not_an_alert(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    """The crafted fund's March is its last month in the lake and the registry cancelled it on
    April 15th: an encerramento (docs/events.md). Not alerted, its flow counted in the
    breakdowns' fluxo_eventos, listed among the report's events."""
    month = crafted_month()
    oracle = {g.cnpj_fundo: g for g in expected_month(month.csv, 2024, 3).gold}
    fake_cvm.publish_month(2024, 3, month.csv)
    pipeline.run(MONTH)
    rows = [
        {"cnpj_fundo": month.target, "nome": FUND_NAME, "gestor": MANAGER,
         "situacao": "CANCELADA", "data_situacao": dt.date(2024, 4, 15),
         "data_cancelamento": dt.date(2024, 4, 15)},
        {"cnpj_fundo": month.quiet, "nome": "Fundo Quieto FIM", "gestor": MANAGER,
         "situacao": "EM FUNCIONAMENTO NORMAL", "data_situacao": dt.date(2020, 1, 2)},
    ]  # fmt: skip
    write_deltalake(
        pipeline.tables.uri("fund_registry"),
        pa.Table.from_pylist(rows, schema=arrow_schema()),
        storage_options=pipeline.tables.options,
    )

    materialize(
        [gold_breakdowns, outflow_alerts],
        partition_key=MONTH,
        resources=pipeline.resources,
        instance=pipeline.instance,
    )

    assert pipeline.rows("outflow_alerts", MONTH) == []
    (market,) = [
        r
        for r in pipeline.rows("gold_breakdowns", MONTH)
        if (r["escopo"], r["dimensao"]) == ("todos", "mercado")
    ]
    flow = oracle[month.target].fluxo_liquido
    assert market["fluxo_eventos"] == flow < 0
    assert market["fluxo_organico"] == market["fluxo_liquido"] - flow
    events = report_data(pipeline.tables, Month.from_key(MONTH))["events"]
    assert [(e["cnpj_fundo"], e["evento"], e["nome"]) for e in events] == [
        (month.target, "encerramento", FUND_NAME)
    ]

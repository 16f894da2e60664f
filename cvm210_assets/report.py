"""`cvm210 report`: the month's portability report as one self-contained HTML file.

No scripts, stylesheets or images from elsewhere: the chart is a PNG inside the page (base64),
so the file opens offline, from an e-mail attachment or a shared folder. The numbers come from
the lake through the same DuckDB views as `cvm210 sql`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import duckdb

from cvm210_assets.gold_rules import (
    ENCERRAMENTO,
    PARES_MINIMO,
    PEER_GROUPS,
    SUCESSAO,
    TOLERANCIA_MINIMA,
    TOLERANCIA_PCT_PL,
    TRANSFERENCIA,
)
from cvm210_assets.lake.table_catalog import (
    ALERTS_TABLE,
    GOLD_FUNDOS_VIEW,
    GOLD_TABLE,
    PARES_TABLE,
    REGISTRY_TABLE,
)
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.sql.duckdb_engine import connect, run

TOP = 20
EVENT_WORDS = {
    TRANSFERENCIA: "transfer (transferência)",
    SUCESSAO: "succession (sucessão)",
    ENCERRAMENTO: "liquidation (encerramento)",
}


# The tables the report reads, by the names `cvm210 sql` registers them under.
GOLD, REGISTRY, ALERTS = GOLD_TABLE.name, REGISTRY_TABLE.name, ALERTS_TABLE.name
PARES = PARES_TABLE.name


# A fund-month whose flows do not reconcile (docs/analytics.md), as gold's check judges it.
NOT_RECONCILED = (
    f"abs(g.residuo_conciliacao) > greatest(g.patrimonio_medio * {TOLERANCIA_PCT_PL},"
    f" {TOLERANCIA_MINIMA})"
)


class ReportError(ValueError):
    """The lake cannot give the month's report (no gold for it yet)."""


def _names_join(has_registry: bool) -> tuple[str, str]:
    """Registry columns and joins: the subclass's own entry, else its class's."""
    if not has_registry:
        return "NULL AS nome, NULL AS gestor", ""
    latest = (
        f"(SELECT * FROM {REGISTRY} QUALIFY row_number() OVER"
        " (PARTITION BY cnpj_fundo, id_subclasse ORDER BY dh_atualizacao DESC NULLS LAST) = 1)"
    )
    return (
        "coalesce(r1.nome, r2.nome) AS nome, coalesce(r1.gestor, r2.gestor) AS gestor",
        f" LEFT JOIN {latest} r1 ON r1.cnpj_fundo = g.cnpj_fundo"
        " AND r1.id_subclasse IS NOT DISTINCT FROM g.id_subclasse"
        f" LEFT JOIN {latest} r2 ON r2.cnpj_fundo = g.cnpj_fundo AND r2.id_subclasse IS NULL",
    )


def _peers_join(has_peers: bool) -> tuple[str, str]:
    """gold_pares' percentiles and peer counts of each gold row (NULL before it exists)."""
    columns = [f"{m}_{g}" for g in PEER_GROUPS for m in ("percentil", "pares")]
    if not has_peers:
        return ", ".join(f"NULL AS {c}" for c in columns), ""
    return ", ".join(f"p.{c}" for c in columns), (
        f" LEFT JOIN {PARES} p ON p.ano = g.ano AND p.mes = g.mes AND p.cnpj_fundo = g.cnpj_fundo"
        " AND p.id_subclasse IS NOT DISTINCT FROM g.id_subclasse"
    )


def report_data(tables: DeltaRsTables, month: Month) -> dict[str, Any]:
    """The month's figures, largest net outflows (with names when fund_registry exists), the
    market's net flow over the 12 months ending with it, the month's alerts and its events
    (fund-months whose flows moved between keys, docs/events.md)."""
    con = connect(tables)
    views = {r[0] for r in run(con, "SELECT table_name FROM information_schema.tables")[1]}
    if GOLD not in views:
        raise ReportError(f"the lake has no {GOLD} yet: run the pipeline first")
    where = f"g.ano = {month.ano} AND g.mes = {month.mes}"
    columns, rows = run(
        con,
        "SELECT count(*) AS fundos, sum(total_captacao) AS captacao, sum(total_resgate) AS resgate,"
        " sum(fluxo_liquido) AS fluxo, count_if(fluxo_liquido < 0) AS em_saida"
        f" FROM {GOLD} g WHERE {where}",
    )
    summary = dict(zip(columns, rows[0], strict=True))
    if not summary["fundos"]:
        raise ReportError(f"{GOLD} has no rows for {month}: materialize {month} first")
    names, joins = _names_join(REGISTRY in views)
    standing, peers = _peers_join(PARES in views)
    columns, rows = run(
        con,
        f"SELECT g.cnpj_fundo, g.id_subclasse, {names}, g.fluxo_liquido, g.total_resgate,"
        f" g.patrimonio_inicial, g.fluxo_liquido_pct_pl, g.variacao_cotistas, {standing}"
        f" FROM {GOLD} g{joins}{peers} WHERE {where} AND g.fluxo_liquido < 0"
        f" ORDER BY g.fluxo_liquido, g.cnpj_fundo LIMIT {TOP}",
    )
    outflows = [dict(zip(columns, r, strict=True)) for r in rows]
    events: list[dict[str, Any]] = []
    if "evento" in _columns(con, GOLD):  # a gold written before events has none
        # With the registry, gold_fundos adds its event (encerramento) to gold's.
        source, evento = (
            (GOLD_FUNDOS_VIEW.sql_name, "coalesce(g.evento, g.evento_registro)")
            if REGISTRY in views
            else (GOLD, "g.evento")
        )
        columns, rows = run(
            con,
            f"SELECT g.cnpj_fundo, g.id_subclasse, {names}, {evento} AS evento,"
            " g.contraparte_cnpj, g.contraparte_id_subclasse, g.fluxo_liquido"
            f" FROM {source} g{joins} WHERE {where} AND {evento} IS NOT NULL"
            " ORDER BY g.fluxo_liquido, g.cnpj_fundo, g.id_subclasse",
        )
        events = [dict(zip(columns, r, strict=True)) for r in rows]
    first = month.shift(-11)
    columns, rows = run(
        con,
        "SELECT ano, mes, sum(total_captacao) AS captacao, sum(total_resgate) AS resgate,"
        f" sum(fluxo_liquido) AS fluxo FROM {GOLD}"
        f" WHERE ano * 12 + mes BETWEEN {first.ano * 12 + first.mes}"
        f" AND {month.ano * 12 + month.mes} GROUP BY ano, mes ORDER BY ano, mes",
    )
    trend = {(r[0], r[1]): dict(zip(columns, r, strict=True)) for r in rows}
    alerts: list[dict[str, Any]] = []
    if ALERTS in views:
        columns, rows = run(
            con,
            "SELECT cnpj_fundo, id_subclasse, nome, gestor, regras, explicacao, fluxo_liquido"
            f" FROM {ALERTS} g WHERE {where} ORDER BY fluxo_liquido, cnpj_fundo",
        )
        alerts = [dict(zip(columns, r, strict=True)) for r in rows]
    return {
        "summary": summary,
        "outflows": outflows,
        "residuals": _residuals(con, where, names, joins),
        "trend": [(m, trend.get((m.ano, m.mes))) for m in (first.shift(k) for k in range(12))],
        "alerts": alerts,
        "events": events,
    }


def _columns(con: Any, table: str) -> set[str]:
    return {
        r[0]
        for r in run(
            con,
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'",
        )[1]
    }


def _residuals(
    con: duckdb.DuckDBPyConnection, where: str, names: str, joins: str
) -> list[dict[str, Any]] | None:
    """The month's fund-months whose flows do not reconcile, largest |residual| first; None
    when gold predates the reconciliation (a lake not yet recomputed has no such columns)."""
    columns = {
        r[0]
        for r in run(
            con, f"SELECT column_name FROM information_schema.columns WHERE table_name = '{GOLD}'"
        )[1]
    }
    if "residuo_conciliacao" not in columns:
        return None
    columns, rows = run(
        con,
        f"SELECT g.cnpj_fundo, g.id_subclasse, {names}, g.fluxo_liquido, g.rendimento,"
        " g.residuo_conciliacao, g.residuo_pct_pl"
        f" FROM {GOLD} g{joins} WHERE {where} AND {NOT_RECONCILED}"
        f" ORDER BY abs(g.residuo_conciliacao) DESC, g.cnpj_fundo LIMIT {TOP}",
    )
    return [dict(zip(columns, r, strict=True)) for r in rows]


def net_flow_chart(trend: Sequence[tuple[Month, dict[str, Any] | None]]) -> bytes:
    """The market's monthly net flow as bars (outflow red), inflow and outflow as lines: PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [m.key for m, _ in trend]
    nan = float("nan")

    def series(name: str) -> list[float]:
        # Plotting only: the figures in the tables stay exact.
        return [nan if t is None else float(t[name]) / 1e6 for _, t in trend]

    net = series("fluxo")
    axes.bar(labels, net, color=["#c0392b" if v < 0 else "#27ae60" for v in net], label="net flow")
    axes.plot(labels, series("captacao"), marker="o", color="#2980b9", label="inflow")
    axes.plot(labels, series("resgate"), marker="o", color="#8e44ad", label="outflow")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axes.set_ylabel("R$ million")
    axes.tick_params(axis="x", labelrotation=45)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title("Market net flow, last 12 months", loc="left", fontsize=10)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


def _cnpj(digits: str, subclass: str | None) -> str:
    d = digits
    text = f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}" if len(d) == 14 else d
    return f"{text} / {subclass}" if subclass else text


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _percentile(row: dict[str, Any], group: str) -> str:
    """The fund's percentile in its group and the group's size, e.g. `3.45 % of 120`."""
    value, peers = row[f"percentil_{group}"], row[f"pares_{group}"]
    return "" if value is None else f"{value * 100:.2f} % of {peers}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i in numeric else ''}>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures span { display: inline-block; margin-right: 2em; } img { max-width: 100%; }
.note { color: #666; font-size: 0.85em; }
"""


def render_report(month: Month, data: dict[str, Any], generated: dt.datetime) -> str:
    """The report as one HTML page with everything inline."""
    s = data["summary"]
    chart = base64.b64encode(net_flow_chart(data["trend"])).decode("ascii")
    outflows = _table(
        ["#", "Fund", "CNPJ", "Manager", "Net flow (R$)", "Gross outflow (R$)",
         "Net assets at start (R$)", "Net flow / avg net assets", "Holders",
         "Percentile in class", "Percentile in manager"],
        [
            (n, r["nome"] or "", _cnpj(r["cnpj_fundo"], r["id_subclasse"]), r["gestor"] or "",
             _money(r["fluxo_liquido"]), _money(r["total_resgate"]),
             _money(r["patrimonio_inicial"]),
             "" if r["fluxo_liquido_pct_pl"] is None else f"{r['fluxo_liquido_pct_pl']:.2%}",
             "" if r["variacao_cotistas"] is None else f"{r['variacao_cotistas']:+d}",
             _percentile(r, "classe"), _percentile(r, "gestor"))
            for n, r in enumerate(data["outflows"], start=1)
        ],
        numeric={0, 4, 5, 6, 7, 8, 9, 10},
    )  # fmt: skip
    alert_rows = [
        (a["nome"] or "", _cnpj(a["cnpj_fundo"], a["id_subclasse"]), a["gestor"] or "",
         a["regras"], _money(a["fluxo_liquido"]), a["explicacao"])
        for a in data["alerts"]
    ]  # fmt: skip
    headers = ["Fund", "CNPJ", "Manager", "Rules", "Net flow (R$)", "Why"]
    alerts = (
        _table(headers, alert_rows, numeric={4})
        if alert_rows
        else "<p>No fund crossed an outflow rule this month.</p>"
    )
    event_rows = [
        (e["nome"] or "", _cnpj(e["cnpj_fundo"], e["id_subclasse"]), EVENT_WORDS[e["evento"]],
         _cnpj(e["contraparte_cnpj"], e["contraparte_id_subclasse"])
         if e["contraparte_cnpj"] else "none" if e["evento"] == ENCERRAMENTO else "unknown",
         _money(e["fluxo_liquido"]))
        for e in data["events"]
    ]  # fmt: skip
    events = (
        _table(["Fund", "CNPJ", "Event", "Counterpart", "Net flow (R$)"], event_rows, {4})
        if event_rows
        else "<p>No event this month.</p>"
    )
    residuals = _residuals_section(data["residuals"])
    title = f"Portability report {month.key}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head>
<body>
<h1>{title}</h1>
<p class="figures"><span>Funds reporting: <b>{s["fundos"]:,}</b></span>
<span>Inflow: <b>R$ {_money(s["captacao"])}</b></span>
<span>Outflow: <b>R$ {_money(s["resgate"])}</b></span>
<span>Net flow: <b>R$ {_money(s["fluxo"])}</b></span>
<span>Funds in net outflow: <b>{s["em_saida"]:,}</b></span></p>
<h2>Largest net outflows</h2>
{outflows}
<p class="note">Percentile: the share of the fund's class (of its manager's funds) whose net
flow over average net assets was worse this month, of so many funds; 0 % is the worst, empty
below {PARES_MINIMO} funds or before gold_breakdowns has run (docs/peers.md).</p>
<h2>Market net flow, last 12 months</h2>
<img alt="Market inflow, outflow and net flow by month, {data["trend"][0][0].key} to {month.key}"
 src="data:image/png;base64,{chart}">
<h2>Outflow alerts</h2>
{alerts}
<h2>Events: flows between funds, not outflows</h2>
{events}
<p class="note">A transfer (all or most of a fund's net assets moved to another fund or class on
one day) or a succession (a fund stopping and another starting with the same quota and net
assets): its flows are left out of the alerts and of organic growth (docs/events.md).</p>
<h2>Flows that do not reconcile</h2>
{residuals}
<p class="note">From CVM's daily fund reports (Informe Diário), as captured by cvm210; generated
{generated.isoformat(timespec="seconds")}. Names come from CVM's fund registry when the lake has
it. Money is exact; percentages are rounded for reading.</p>
</body></html>
"""


def _residuals_section(residuals: list[dict[str, Any]] | None) -> str:
    """The fund-months whose net assets moved by more than their return and flows explain."""
    if residuals is None:
        return (
            "<p>Not computed: this lake's gold_kpis predates the flow reconciliation;"
            " materialize the month again.</p>"
        )
    rule = (
        "Net assets should move by the return earned and the flows alone; beyond"
        f" max({TOLERANCIA_PCT_PL:.0%} of the average net assets, R$ {TOLERANCIA_MINIMA})"
        " the month's figures hide a reporting error, a unit slip, a missing day or an event"
        " (see docs/analytics.md)."
    )
    if not residuals:
        return f"<p>Every fund's flows reconcile this month. {rule}</p>"
    table = _table(
        ["Fund", "CNPJ", "Manager", "Net flow (R$)", "Return earned (R$)", "Residual (R$)",
         "Residual / avg net assets"],
        [
            (r["nome"] or "", _cnpj(r["cnpj_fundo"], r["id_subclasse"]), r["gestor"] or "",
             _money(r["fluxo_liquido"]), _money(r["rendimento"]),
             _money(r["residuo_conciliacao"]), f"{r['residuo_pct_pl']:.2%}")
            for r in residuals
        ],
        numeric={3, 4, 5, 6},
    )  # fmt: skip
    return f"<p class=note>{rule}</p>\n{table}"


def write_report(tables: DeltaRsTables, month: Month, path: str) -> None:
    html_text = render_report(month, report_data(tables, month), dt.datetime.now(dt.timezone.utc))
    with open(path, "w", encoding="utf-8") as out:
        out.write(html_text)

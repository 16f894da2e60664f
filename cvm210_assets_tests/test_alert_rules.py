"""Outflow alert rules as pure functions: the Spark transform, the config files, routing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from cvm210_assets.alerts.config import (
    Advisor,
    AlertRules,
    ConfigError,
    load_rules,
    parse_rules,
    parse_watchlist,
)
from cvm210_assets.alerts.messages import Delivery, email_message, plan, webhook_payload
from cvm210_assets.assets.alerts import OutflowAlerts
from cvm210_assets.lake.schemas import GOLD_PARES, SILVER
from cvm210_assets.partitions import Month
from cvm210_assets.transforms.alerts import outflow_alerts, outflow_streaks
from cvm210_assets.transforms.gold import kpis, month_sources
from cvm210_assets_tests.conftest import make_pipeline

NOW = dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc)
DEFAULTS = AlertRules()
DAYS = [dt.date(2024, 3, d) for d in (1, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15)]


def fund_rows(
    cnpj: str,
    net_assets: str,
    flows: list[tuple[str, str]],
    holders: tuple[int, int] = (100, 100),
    subclass: str | None = None,
) -> list[dict]:
    """Daily silver rows: (inflow, outflow) per day; net assets move with the flows."""
    rows, pl = [], Decimal(net_assets)
    for n, (day, (captc, resg)) in enumerate(zip(DAYS, flows, strict=False)):
        pl += Decimal(captc) - Decimal(resg)
        rows.append(
            {
                "tp_fundo": "FI",
                "cnpj_fundo": cnpj,
                "id_subclasse": subclass,
                "dt_comptc": day,
                "vl_total": pl,
                "vl_quota": Decimal("1.000000000000"),
                "vl_patrim_liq": pl,
                "captc_dia": Decimal(captc),
                "resg_dia": Decimal(resg),
                "nr_cotst": holders[0] if n == 0 else holders[1],
                "ano": 2024,
                "mes": 3,
            }
        )
    return rows


def alerts_of(
    spark, rows: list[dict], rules: AlertRules = DEFAULTS, pares: list[dict] | None = None
) -> dict[str, dict]:
    silver = spark.createDataFrame(
        [{f.name: r.get(f.name) for f in SILVER.fields} for r in rows], schema=SILVER
    )
    gold = kpis(silver, month_sources(spark, {Month(2024, 3): ("x.csv", "sha")}), "test", NOW)
    standing = (
        None
        if pares is None
        else spark.createDataFrame(
            [{f.name: r.get(f.name) for f in GOLD_PARES.fields} for r in pares], schema=GOLD_PARES
        )
    )
    found = outflow_alerts(gold, silver, rules, "test", NOW, standing).collect()
    return {r["cnpj_fundo"] + (r["id_subclasse"] or ""): r.asDict(recursive=True) for r in found}


QUIET = [("0.00", "0.00")] * 11


def test_each_rule_fires_on_its_own_and_explains_itself(spark) -> None:
    rows = [
        # 10 % of 100 M out on day 2 (then quiet): net_outflow_pct only
        *fund_rows("11111111000111", "100000000.00", [("0", "0"), ("0", "10000000.00"), *QUIET]),
        # 150 M out of 10 billion (1.5 %): net_outflow_amount only
        *fund_rows("22222222000122", "10000000000.00", [("0", "0"), ("0", "150000000.00")]),
        # 10 small net outflows in a row: consecutive days only
        *fund_rows("33333333000133", "50000000.00", [("0", "0")] + [("1.00", "2.00")] * 10),
        # holders 100 -> 89, money flat: holders_drop_pct only
        *fund_rows("44444444000144", "50000000.00", QUIET, holders=(100, 89)),
        # just under every threshold: nothing
        *fund_rows(
            "55555555000155",
            "100000000.00",
            [("0", "0"), ("0", "9999990.00")] + [("1.00", "2.00")] * 8 + [("2.00", "1.00")],
            holders=(100, 91),
        ),
    ]
    alerts = alerts_of(spark, rows)

    assert {k: a["regras"] for k, a in alerts.items()} == {
        "11111111000111": "net_outflow_pct",
        "22222222000122": "net_outflow_amount",
        "33333333000133": "consecutive_outflow_days",
        "44444444000144": "holders_drop_pct",
    }
    pct = alerts["11111111000111"]
    assert pct["fluxo_liquido"] == Decimal("-10000000.00")
    assert pct["patrimonio_inicial"] == Decimal("100000000.00")
    assert pct["saida_liquida_pct_pl"] == pytest.approx(0.10)
    assert (pct["dt_inicio"], pct["dt_fim"]) == (dt.date(2024, 3, 1), dt.date(2024, 3, 15))
    (detail,) = pct["detalhes"]
    assert detail == {
        "regra": "net_outflow_pct",
        "valor": "10.00",
        "limite": "10 %",
        "texto": "net outflow of R$ 10,000,000.00 is 10.00 % of the net assets of"
        " R$ 100,000,000.00 on 2024-03-01 (rule: at least 10 %), 2024-03-01 to 2024-03-15",
    }
    assert pct["explicacao"] == detail["texto"]
    streak = alerts["33333333000133"]
    assert streak["dias_consecutivos_saida"] == 10
    assert streak["explicacao"] == (
        "net outflow on 10 consecutive reports, 2024-03-04 to 2024-03-15 (rule: at least 10)"
    )
    assert alerts["22222222000122"]["detalhes"][0]["valor"] == "150000000.00"
    assert "holders fell from 100 to 89, 11.00 %" in alerts["44444444000144"]["explicacao"]


def test_one_alert_per_fund_lists_every_rule_and_the_floor_excludes_small_funds(spark) -> None:
    everything = [("0", "0")] + [("0", "2000000.00")] * 10  # 20 M out of 100 M, 10 days
    rows = [
        *fund_rows("11111111000111", "100000000.00", everything, holders=(50, 40)),
        *fund_rows("11111111000111", "100000000.00", everything, subclass="SUB1"),
        # 50 % out, but 5 M < the 10 M floor
        *fund_rows("66666666000166", "5000000.00", [("0", "0"), ("0", "2500000.00")]),
    ]
    alerts = alerts_of(spark, rows)

    assert set(alerts) == {"11111111000111", "11111111000111SUB1"}
    assert alerts["11111111000111"]["regras"] == (
        "net_outflow_pct,consecutive_outflow_days,holders_drop_pct"
    )
    assert alerts["11111111000111"]["alert_id"] != alerts["11111111000111SUB1"]["alert_id"]
    lower_floor = alerts_of(spark, rows, AlertRules(min_net_assets=Decimal("1000000")))
    assert lower_floor["66666666000166"]["regras"] == "net_outflow_pct"


def test_a_transfer_to_another_key_is_an_event_not_an_outflow(spark) -> None:
    # All of A's 100 M leave on the 4th; subclass B/S1 receives them the same day (a CVM 175
    # adaptation's move, say): no alert. The same outflow with no counterpart is one.
    out = [("0", "0"), ("0", "100000000.00")] + [("0", "0")] * 9
    into = [("0", "0"), ("100000000.00", "0")] + [("0", "0")] * 9
    moved = fund_rows("11111111000111", "100000000.00", out)
    received = fund_rows("22222222000122", "50000000.00", into, subclass="S1")
    assert alerts_of(spark, moved + received) == {}
    assert alerts_of(spark, moved)["11111111000111"]["regras"] == (
        "net_outflow_pct,net_outflow_amount"
    )


def test_alert_id_is_stable_and_changes_only_with_the_rules_crossed(spark) -> None:
    grows = [("0", "0"), ("0", "10000000.00")]
    first = alerts_of(spark, fund_rows("11111111000111", "100000000.00", grows))
    more_out = alerts_of(spark, fund_rows("11111111000111", "100000000.00", [*grows, ("0", "1")]))
    new_rule = alerts_of(
        spark, fund_rows("11111111000111", "100000000.00", grows, holders=(100, 50))
    )
    key = "11111111000111"
    assert first[key]["alert_id"] == more_out[key]["alert_id"]
    assert first[key]["alert_id"] != new_rule[key]["alert_id"]


def test_rules_turned_off_and_streaks_skip_days_without_reports(spark) -> None:
    rows = fund_rows("11111111000111", "100000000.00", [("0", "0")] + [("0", "2000000.00")] * 10)
    off = AlertRules(
        net_outflow_pct=None,
        net_outflow_amount=None,
        consecutive_outflow_days=None,
        holders_drop_pct=None,
    )
    assert alerts_of(spark, rows, off) == {}
    silver = spark.createDataFrame(
        [{f.name: r.get(f.name) for f in SILVER.fields} for r in rows], schema=SILVER
    )
    (streak,) = outflow_streaks(silver).collect()
    # 2024-03-04 .. 03-15 has a weekend (9-10 March) without reports: still one run of 10
    assert streak["dias_consecutivos_saida"] == 10
    assert (streak["sequencia_de"], streak["sequencia_ate"]) == (DAYS[1], DAYS[-1])


def standing(
    cnpj: str, mes: int, place: int, peers: int, ratio: float = -0.01, manager: int = 5
) -> dict:
    """A gold_pares row: `place` of `peers` in class Multimercado, 5th of 20 at Gestora Alfa."""
    return {
        "cnpj_fundo": cnpj,
        "classe": "Multimercado",
        "gestor": "Gestora Alfa",
        "fluxo_liquido_pct_pl": ratio,
        "pares_classe": peers,
        "posicao_classe": place,
        "percentil_classe": (place - 1) / (peers - 1),
        "pares_gestor": 20,
        "posicao_gestor": manager,
        "percentil_gestor": (manager - 1) / 19,
        "ano": 2024,
        "mes": mes,
    }


PEERS = AlertRules(peer_percentile=Decimal("5"))  # the worst 5 % of the class, 2 months
SLOW_OUTFLOW = [("0", "0"), ("0", "1000000.00")]  # 1 % of 100 M: no fixed rule crosses


def test_peer_rule_needs_the_worst_percentile_for_every_month_running(spark) -> None:
    funds = ["11111111000111", "22222222000122", "33333333000133", "44444444000144",
             "55555555000155", "66666666000166"]  # fmt: skip
    rows = [r for cnpj in funds for r in fund_rows(cnpj, "100000000.00", SLOW_OUTFLOW)]
    pares = [
        # the worst of 40 in February and in March: crosses
        standing(funds[0], 2, 1, 40), standing(funds[0], 3, 1, 40),
        # worst in March only (10th in February): does not
        standing(funds[1], 2, 10, 40), standing(funds[1], 3, 1, 40),
        # worst in March, no February standing (the month missing): does not
        standing(funds[2], 3, 1, 40),
        # 2nd of 21 both months: percentile exactly 5 % (1/20), at the limit: crosses
        standing(funds[3], 2, 2, 21), standing(funds[3], 3, 2, 21),
        # 3rd of 21 both months: 10 %: does not
        standing(funds[4], 2, 3, 21), standing(funds[4], 3, 3, 21),
        # the worst of a class that grew: no net outflow, no alert
        standing(funds[5], 2, 1, 40, ratio=0.02), standing(funds[5], 3, 1, 40, ratio=0.01),
    ]  # fmt: skip
    alerts = alerts_of(spark, rows, PEERS, pares)

    assert {k: a["regras"] for k, a in alerts.items()} == {
        funds[0]: "peer_percentile",
        funds[3]: "peer_percentile",
    }
    (detail,) = alerts[funds[3]]["detalhes"]
    assert detail == {
        "regra": "peer_percentile",
        "valor": "5.00",
        "limite": "5 % of its class, 2 month(s)",
        "texto": "net flow in the worst 5 % of its class (Multimercado) for 2 month(s) running:"
        " 2024-02 place 2 of 21 (percentile 5.00 %), 2024-03 place 2 of 21 (percentile 5.00 %)"
        " (rule: the worst 5 % for 2 month(s))",
    }
    # One month running: March alone is enough, for the fund without February too.
    one_month = AlertRules(peer_percentile=Decimal("5"), peer_percentile_months=1)
    one = alerts_of(spark, rows, one_month, pares)
    assert set(one) == {funds[0], funds[1], funds[2], funds[3]}
    # Off by default, and without gold_pares the rule cannot cross.
    assert alerts_of(spark, rows, DEFAULTS, pares) == {}
    assert alerts_of(spark, rows, PEERS) == {}


def test_peer_rule_by_manager_and_with_other_rules(spark) -> None:
    everything = [("0", "0"), ("0", "15000000.00")]  # 15 %: net_outflow_pct too
    rows = [
        *fund_rows("11111111000111", "100000000.00", everything),
        *fund_rows("22222222000122", "100000000.00", SLOW_OUTFLOW),
    ]
    # Both the worst of their class; only the first is its manager's worst as well.
    pares = [
        standing(cnpj, m, 1, 40, manager=place)
        for cnpj, place in (("11111111000111", 1), ("22222222000122", 5))
        for m in (2, 3)
    ]
    by_manager = AlertRules(peer_percentile=Decimal("5"), peer_group="gestor")
    alerts = alerts_of(spark, rows, by_manager, pares)
    assert {k: a["regras"] for k, a in alerts.items()} == {
        "11111111000111": "net_outflow_pct,peer_percentile"
    }
    detail = alerts["11111111000111"]["detalhes"][1]
    assert detail["texto"].startswith(
        "net flow in the worst 5 % of its manager's funds (Gestora Alfa) for 2 month(s) running:"
        " 2024-02 place 1 of 20 (percentile 0.00 %)"
    )
    # The peer rule is part of the alert's id: crossing it too is a new alert.
    fixed_only = alerts_of(spark, rows, DEFAULTS, pares)
    assert fixed_only["11111111000111"]["alert_id"] != alerts["11111111000111"]["alert_id"]


def test_the_peer_rules_months_of_gold_pares_are_in_the_alert_months_fingerprint(
    tmp_path: Path,
) -> None:
    lake = make_pipeline(str(tmp_path / "lake"), "http://127.0.0.1:1").resources["lake"]
    march, upstream = Month(2024, 3), {"source_sha256": "abc"}
    assert "gold_pares_sha256" not in OutflowAlerts(DEFAULTS).wanted(lake, march, upstream)
    alerts = OutflowAlerts(PEERS)
    before = alerts.wanted(lake, march, upstream)
    # February's standing arrives (gold_breakdowns ran): March is recomputed on its next run.
    lake.state.put("gold_breakdowns", Month(2024, 2), {"pares_delta_version": 7})
    february = alerts.wanted(lake, march, upstream)
    assert february["gold_pares_sha256"] != before["gold_pares_sha256"]
    # January is not one of the rule's two months; with three it is.
    lake.state.put("gold_breakdowns", Month(2024, 1), {"pares_delta_version": 8})
    assert alerts.wanted(lake, march, upstream) == february
    three = OutflowAlerts(AlertRules(peer_percentile=Decimal("5"), peer_percentile_months=3))
    three_months = three.wanted(lake, march, upstream)
    assert three_months["gold_pares_sha256"] != february["gold_pares_sha256"]


def test_rules_file_defaults_overrides_and_errors(tmp_path: Path) -> None:
    assert load_rules(None) == AlertRules()
    path = tmp_path / "rules.yaml"
    path.write_text("min_net_assets: 5000000.50\nnet_outflow_pct: 7.5\nholders_drop_pct: null\n")
    rules = load_rules(str(path))
    assert rules.min_net_assets == Decimal("5000000.50")
    assert rules.net_outflow_pct == Decimal("7.5")
    assert rules.holders_drop_pct is None
    assert rules.consecutive_outflow_days == 10
    assert rules.peer_percentile is None  # off unless asked for
    assert rules.fingerprint() != AlertRules().fingerprint()
    path.write_text("peer_percentile: 5\npeer_percentile_months: 3\npeer_group: gestor\n")
    peers = load_rules(str(path))
    assert (peers.peer_percentile, peers.peer_percentile_months, peers.peer_group) == (
        Decimal("5"),
        3,
        "gestor",
    )
    assert peers.fingerprint() != AlertRules(peer_percentile=Decimal("5")).fingerprint()
    for text, message in [
        ("net_outflow_pc: 5", "unknown keys \\['net_outflow_pc'\\]"),
        ("net_outflow_pct: five", "'five' is not a number"),
        ("net_outflow_pct: -1", "must be a number >= 0"),
        ("consecutive_outflow_days: 2.5", "must be a whole number >= 1"),
        ("min_net_assets: null", "cannot be null"),
        ("peer_percentile: 101", "at most 100"),
        ("peer_percentile_months: 0", "must be a whole number >= 1"),
        ("peer_percentile_months: null", "turn the rule off with peer_percentile: null"),
        ("peer_group: administrador", "must be one of \\['classe', 'gestor'\\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_rules(yaml.safe_load(text), "rules.yaml")


def test_watchlist_parsing_and_routing() -> None:
    advisors = parse_watchlist(
        {
            "advisors": [
                {
                    "name": "Ana",
                    "email": "ana@example.com",
                    "webhook": "http://127.0.0.1:1/hook",
                    "managers": ["Gestora Alfa Ltda", "12.345.678/0001-95"],
                },
                {"name": "Bruno", "email": "bruno@example.com", "cnpjs": ["11.111.111/0001-11"]},
            ]
        }
    )
    assert advisors[1].cnpjs == frozenset({"11111111000111"})
    by_name = {"cnpj_fundo": "99999999000199", "gestor": "GESTORA ALFA LTDA ", "cnpj_gestor": None}
    by_cnpj = {"cnpj_fundo": "99999999000199", "gestor": None, "cnpj_gestor": "12345678000195"}
    watched = {"cnpj_fundo": "11111111000111", "gestor": None, "cnpj_gestor": None}
    nobody = {"cnpj_fundo": "88888888000188", "gestor": None, "cnpj_gestor": None}
    assert [a.name for a in advisors if a.watches(by_name)] == ["Ana"]
    assert [a.name for a in advisors if a.watches(by_cnpj)] == ["Ana"]
    assert [a.name for a in advisors if a.watches(watched)] == ["Bruno"]
    assert [a.name for a in advisors if a.watches(nobody)] == []
    for document, message in [
        ({"advisors": [{"name": "X"}]}, "needs an email or a webhook"),
        ({"advisors": [{"name": "X", "email": "x@y", "cnpj": []}]}, "unknown keys \\['cnpj'\\]"),
        ({"advisors": [{"name": "X", "email": "a"}, {"name": "X", "email": "b"}]}, "unique"),
        ({"advisor": []}, "expected `advisors:`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_watchlist(document)


ALERT = {
    "alert_id": "a1",
    "cnpj_fundo": "11111111000111",
    "id_subclasse": None,
    "tp_fundo": "FI",
    "nome": "Fundo Alfa",
    "gestor": "Gestora Alfa Ltda",
    "cnpj_gestor": None,
    "administrador": None,
    "regras": "net_outflow_pct",
    "explicacao": "net outflow …",
    "detalhes": [{"regra": "net_outflow_pct", "valor": "10.00", "limite": "10 %", "texto": "t"}],
    "dt_inicio": dt.date(2024, 3, 1),
    "dt_fim": dt.date(2024, 3, 28),
    "patrimonio_inicial": Decimal("100000000.00"),
    "patrimonio_final": Decimal("90000000.00"),
    "total_resgate": Decimal("10000000.00"),
    "fluxo_liquido": Decimal("-10000000.00"),
    "saida_liquida_pct_pl": 0.1,
    "dias_consecutivos_saida": 3,
    "cotistas_inicial": 10,
    "cotistas_final": 10,
    "ano": 2024,
    "mes": 3,
}


def test_plan_skips_what_the_log_has_sent_per_advisor_and_channel() -> None:
    ana = Advisor("Ana", email="ana@x", webhook="http://h/", cnpjs=frozenset({"11111111000111"}))
    bia = Advisor("Bia", email="bia@x", cnpjs=frozenset({"11111111000111"}))
    due = plan([ALERT], [ana, bia], set())
    assert [d.key for d in due] == [
        ("a1", "Ana", "email"),
        ("a1", "Ana", "webhook"),
        ("a1", "Bia", "email"),
    ]
    again = plan([ALERT], [ana, bia], {("a1", "Ana", "email"), ("a1", "Bia", "email")})
    assert [d.key for d in again] == [("a1", "Ana", "webhook")]


def test_messages_name_the_fund_and_keep_money_exact() -> None:
    delivery = Delivery(ALERT, Advisor("Ana", email="ana@x", webhook="http://h/"), "email")
    mail = email_message(delivery, "cvm210@example.com")
    assert mail["Subject"] == "cvm210 alert 2024-03: Fundo Alfa (11.111.111/0001-11)"
    assert "Net flow: R$ -10,000,000.00" in mail.get_content()
    payload = webhook_payload(Delivery(ALERT, delivery.advisor, "webhook"))
    assert payload["fund"]["nome"] == "Fundo Alfa"
    assert payload["values"]["fluxo_liquido"] == "-10000000.00"
    assert payload["window"] == {"start": "2024-03-01", "end": "2024-03-28"}

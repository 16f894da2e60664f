"""Events that are not outflows: the pure transform on hand-made daily rows whose answer is
known (docs/events.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from decimal import Decimal as D

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, IntegerType, StringType, StructField, StructType

from cvm210_assets.lake.schemas import MONEY, QUOTA, in_schema
from cvm210_assets.lake.schemas import SILVER as SILVER_SCHEMA
from cvm210_assets.partitions import Month
from cvm210_assets.transforms.breakdowns import breakdowns
from cvm210_assets.transforms.events import events, registry_events
from cvm210_assets.transforms.gold import fund_months, kpis, month_sources

pytestmark = pytest.mark.spark

SILVER = StructType(
    [
        StructField("cnpj_fundo", StringType()),
        StructField("id_subclasse", StringType()),
        StructField("dt_comptc", DateType()),
        StructField("vl_quota", QUOTA),
        StructField("vl_patrim_liq", MONEY),
        StructField("captc_dia", MONEY),
        StructField("resg_dia", MONEY),
        StructField("ano", IntegerType()),
        StructField("mes", IntegerType()),
    ]
)
# March 2024's first business days: the month's report dates.
DAYS = [dt.date(2024, 3, d) for d in (1, 4, 5, 6, 7, 8)]
M = Decimal(1_000_000)


def _key(key: str) -> tuple[str, str | None]:
    cnpj, _, sub = key.partition("/")
    return cnpj, sub or None


def _rows(key: str, days: dict[dt.date, tuple]) -> list[tuple]:
    """A key's daily rows: {day: (quota, pl, inflow, redemption)}."""
    cnpj, sub = _key(key)
    return [
        (cnpj, sub, day, Decimal(q), Decimal(pl), Decimal(c), Decimal(r), 2024, 3)
        for day, (q, pl, c, r) in days.items()
    ]


def _steady(key: str, pl: Decimal, days=DAYS, **changes: tuple) -> list[tuple]:
    """A key with constant quota 1 and PL `pl` on `days`, but for `changes` (by day of month)."""
    rows = {d: ("1", pl, 0, 0) for d in days}
    rows |= {dt.date(2024, 3, int(d[1:])): v for d, v in changes.items()}
    return _rows(key, rows)


def _silver(spark, rows: list[tuple]):
    """The rows in silver's own schema, the columns the rules do not read NULL."""
    missing = {f.name: F.lit(None) for f in SILVER_SCHEMA if f.name not in SILVER.names}
    return in_schema(spark.createDataFrame(rows, SILVER), SILVER_SCHEMA, missing)


def _events(spark, rows: list[tuple]) -> dict[tuple, tuple]:
    silver = _silver(spark, rows)
    found = events(silver, fund_months(silver)).collect()
    return {
        (r.cnpj_fundo, r.id_subclasse): (r.evento, r.contraparte_cnpj, r.contraparte_id_subclasse)
        for r in found
        if (r.ano, r.mes) == (2024, 3)
    }


def test_a_transfer_marks_both_keys_each_naming_the_other(spark):
    # A moves its R$ 10 million to subclass B/S1 on the 5th: A's redemption, B/S1's inflow.
    rows = _steady("A", 10 * M, d5=("1", 0, 0, 10 * M), d6=("1", 0, 0, 0))
    rows += _steady("B", 2 * M)
    rows += _steady("B/S1", M, d5=("1", 11 * M, 10 * M, 0), d6=("1", 11 * M, 0, 0))
    assert _events(spark, rows) == {
        ("A", None): ("transferencia", "B", "S1"),
        ("B", "S1"): ("transferencia", "A", None),
    }


def test_a_succession_marks_the_key_that_stops_and_the_one_that_starts(spark):
    # C (a legacy FI) reports until the 5th; D (its CVM 175 class) starts on the next report
    # date with the same quota and PL, one day's return later (0.05 %).
    rows = _steady("C", 5 * M, days=DAYS[:3], d5=("1.5", 5 * M, 0, 0))
    rows += _steady("D", Decimal("5002500"), days=DAYS[3:], d6=("1.50075", "5002500", 0, 0))
    rows += _steady("X", M)  # the market reports every day
    assert _events(spark, rows) == {
        ("C", None): ("sucessao", "D", None),
        ("D", None): ("sucessao", "C", None),
    }


def test_a_genuine_redemption_is_not_an_event(spark):
    # E loses 80 % of its PL on the 6th; F's inflow that day is 7 million, not 8 (beyond 0.1 %);
    # G stops reporting (a liquidation) and H starts with a PL 1 % off: no succession.
    rows = _steady(
        "E", 10 * M, d6=("1", 2 * M, 0, 8 * M), d7=("1", 2 * M, 0, 0), d8=("1", 2 * M, 0, 0)
    )
    rows += _steady("F", 10 * M, d6=("1", 17 * M, 7 * M, 0))
    rows += _steady("G", 3 * M, days=DAYS[:2])
    rows += _steady("H", Decimal("3030000"), days=DAYS[2:])
    assert _events(spark, rows) == {}


def test_two_equal_counterparts_leave_the_transfer_without_one_and_the_closest_wins(spark):
    # J's 3 million go out on the 7th; K and L each receive exactly 3 million: J is an event
    # with no counterpart, K and L are not marked. P's 2 million: Q's inflow is exact, R's
    # 0.05 % off (within the tolerance): Q is the counterpart, R is not marked.
    rows = _steady("J", 3 * M, d7=("1", 0, 0, 3 * M), d8=("1", 0, 0, 0))
    rows += _steady("K", 5 * M, d7=("1", 8 * M, 3 * M, 0))
    rows += _steady("L", 5 * M, d7=("1", 8 * M, 3 * M, 0))
    rows += _steady("P", 2 * M, d4=("1", 0, 0, 2 * M))
    rows += _steady("Q", M, d4=("1", 3 * M, 2 * M, 0))
    rows += _steady("R", M, d4=("1", 3 * M, Decimal("2001000"), 0))
    assert _events(spark, rows) == {
        ("J", None): ("transferencia", None, None),
        ("P", None): ("transferencia", "Q", None),
        ("Q", None): ("transferencia", "P", None),
    }


def test_gold_carries_the_marks_and_other_fund_months_have_none(spark):
    rows = _steady("A", 10 * M, d5=("1", 0, 0, 10 * M), d6=("1", 0, 0, 0))
    rows += _steady("B/S1", M, d5=("1", 11 * M, 10 * M, 0), d6=("1", 11 * M, 0, 0))
    rows += _steady("B", 2 * M)
    silver = _silver(spark, rows)
    sources = month_sources(spark, {Month(2024, 3): ("inf_diario_fi_202403.csv", "sha")})
    gold = kpis(silver, sources, "test", dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc))
    marks = {
        (r.cnpj_fundo, r.id_subclasse): (r.evento, r.contraparte_cnpj, r.contraparte_id_subclasse)
        for r in gold.collect()
    }
    assert marks == {
        ("A", None): ("transferencia", "B", "S1"),
        ("B", "S1"): ("transferencia", "A", None),
        ("B", None): (None, None, None),
    }


def test_breakdowns_leave_events_out_of_organic_flow_only(spark):
    # Alfa's fund A moved 10 M to Beta's B (an event on both sides); Beta's C lost 1 M to its
    # investors. Beta's net flow keeps the 10 M; its organic flow is C's −1 M alone.
    gold = spark.createDataFrame(
        [
            ("A", None, 2024, 3, D(0), D(10 * M), D(-10 * M), D(10 * M), "transferencia"),
            ("B", None, 2024, 3, D(10 * M), D(0), D(10 * M), D(20 * M), "transferencia"),
            ("C", None, 2024, 3, D(0), D(M), D(-M), D(30 * M), None),
        ],
        "cnpj_fundo string, id_subclasse string, ano int, mes int, total_captacao decimal(27,2),"
        " total_resgate decimal(27,2), fluxo_liquido decimal(27,2),"
        " patrimonio_inicial decimal(17,2), evento string",
    )
    registry = spark.createDataFrame(
        [
            ("A", None, "Ações", "Alfa", "Adm", False),
            ("B", None, "Ações", "Beta", "Adm", False),
            ("C", None, "Ações", "Beta", "Adm", False),
        ],
        "cnpj_fundo string, id_subclasse string, classe string, gestor string,"
        " administrador string, fundo_de_cotas boolean",
    )
    month = Month(2024, 3)
    rows = breakdowns(gold, registry, month, [month], "test", dt.datetime(2024, 4, 1))
    found = {
        r.valor: (
            r.fluxo_liquido,
            r.fluxo_eventos,
            r.fluxo_organico,
            r.crescimento_organico_sem_eventos,
        )
        for r in rows.where("escopo = 'todos' AND dimensao IN ('gestor', 'mercado')").collect()
    }
    assert found == {
        "Alfa": (D(-10 * M), D(-10 * M), D(0), 0.0),
        "Beta": (D(9 * M), D(10 * M), D(-M), -1 / 50),
        "total": (D(-M), D(0), D(-M), -1 / 60),
    }


GOLD_MARKS = (
    "cnpj_fundo string, id_subclasse string, ano int, mes int, evento string,"
    " contraparte_cnpj string, contraparte_id_subclasse string"
)
CANCELLED = "cnpj_fundo string, id_subclasse string, data_cancelamento date"


def _months(key: str, *months: tuple[int, int], evento=None, contraparte=None) -> list[tuple]:
    cnpj, sub = _key(key)
    return [(cnpj, sub, ano, mes, evento, contraparte, None) for ano, mes in months]


def test_the_registry_marks_a_keys_last_month_before_its_cancellation(spark):
    gold = spark.createDataFrame(
        [
            # A's last report is in March 2024 (the 29th); the registry cancelled it on April
            # 8th: March is its encerramento, January and February are not.
            *_months("A", (2024, 1), (2024, 2), (2024, 3)),
            *_months("B", (2022, 1), (2022, 2), (2022, 3)),  # cancelled two years later
            *_months("C", (2024, 3), evento="sucessao", contraparte="X"),  # the daily rule wins
            *_months("D", (2024, 3)),  # active
            *_months("E/S1", (2024, 3)),  # its class was cancelled, the subclass has no row
            *_months("F", (2024, 3), (2024, 4)),  # still reporting in April: April is the last
            *_months("G", (2024, 3)),  # no registry row
            *_months("H", (2024, 3)),  # "cancelled" before its last report: not this month
        ],
        GOLD_MARKS,
    )
    registry = spark.createDataFrame(
        [
            ("A", None, dt.date(2024, 4, 8)),
            ("B", None, dt.date(2024, 3, 1)),
            ("C", None, dt.date(2024, 4, 5)),
            ("D", None, None),
            ("E", None, dt.date(2024, 3, 20)),
            ("F", None, dt.date(2024, 5, 15)),
            ("H", None, dt.date(2024, 2, 10)),
        ],
        CANCELLED,
    )
    marked = {
        (r.cnpj_fundo, r.id_subclasse, r.ano, r.mes): (r.evento, r.contraparte_cnpj)
        for r in registry_events(gold, registry).collect()
        if r.evento
    }
    assert marked == {
        ("A", None, 2024, 3): ("encerramento", None),
        ("C", None, 2024, 3): ("sucessao", "X"),
        ("E", "S1", 2024, 3): ("encerramento", None),
        ("F", None, 2024, 4): ("encerramento", None),
    }
    # A registry written before data_cancelamento existed marks nothing.
    before = registry.drop("data_cancelamento")
    assert registry_events(gold, before).collect() == gold.collect()


def test_breakdowns_count_a_liquidations_flow_as_an_event(spark):
    # Alfa's A lost 5 M in March, its last month before the registry cancelled it in April:
    # an encerramento, not organic flow. Beta's C lost 1 M to its investors in March; its
    # April (read by the rule, a month later than the breakdown's) is not summed.
    gold = spark.createDataFrame(
        [
            ("A", None, 2024, 3, D(0), D(5 * M), D(-5 * M), D(5 * M), None),
            ("C", None, 2024, 3, D(0), D(M), D(-M), D(30 * M), None),
            ("C", None, 2024, 4, D(0), D(7 * M), D(-7 * M), D(29 * M), None),
        ],
        "cnpj_fundo string, id_subclasse string, ano int, mes int, total_captacao decimal(27,2),"
        " total_resgate decimal(27,2), fluxo_liquido decimal(27,2),"
        " patrimonio_inicial decimal(17,2), evento string",
    )
    registry = spark.createDataFrame(
        [
            ("A", None, "Ações", "Alfa", "Adm", False, dt.date(2024, 4, 10)),
            ("C", None, "Ações", "Beta", "Adm", False, None),
        ],
        "cnpj_fundo string, id_subclasse string, classe string, gestor string,"
        " administrador string, fundo_de_cotas boolean, data_cancelamento date",
    )
    month = Month(2024, 3)
    rows = breakdowns(gold, registry, month, [month], "test", dt.datetime(2024, 4, 1))
    found = {
        r.valor: (r.fluxo_liquido, r.fluxo_eventos, r.fluxo_organico)
        for r in rows.where("escopo = 'todos' AND dimensao IN ('gestor', 'mercado')").collect()
    }
    assert found == {
        "Alfa": (D(-5 * M), D(-5 * M), D(0)),
        "Beta": (D(-M), D(0), D(-M)),
        "total": (D(-6 * M), D(-5 * M), D(-M)),
    }

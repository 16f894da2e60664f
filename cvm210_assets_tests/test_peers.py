"""Peer-relative flows: the pure transform on hand-made gold rows whose standing is known, and
gold_fundos before gold_pares exists."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from cvm210_assets.lake.schemas import GOLD_PARES
from cvm210_assets.sql.views import PARES_COLUMNS, REGISTRY_COLUMNS, gold_fundos_sql
from cvm210_assets.transforms.peers import peers

NOW = dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc)
GOLD = StructType(
    [
        StructField("cnpj_fundo", StringType()),
        StructField("id_subclasse", StringType()),
        StructField("fluxo_liquido_pct_pl", DoubleType()),
        StructField("ano", IntegerType()),
        StructField("mes", IntegerType()),
    ]
)
REGISTRY = StructType(
    [
        StructField("cnpj_fundo", StringType()),
        StructField("id_subclasse", StringType()),
        StructField("classe", StringType()),
        StructField("gestor", StringType()),
        StructField("administrador", StringType()),
        StructField("fundo_de_cotas", BooleanType()),
    ]
)
ALFA, BETA = "Gestora Alfa", "Gestora Beta"
# Ações: ten funds, two tied; five with Alfa, five with Beta.
ACOES = {"A01": -0.5, "A02": -0.3, "A03": -0.3, "A04": -0.1, "A05": 0.0,
         "A06": 0.1, "A07": 0.2, "A08": 0.3, "A09": 0.4, "A10": 0.5}  # fmt: skip
# Renda Fixa: five funds, all Alfa's: too few to rank in their class, ranked among Alfa's ten.
RENDA_FIXA = {"R01": -0.4, "R02": -0.2, "R03": 0.05, "R04": 0.15, "R05": 0.25}


def _registry() -> list[tuple]:
    rows = [(c, None, "Ações", ALFA if c <= "A05" else BETA, "Adm", False) for c in ACOES]
    rows += [(c, None, "Renda Fixa", ALFA, "Adm", True) for c in RENDA_FIXA]  # funds of funds
    rows += [
        ("A11", None, "Ações", ALFA, "Adm", False),  # no ratio this month
        ("C01", None, "Cambial", None, "Adm", False),  # alone in its class, no manager
    ]
    return rows


def _gold() -> list[tuple]:
    march = {**ACOES, **RENDA_FIXA, "A11": None, "C01": -0.9, "X01": -0.95}  # X01: unregistered
    rows = [(c, None, r, 2024, 3) for c, r in march.items()]
    return [*rows, ("A01", None, 0.9, 2024, 4)]  # April: A01 alone


@pytest.fixture(scope="module")
def standing(spark) -> dict[tuple[str, int], dict]:
    gold = spark.createDataFrame(_gold(), GOLD)
    registry = spark.createDataFrame(_registry(), REGISTRY)
    frame = peers(gold, registry, "test", NOW)
    assert frame.schema.fieldNames() == GOLD_PARES.fieldNames()
    return {(r["cnpj_fundo"], r["mes"]): r.asDict() for r in frame.collect()}


def _cols(row: dict, group: str) -> tuple:
    return row[f"pares_{group}"], row[f"posicao_{group}"], row[f"percentil_{group}"]


def test_class_percentiles_order_the_worst_first_and_ties_share_a_place(standing) -> None:
    got = {c: _cols(standing[(c, 3)], "classe") for c in ACOES}
    places = {"A01": 1, "A02": 2, "A03": 2, "A04": 4, "A05": 5,
              "A06": 6, "A07": 7, "A08": 8, "A09": 9, "A10": 10}  # fmt: skip
    assert got == {c: (10, p, pytest.approx((p - 1) / 9)) for c, p in places.items()}
    assert standing[("A01", 3)]["percentil_classe"] == 0.0  # the worst
    assert standing[("A10", 3)]["percentil_classe"] == 1.0  # the best
    assert standing[("A02", 3)]["classe"] == "Ações"


def test_groups_below_the_minimum_have_peers_but_no_percentile(standing) -> None:
    # Renda Fixa has five funds, Beta five, Cambial one: counted, not ranked.
    assert {_cols(standing[(c, 3)], "classe") for c in RENDA_FIXA} == {(5, None, None)}
    assert {_cols(standing[(c, 3)], "gestor") for c in ACOES if c > "A05"} == {(5, None, None)}
    assert _cols(standing[("C01", 3)], "classe") == (1, None, None)
    # April: A01 alone, whatever its March standing.
    assert _cols(standing[("A01", 4)], "classe") == (1, None, None)


def test_manager_percentiles_rank_across_classes_funds_of_funds_included(standing) -> None:
    # Alfa: A01..A05 and R01..R05 (funds of funds), ten with a ratio.
    places = {"A01": 1, "R01": 2, "A02": 3, "A03": 3, "R02": 5,
              "A04": 6, "A05": 7, "R03": 8, "R04": 9, "R05": 10}  # fmt: skip
    got = {c: _cols(standing[(c, 3)], "gestor") for c in places}
    assert got == {c: (10, p, pytest.approx((p - 1) / 9)) for c, p in places.items()}


def test_no_ratio_no_class_or_no_entry_means_no_standing(standing) -> None:
    nothing = (None, None, None)
    a11 = standing[("A11", 3)]
    assert (a11["classe"], a11["fluxo_liquido_pct_pl"]) == ("Ações", None)
    assert _cols(a11, "classe") == nothing and _cols(a11, "gestor") == nothing
    assert _cols(standing[("C01", 3)], "gestor") == nothing  # no manager
    x01 = standing[("X01", 3)]
    assert (x01["classe"], x01["gestor"]) == (None, None)
    assert _cols(x01, "classe") == nothing and _cols(x01, "gestor") == nothing
    # One row per gold row.
    assert len(standing) == len(_gold())


def test_gold_fundos_shows_null_standings_until_gold_pares_exists() -> None:
    """A lake without gold_pares (gold_breakdowns never ran, as in `cvm210 demo`) keeps its
    gold_fundos view, with the standing columns NULL and typed."""
    con = duckdb.connect()
    con.execute("CREATE TABLE g AS SELECT '1' AS cnpj_fundo, NULL::VARCHAR AS id_subclasse")
    names = ", ".join(f"'x' AS {c}" for c in REGISTRY_COLUMNS)
    con.execute(
        f"CREATE TABLE r AS SELECT '1' AS cnpj_fundo, NULL::VARCHAR AS id_subclasse, {names}"
    )
    # Tables written before the registry's event's columns, too: those show NULL.
    columns = {"gold_kpis": ["cnpj_fundo", "id_subclasse"], "fund_registry": REGISTRY_COLUMNS}
    cursor = con.execute(gold_fundos_sql({"gold_kpis": "g", "fund_registry": "r"}, columns))
    columns = [d[0] for d in cursor.description]
    (row,) = cursor.fetchall()
    shown = dict(zip(columns, row, strict=True))
    assert {c: shown[c] for c in PARES_COLUMNS} == dict.fromkeys(PARES_COLUMNS)
    assert shown["classe"] == "x"
    assert (shown["data_cancelamento"], shown["evento_registro"]) == (None, None)
    assert {d[0]: str(d[1]) for d in cursor.description if d[0] in PARES_COLUMNS} == {
        c: "DOUBLE" if c.startswith("percentil") else "INTEGER" for c in PARES_COLUMNS
    }

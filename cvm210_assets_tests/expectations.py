"""Compare what the pipeline wrote with the oracle (reference.py), column by column."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from cvm210_assets_tests.reference import ExpectedMonth, GoldRow, SilverRow

SILVER_DATA = [f.name for f in dataclasses.fields(SilverRow)]
GOLD_EXACT = [
    "cnpj_fundo", "id_subclasse", "ano", "mes", "tp_fundo", "dias_com_informe",
    "total_captacao", "total_resgate", "fluxo_liquido", "patrimonio_inicial", "patrimonio_final",
    "cota_inicial", "cota_final", "cota_maxima", "cota_minima", "cotistas_inicial",
    "cotistas_final", "variacao_cotistas",
    "dias_fluxo_negativo", "em_risco", "rendimento", "residuo_conciliacao",
]  # fmt: skip
GOLD_RATIOS = ["variacao_cota", "taxa_resgate", "fluxo_liquido_pct_pl", "residuo_pct_pl"]


def _key(row: dict[str, Any]) -> tuple:
    return (row["cnpj_fundo"], row["id_subclasse"] or "", row.get("dt_comptc"))


def assert_silver(
    actual: list[dict[str, Any]], expected: list[SilverRow], with_line: bool = True
) -> None:
    """Silver equals the oracle's rows; `with_line=False` after a MERGE, where unchanged rows
    keep the line of the file version that last wrote them (see assert_lineage)."""
    columns = [c for c in SILVER_DATA if with_line or c != "numero_linha"]
    got = sorted(({c: r[c] for c in columns} for r in actual), key=_key)
    want = sorted(
        ({c: v for c, v in dataclasses.asdict(r).items() if c in columns} for r in expected),
        key=_key,
    )
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w


def assert_rejects(actual: list[dict[str, Any]], expected: ExpectedMonth) -> None:
    got = sorted((r["numero_linha"], r["registro"], r["motivo"]) for r in actual)
    want = [(r.numero_linha, r.registro, r.motivo) for r in expected.rejects]
    assert got == want


def assert_gold(actual: list[dict[str, Any]], expected: list[GoldRow]) -> None:
    """Sums exact to the cent; the mean to its 6 stored decimals; ratios to 1e-9."""
    got = {(r["cnpj_fundo"], r["id_subclasse"]): r for r in actual}
    want = {(r.cnpj_fundo, r.id_subclasse): dataclasses.asdict(r) for r in expected}
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        assert {c: g[c] for c in GOLD_EXACT} == {c: w[c] for c in GOLD_EXACT}, key
        assert abs(g["patrimonio_medio"] - w["patrimonio_medio"]) <= Decimal("0.0000005"), key
        for column in GOLD_RATIOS:
            if w[column] is None:
                assert g[column] is None, (key, column)
            else:
                expected = float(w[column])
                assert abs(g[column] - expected) <= 1e-9 * max(1.0, abs(expected)), (key, column)


def assert_lineage(actual: list[dict[str, Any]], versions: dict[str, list[SilverRow]]) -> None:
    """Each silver row's (arquivo_sha256, numero_linha) names the line it came from."""
    lines = {
        sha: {(r.cnpj_fundo, r.id_subclasse, r.dt_comptc): r.numero_linha for r in rows}
        for sha, rows in versions.items()
    }
    for row in actual:
        key = (row["cnpj_fundo"], row["id_subclasse"], row["dt_comptc"])
        assert lines[row["arquivo_sha256"]][key] == row["numero_linha"], key


def over_tolerance(gold: list[GoldRow]) -> list[GoldRow]:
    """The fund-months whose flows do not reconcile (docs/analytics.md): |residuo_conciliacao|
    beyond max(1 % of patrimonio_medio, R$ 1.00)."""
    return [
        g
        for g in gold
        if g.residuo_conciliacao is not None
        and abs(g.residuo_conciliacao) > max(g.patrimonio_medio / 100, Decimal("1.00"))
    ]

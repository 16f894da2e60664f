"""Independent oracle for the CVM inf_diario pipeline (bronze, silver, rejects, gold).

Written from the contract in DESIGN.md and the test brief, in plain Python (standard library
only) and without importing ``cvm210_assets``: the tests compare the Spark pipeline with this
module, so a shared bug would hide itself. Slow and simple on purpose; meant for test-sized files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Context, Decimal

# --- the contract's constants -------------------------------------------------------------

# Fields are trimmed of ASCII whitespace only; a latin-1 NBSP (0xA0) is data, not padding.
WHITESPACE = " \t\r\n\f\v"

LAYOUTS: dict[str, tuple[str, ...]] = {
    "a": (
        "CNPJ_FUNDO",
        "DT_COMPTC",
        "VL_TOTAL",
        "VL_QUOTA",
        "VL_PATRIM_LIQ",
        "CAPTC_DIA",
        "RESG_DIA",
        "NR_COTST",
    ),
    "b": (
        "TP_FUNDO",
        "CNPJ_FUNDO",
        "DT_COMPTC",
        "VL_TOTAL",
        "VL_QUOTA",
        "VL_PATRIM_LIQ",
        "CAPTC_DIA",
        "RESG_DIA",
        "NR_COTST",
    ),
    "c": (
        "TP_FUNDO_CLASSE",
        "CNPJ_FUNDO_CLASSE",
        "ID_SUBCLASSE",
        "DT_COMPTC",
        "VL_TOTAL",
        "VL_QUOTA",
        "VL_PATRIM_LIQ",
        "CAPTC_DIA",
        "RESG_DIA",
        "NR_COTST",
    ),
}

# Reject reason codes, in the order the rules are checked.
MOTIVOS: tuple[str, ...] = (
    "numero_de_campos",
    "cnpj_ausente",
    "cnpj_invalido",
    "data_ausente",
    "data_invalida",
    "fora_do_mes",
    "valor_invalido",
    "patrimonio_ausente",
    "patrimonio_nao_positivo",
    "duplicado",
)

# (precision, scale) of the decimal columns, in the order valor_invalido checks them.
DECIMAIS: dict[str, tuple[int, int]] = {
    "VL_TOTAL": (17, 2),
    "VL_QUOTA": (27, 12),
    "VL_PATRIM_LIQ": (17, 2),
    "CAPTC_DIA": (17, 2),
    "RESG_DIA": (17, 2),
}
VALORES: tuple[str, ...] = (*DECIMAIS, "NR_COTST")

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

BOM_LATIN1 = "\xef\xbb\xbf"  # the UTF-8 BOM bytes EF BB BF read as latin-1

# Wide enough that no step of the gold formulas rounds anything the tests can see.
CTX = Context(prec=50)

_DECIMAL_RE = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]+))?")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_CNPJ_RE = re.compile(r"[0-9]{14}")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BronzeRow:
    """One non-empty physical line after the header, as read (nothing validated)."""

    numero_linha: int
    registro: str
    campos: tuple[str, ...]


@dataclass(frozen=True)
class SilverRow:
    """One valid, deduplicated row in the canonical schema shared by all layouts."""

    tp_fundo: str | None
    cnpj_fundo: str
    id_subclasse: str | None
    dt_comptc: dt.date
    vl_total: Decimal | None
    vl_quota: Decimal | None
    vl_patrim_liq: Decimal | None
    captc_dia: Decimal | None
    resg_dia: Decimal | None
    nr_cotst: int | None
    numero_linha: int
    ano: int
    mes: int

    @property
    def key(self) -> tuple[str, str | None, dt.date]:
        """Natural key (CNPJ, subclass, date); None is a value of its own for the subclass."""
        return (self.cnpj_fundo, self.id_subclasse, self.dt_comptc)

    def data(self) -> tuple[object, ...]:
        """Every column except the lineage (numero_linha): what a restatement can change."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "numero_linha")


@dataclass(frozen=True)
class RejectRow:
    """A bronze row that did not reach silver, with the first rule it broke."""

    numero_linha: int
    registro: str
    motivo: str


@dataclass(frozen=True)
class GoldRow:
    """KPIs of one (fund, subclass, month)."""

    cnpj_fundo: str
    id_subclasse: str | None
    ano: int
    mes: int
    tp_fundo: str | None
    dias_com_informe: int
    total_captacao: Decimal
    total_resgate: Decimal
    fluxo_liquido: Decimal
    patrimonio_medio: Decimal
    patrimonio_inicial: Decimal
    patrimonio_final: Decimal
    cota_inicial: Decimal | None
    cota_final: Decimal | None
    cota_maxima: Decimal | None
    cota_minima: Decimal | None
    variacao_cota: Decimal | None
    cotistas_inicial: int | None
    cotistas_final: int | None
    variacao_cotistas: int | None
    taxa_resgate: Decimal
    fluxo_liquido_pct_pl: Decimal
    dias_fluxo_negativo: int
    em_risco: bool
    rendimento: Decimal | None
    residuo_conciliacao: Decimal | None
    residuo_pct_pl: Decimal | None


@dataclass(frozen=True)
class ExpectedMonth:
    """Everything the pipeline must produce for one month's file, in one place."""

    ano: int
    mes: int
    arquivo: str | None
    sha256: str
    layout: str
    colunas: tuple[str, ...]
    bronze: list[BronzeRow]
    silver: list[SilverRow]
    rejects: list[RejectRow]
    gold: list[GoldRow]
    rejects_by_reason: dict[str, int]


# --- reading --------------------------------------------------------------------------------


def _lines(csv: bytes) -> list[str]:
    """Physical lines, latin-1, one trailing CR removed each (CRLF and LF both accepted)."""
    text = csv.decode("latin-1")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _header(lines: list[str]) -> tuple[str, str]:
    """(layout, header line without BOM); raises ValueError for any unknown header."""
    header = lines[0]
    if header.startswith(BOM_LATIN1):
        header = header[len(BOM_LATIN1) :]
    seen = tuple(c.strip(WHITESPACE).upper() for c in header.split(";"))
    for layout, columns in LAYOUTS.items():
        if seen == columns:
            return layout, header
    raise ValueError(f"unknown inf_diario header, columns seen: {list(seen)!r}")


def read_layout(csv: bytes) -> str:
    """Layout letter ("a", "b" or "c") of a file, from its header only (never from the month)."""
    return _header(_lines(csv))[0]


def bronze_rows(csv: bytes) -> list[BronzeRow]:
    """Every non-empty line after the header; physical line numbers (header is line 1)."""
    lines = _lines(csv)
    _header(lines)
    return [
        BronzeRow(numero_linha=n, registro=line, campos=tuple(line.split(";")))
        for n, line in enumerate(lines[1:], start=2)
        if line != ""
    ]


# --- silver ---------------------------------------------------------------------------------


def _valid_decimal(text: str, precision: int, scale: int) -> bool:
    """Would the text fit DECIMAL(precision, scale) without rounding or overflow."""
    m = _DECIMAL_RE.fullmatch(text)
    if m is None:
        return False
    integer, fraction = m.group(1), m.group(2) or ""
    return len(fraction) <= scale and len(integer.lstrip("0")) <= precision - scale


def _valid_int32(text: str) -> bool:
    """Is the text a plain integer within the signed 32-bit range."""
    return _INT_RE.fullmatch(text) is not None and INT32_MIN <= int(text) <= INT32_MAX


def _parse_date(text: str) -> dt.date | None:
    """YYYY-MM-DD with ASCII digits and a real calendar date, else None."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:  # month 13, Feb 30, year 0000 ...
        return None


def _to_decimal(text: str, scale: int) -> Decimal | None:
    """Stripped text to a Decimal at the column's scale; empty is NULL; no negative zero."""
    if text == "":
        return None
    value = Decimal(text).quantize(Decimal(1).scaleb(-scale), context=CTX)
    return value.copy_abs() if value == 0 else value


def _none_if_empty(text: str) -> str | None:
    """Text columns: stripped, and NULL rather than an empty string."""
    text = text.strip(WHITESPACE)
    return text or None


def _check(row: BronzeRow, layout: str, ano: int, mes: int) -> tuple[str | None, SilverRow | None]:
    """(reject reason, None) for the first rule broken, else (None, the silver row)."""
    columns = LAYOUTS[layout]
    if len(row.campos) != len(columns):
        return "numero_de_campos", None
    f = dict(zip(columns, row.campos, strict=True))
    cnpj_col = "CNPJ_FUNDO_CLASSE" if layout == "c" else "CNPJ_FUNDO"

    cnpj = f[cnpj_col].strip(WHITESPACE)
    if cnpj == "":
        return "cnpj_ausente", None
    cnpj = cnpj.replace(".", "").replace("/", "").replace("-", "")
    if _CNPJ_RE.fullmatch(cnpj) is None:
        return "cnpj_invalido", None

    date_text = f["DT_COMPTC"].strip(WHITESPACE)
    if date_text == "":
        return "data_ausente", None
    date = _parse_date(date_text)
    if date is None:
        return "data_invalida", None
    if (date.year, date.month) != (ano, mes):
        return "fora_do_mes", None

    values = {c: f[c].strip(WHITESPACE) for c in VALORES}
    for col in VALORES:
        text = values[col]
        if text == "":
            continue
        ok = _valid_int32(text) if col == "NR_COTST" else _valid_decimal(text, *DECIMAIS[col])
        if not ok:
            return "valor_invalido", None

    if values["VL_PATRIM_LIQ"] == "":
        return "patrimonio_ausente", None
    if Decimal(values["VL_PATRIM_LIQ"]) <= 0:
        return "patrimonio_nao_positivo", None

    tp_col = {"a": None, "b": "TP_FUNDO", "c": "TP_FUNDO_CLASSE"}[layout]
    silver = SilverRow(
        tp_fundo=_none_if_empty(f[tp_col]) if tp_col else None,
        cnpj_fundo=cnpj,
        id_subclasse=_none_if_empty(f["ID_SUBCLASSE"]) if layout == "c" else None,
        dt_comptc=date,
        vl_total=_to_decimal(values["VL_TOTAL"], 2),
        vl_quota=_to_decimal(values["VL_QUOTA"], 12),
        vl_patrim_liq=_to_decimal(values["VL_PATRIM_LIQ"], 2),
        captc_dia=_to_decimal(values["CAPTC_DIA"], 2),
        resg_dia=_to_decimal(values["RESG_DIA"], 2),
        nr_cotst=int(values["NR_COTST"]) if values["NR_COTST"] else None,
        numero_linha=row.numero_linha,
        ano=ano,
        mes=mes,
    )
    return None, silver


def _key_order(key: tuple[str, str | None, dt.date]) -> tuple[str, bool, str, dt.date]:
    """Sort order of the natural key with a NULL subclass first."""
    cnpj, sub, date = key
    return (cnpj, sub is not None, sub or "", date)


def clean(csv: bytes, ano: int, mes: int) -> tuple[list[SilverRow], list[RejectRow]]:
    """Silver rows (sorted by key) and rejects (sorted by line) for the month (ano, mes)."""
    layout = read_layout(csv)
    rejects: list[RejectRow] = []
    kept: dict[tuple[str, str | None, dt.date], tuple[BronzeRow, SilverRow]] = {}
    for row in bronze_rows(csv):  # ascending line numbers, so the last one seen wins
        motivo, silver = _check(row, layout, ano, mes)
        if silver is None:
            rejects.append(RejectRow(row.numero_linha, row.registro, str(motivo)))
            continue
        earlier = kept.get(silver.key)
        if earlier is not None:
            rejects.append(RejectRow(earlier[0].numero_linha, earlier[0].registro, "duplicado"))
        kept[silver.key] = (row, silver)
    rejects.sort(key=lambda r: r.numero_linha)
    return sorted((s for _, s in kept.values()), key=lambda s: _key_order(s.key)), rejects


# --- gold -----------------------------------------------------------------------------------


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    """Exact sum at 2 decimals with NULL as 0."""
    total = Decimal("0.00")
    for v in values:
        if v is not None:
            total = CTX.add(total, v)
    return total


# The reconciliation's bounds: a day's return is computed while PL in cents × |Δquota| in units
# of 1e-12 has fewer than 38 digits, and kept while it fits DECIMAL(27,2), as a month's sum.
PRODUCT_LIMIT = Decimal(10) ** 38
MONEY_SUM_LIMIT = Decimal(10) ** 25
CENT = Decimal("0.01")


def _rendimento_dia(pl_anterior: Decimal, anterior: Decimal | None, cota: Decimal | None):
    """pl_anterior × (cota / anterior − 1), half-up to the cent; None without two positive
    quotas or beyond the bounds."""
    if anterior is None or cota is None or anterior <= 0 or cota <= 0:
        return None
    produto = CTX.multiply(pl_anterior, CTX.subtract(cota, anterior))
    if abs(produto) * 100 * 10**12 >= PRODUCT_LIMIT:
        return None
    value = CTX.divide(produto, anterior).quantize(CENT, rounding=ROUND_HALF_UP, context=CTX)
    return value if abs(value) < MONEY_SUM_LIMIT else None


def _reconciliation(rows: list[SilverRow]) -> tuple[Decimal | None, Decimal | None]:
    """(rendimento, residuo_conciliacao) of one fund-month's rows in date order: sums over each
    report after the first against the one before; None with one report or an unknown day."""
    rendimentos, residuos = [], []
    for anterior, row in itertools.pairwise(rows):
        rendimento = _rendimento_dia(anterior.vl_patrim_liq, anterior.vl_quota, row.vl_quota)
        if rendimento is None:
            return None, None
        fluxo = (row.captc_dia or Decimal(0)) - (row.resg_dia or Decimal(0))
        rendimentos.append(rendimento)
        residuos.append(row.vl_patrim_liq - anterior.vl_patrim_liq - rendimento - fluxo)
    if not rendimentos:
        return None, None
    sums = (_sum(rendimentos), _sum(residuos))
    return sums if all(abs(s) < MONEY_SUM_LIMIT for s in sums) else (None, None)


def gold(silver: list[SilverRow]) -> list[GoldRow]:
    """One KPI row per (cnpj_fundo, id_subclasse, ano, mes), sorted with a NULL subclass first."""
    groups: dict[tuple[str, str | None, int, int], list[SilverRow]] = {}
    for s in silver:
        groups.setdefault((s.cnpj_fundo, s.id_subclasse, s.ano, s.mes), []).append(s)

    out: list[GoldRow] = []
    for (cnpj, sub, ano, mes), rows in groups.items():
        rows = sorted(rows, key=lambda s: s.dt_comptc)
        dates = [s.dt_comptc for s in rows]
        if len(set(dates)) != len(dates):
            raise ValueError(f"silver has duplicate keys for {(cnpj, sub, ano, mes)}")
        first, last = rows[0], rows[-1]
        n = len(rows)

        captacao = _sum(s.captc_dia for s in rows)
        resgate = _sum(s.resg_dia for s in rows)
        fluxo = CTX.subtract(captacao, resgate)
        pl_inicial, pl_final = first.vl_patrim_liq, last.vl_patrim_liq
        if pl_inicial is None or pl_final is None or any(s.vl_patrim_liq is None for s in rows):
            raise ValueError(f"silver row without vl_patrim_liq in {(cnpj, sub, ano, mes)}")
        soma_pl = _sum(s.vl_patrim_liq for s in rows)
        medio = CTX.divide(soma_pl, Decimal(n))

        quotas = [s.vl_quota for s in rows if s.vl_quota is not None]
        variacao_cota = None
        if first.vl_quota is not None and last.vl_quota is not None and first.vl_quota != 0:
            variacao_cota = CTX.subtract(CTX.divide(last.vl_quota, first.vl_quota), Decimal(1))
        variacao_cotistas = None
        if first.nr_cotst is not None and last.nr_cotst is not None:
            variacao_cotistas = last.nr_cotst - first.nr_cotst

        rendimento, residuo = _reconciliation(rows)
        negativos = sum(
            1
            for s in rows
            if (s.captc_dia or Decimal(0)) - (s.resg_dia or Decimal(0)) < 0  # exact: 2 decimals
        )
        out.append(
            GoldRow(
                cnpj_fundo=cnpj,
                id_subclasse=sub,
                ano=ano,
                mes=mes,
                tp_fundo=last.tp_fundo,
                dias_com_informe=len(set(dates)),
                total_captacao=captacao,
                total_resgate=resgate,
                fluxo_liquido=fluxo,
                patrimonio_medio=medio,
                patrimonio_inicial=pl_inicial,
                patrimonio_final=pl_final,
                cota_inicial=first.vl_quota,
                cota_final=last.vl_quota,
                cota_maxima=max(quotas, default=None),
                cota_minima=min(quotas, default=None),
                variacao_cota=variacao_cota,
                cotistas_inicial=first.nr_cotst,
                cotistas_final=last.nr_cotst,
                variacao_cotistas=variacao_cotistas,
                # x / (soma/n) computed as x*n/soma: one rounding instead of two.
                taxa_resgate=CTX.divide(CTX.multiply(resgate, Decimal(n)), soma_pl),
                fluxo_liquido_pct_pl=CTX.divide(CTX.multiply(fluxo, Decimal(n)), soma_pl),
                dias_fluxo_negativo=negativos,
                em_risco=fluxo < 0,
                rendimento=rendimento,
                residuo_conciliacao=residuo,
                residuo_pct_pl=(
                    None
                    if residuo is None
                    else CTX.divide(CTX.multiply(residuo, Decimal(n)), soma_pl)
                ),
            )
        )
    out.sort(key=lambda g: (*_key_order((g.cnpj_fundo, g.id_subclasse, dt.date.min)), g.ano, g.mes))
    return out


# --- bundles --------------------------------------------------------------------------------


def expected_month(csv: bytes, ano: int, mes: int, arquivo: str | None = None) -> ExpectedMonth:
    """Bronze, silver, rejects, gold and reject counts of one month's file, checked for balance."""
    lines = _lines(csv)
    layout, _ = _header(lines)
    bronze = bronze_rows(csv)
    silver, rejects = clean(csv, ano, mes)
    if len(bronze) != len(silver) + len(rejects):
        raise AssertionError("oracle broke its own invariant: bronze = silver + rejects")
    counts = {m: sum(1 for r in rejects if r.motivo == m) for m in MOTIVOS}
    return ExpectedMonth(
        ano=ano,
        mes=mes,
        arquivo=arquivo,
        sha256=hashlib.sha256(csv).hexdigest(),
        layout=layout,
        colunas=LAYOUTS[layout],
        bronze=bronze,
        silver=silver,
        rejects=rejects,
        gold=gold(silver),
        rejects_by_reason={m: c for m, c in counts.items() if c},
    )


def diff_silver(old: list[SilverRow], new: list[SilverRow]) -> tuple[int, int, int]:
    """(inserted, updated, deleted) keys a MERGE of new over old must report; lineage ignored."""
    before = _by_key(old)
    after = _by_key(new)
    inserted = sum(1 for k in after if k not in before)
    deleted = sum(1 for k in before if k not in after)
    updated = sum(1 for k, s in after.items() if k in before and before[k].data() != s.data())
    return inserted, updated, deleted


def _by_key(rows: list[SilverRow]) -> dict[tuple[str, str | None, dt.date], SilverRow]:
    """Index silver by key; a repeated key means the input is not a silver table."""
    index: dict[tuple[str, str | None, dt.date], SilverRow] = {}
    for s in rows:
        if s.key in index:
            raise ValueError(f"duplicate silver key {s.key!r}")
        index[s.key] = s
    return index

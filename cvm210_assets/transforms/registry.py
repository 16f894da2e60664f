"""The fund registry: CVM's registration files turned into one row per fund, class or subclass.

Pure functions from the files' bytes to an Arrow table (the registry is small: ~100 k rows),
so the daily registry step needs no Spark. Sources, and the rules that make the key unique:

- `registro_fundo_classe.zip` (CVM 175): `registro_classe.csv` gives one row per class, keyed
  by its CNPJ (`CNPJ_Classe`: the CNPJ the daily reports carry); `registro_subclasse.csv` one
  row per subclass, keyed by (class CNPJ, `ID_Subclasse`); `registro_fundo.csv` gives each
  class its fund's manager and administrator, and a row of its own for a fund without
  classes whose CNPJ is no class's.
- `cad_fi.csv` (before CVM 175): one row per fund CNPJ the new registry does not have.

Duplicates, resolved the same way every time:
- a fund listed on several rows (one per manager, as co-managed funds are): one row, its
  managers' names joined with " / " sorted by name, their CNPJs in the same order; the other
  columns from the last of its rows;
- a class or subclass listed twice under one id: the last row;
- two registrations with one CNPJ (or one (CNPJ, subclass)): the one whose status
  (`Data_Inicio_Situacao` / `DT_INI_SIT`) is the most recent, then the highest registry id
  (cad_fi: the later line); a cancelled fund's latest status is CANCELADA, not the older one;
- a CNPJ in both registries: registro_fundo_classe wins.
Each row keeps its status's date (`data_situacao`) and, when the status says cancelled
(CANCELADA, Cancelado…: accents and case aside), the cancellation's date (`data_cancelamento`:
registro_fundo's Data_Cancelamento or cad_fi's DT_CANCEL, else the status's date), which the
`encerramento` event reads (docs/events.md). A subclass without a status of its own takes its
class's.
CNPJs are digits (punctuation removed) left-padded to 14; a row whose CNPJ is not 14 digits
then is counted and left out.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from pyspark.sql.pandas.types import to_arrow_schema

from cvm210_assets.lake.schemas import FUND_REGISTRY

if TYPE_CHECKING:
    import pyarrow as pa

FONTE_NOVA = "registro_fundo_classe"
FONTE_ANTIGA = "cad_fi"

# Columns read from each file (names as CVM publishes them); the others are ignored.
FUNDO_COLUMNS = (
    "ID_Registro_Fundo",
    "CNPJ_Fundo",
    "Tipo_Fundo",
    "Denominacao_Social",
    "Situacao",
    "Data_Inicio_Situacao",
    "CNPJ_Administrador",
    "Administrador",
    "Tipo_Pessoa_Gestor",
    "CPF_CNPJ_Gestor",
    "Gestor",
)
CLASSE_COLUMNS = (
    "ID_Registro_Fundo",
    "ID_Registro_Classe",
    "CNPJ_Classe",
    "Tipo_Classe",
    "Denominacao_Social",
    "Situacao",
    "Data_Inicio_Situacao",
    "Classificacao",
    "Classe_Cotas",
    "Classificacao_Anbima",
)
SUBCLASSE_COLUMNS = (
    "ID_Registro_Classe",
    "ID_Subclasse",
    "Denominacao_Social",
    "Situacao",
    "Data_Inicio_Situacao",
)
CAD_FI_COLUMNS = (
    "CNPJ_FUNDO",
    "DENOM_SOCIAL",
    "SIT",
    "DT_INI_SIT",
    "CLASSE",
    "FUNDO_COTAS",
    "CNPJ_ADMIN",
    "ADMIN",
    "PF_PJ_GESTOR",
    "CPF_CNPJ_GESTOR",
    "GESTOR",
)
# Columns that some copies lack (the 2018 cad_fi has neither TP_FUNDO nor CLASSE_ANBIMA):
# NULL when absent.
FUNDO_OPTIONAL = ("Data_Cancelamento",)
CAD_FI_OPTIONAL = ("TP_FUNDO", "CLASSE_ANBIMA", "DT_CANCEL")

_PUNCTUATION = re.compile(r"[.\-/\s]")
_CAD_CLASS_PREFIX = re.compile(r"^Fundo (de |da |do )?", re.IGNORECASE)


class RegistryFileError(ValueError):
    """A registry file CVM changed in a way the transform cannot read; names what it saw."""


@dataclass(frozen=True)
class CsvFile:
    """A registry CSV as read: its rows by column name, and the lines that could not be read."""

    name: str
    rows: list[dict[str, str]]
    bad_lines: list[int] = field(default_factory=list)


def read_csv(
    name: str, data: bytes, required: Sequence[str], optional: Sequence[str] = ()
) -> CsvFile:
    """A CVM CSV (latin-1, `;`, no quoting, one header) as rows of the columns wanted.

    A line with another number of fields than the header (a `;` inside a name) is not
    guessed at: its line number is returned in `bad_lines`.
    """
    text = data.decode("latin-1").removeprefix("\xef\xbb\xbf")
    # split("\n"), not splitlines(): latin-1 \x85 is a character of a name, not a line break.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    header = [c.strip() for c in lines[0].split(";")]
    missing = [c for c in required if c not in header]
    if missing:
        raise RegistryFileError(f"{name}: columns {missing} missing; columns seen: {header}")
    wanted = [(c, header.index(c)) for c in (*required, *optional) if c in header]
    rows: list[dict[str, str]] = []
    bad: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split(";")
        if len(fields) != len(header):
            bad.append(number)
            continue
        rows.append({c: fields[i].strip() for c, i in wanted})
    return CsvFile(name, rows, bad)


def cnpj14(text: str | None) -> str | None:
    """Digits of a CNPJ left-padded to 14 (CVM's CSVs print them as numbers), else None."""
    digits = _PUNCTUATION.sub("", text or "")
    if not digits.isdigit() or len(digits) > 14:
        return None
    return digits.zfill(14)


def _person_id(kind: str | None, text: str | None) -> str | None:
    """A manager's CPF (PF: 11 digits) or CNPJ (14 digits), padded as its kind says."""
    digits = _PUNCTUATION.sub("", text or "")
    if not digits.isdigit():
        return None
    return digits.zfill(11 if (kind or "").upper() == "PF" else 14)


def _text(value: str | None) -> str | None:
    return value or None


def _flag(value: str | None) -> bool | None:
    """CVM's S / N flags; anything else (mostly empty) is unknown."""
    return {"S": True, "N": False}.get((value or "").upper())


def _cad_classe(value: str | None) -> str | None:
    """cad_fi's 'Fundo de Ações' as CVM 175's 'Ações', so classes group across registries."""
    return _text(_CAD_CLASS_PREFIX.sub("", value or ""))


def _managers(rows: Iterable[Mapping[str, str]], kind: str, cnpj: str, name: str) -> tuple:
    """(names, ids) of the distinct managers of a fund's rows, joined, sorted by name."""
    pairs = sorted(
        {(row[name], _person_id(row.get(kind), row[cnpj]) or "") for row in rows if row[name]}
    )
    if not pairs:
        return None, None
    return " / ".join(p[0] for p in pairs), " / ".join(p[1] for p in pairs) or None


def _date(value: str | None) -> dt.date | None:
    """An ISO date as CVM prints it (2024-01-02); anything else (mostly empty) is unknown."""
    try:
        return dt.date.fromisoformat(value or "")
    except ValueError:
        return None


def cancelled(situacao: str | None) -> bool:
    """The status says the registration is cancelled: cad_fi's CANCELADA, CVM 175's Cancelada
    or Cancelado, whatever the accents and case."""
    text = unicodedata.normalize("NFKD", situacao or "")
    plain = "".join(c for c in text if not unicodedata.combining(c))
    return plain.strip().upper().startswith("CANCELAD")


def _situation(situacao: str | None, inicio: str | None, cancelamento: str | None = None) -> dict:
    """The status columns of a row: the status, its date, and the cancellation's date when the
    status is a cancellation (the file's own date of it, else the status's)."""
    since = _date(inicio)
    return {
        "situacao": _text(situacao),
        "data_situacao": since,
        "data_cancelamento": (_date(cancelamento) or since) if cancelled(situacao) else None,
    }


def _id(value: str) -> int:
    return int(value) if value.isdigit() else -1


@dataclass(frozen=True)
class Registry:
    """The registry table and what was left out of it (counted for the asset's metadata)."""

    table: pa.Table
    ignored: dict[str, int]


def build_registry(
    fundos: CsvFile,
    classes: CsvFile,
    subclasses: CsvFile,
    cad_fi: CsvFile,
    written_at: dt.datetime,
) -> Registry:
    """One row per (cnpj_fundo, id_subclasse) under the rules of the module's docstring."""
    ignored = {
        f"{f.name}:linhas_ilegiveis": len(f.bad_lines)
        for f in (fundos, classes, subclasses, cad_fi)
    }
    funds = _funds(fundos.rows)
    rows: dict[tuple[str, str | None], tuple[tuple, dict]] = {}

    def offer(key: tuple[str, str | None], rank: tuple, row: dict) -> None:
        if key not in rows or rank > rows[key][0]:
            rows[key] = (rank, row)

    class_by_id = {row["ID_Registro_Classe"]: row for row in classes.rows}  # last row wins
    class_rows: dict[str, dict] = {}
    bad_cnpj = 0
    for class_id, row in class_by_id.items():
        cnpj = cnpj14(row["CNPJ_Classe"])
        if cnpj is None:
            bad_cnpj += 1
            continue
        fund = funds.get(row["ID_Registro_Fundo"], {})
        record = {
            "cnpj_fundo": cnpj,
            "id_subclasse": None,
            "nome": _text(row["Denominacao_Social"]),
            "tipo": _text(row["Tipo_Classe"]) or fund.get("tipo"),
            "classe": _text(row["Classificacao"]),
            "classe_anbima": _text(row["Classificacao_Anbima"]),
            "gestor": fund.get("gestor"),
            "cnpj_gestor": fund.get("cnpj_gestor"),
            "administrador": fund.get("administrador"),
            "cnpj_administrador": fund.get("cnpj_administrador"),
            **_situation(row["Situacao"], row["Data_Inicio_Situacao"]),
            "fundo_de_cotas": _flag(row["Classe_Cotas"]),
            "fonte": FONTE_NOVA,
        }
        class_rows[class_id] = record
        offer((cnpj, None), (row["Data_Inicio_Situacao"], _id(class_id)), record)

    orphans = 0
    subclass_by_id = {(r["ID_Registro_Classe"], r["ID_Subclasse"]): r for r in subclasses.rows}
    for (class_id, subclass_id), row in subclass_by_id.items():
        parent = class_rows.get(class_id)
        if parent is None or not subclass_id:
            orphans += 1
            continue
        own = row["Situacao"]
        record = {
            **parent,
            "id_subclasse": subclass_id,
            "nome": _text(row["Denominacao_Social"]) or parent["nome"],
            **(_situation(own, row["Data_Inicio_Situacao"]) if own else {}),
        }
        key = (parent["cnpj_fundo"], subclass_id)
        offer(key, (row["Data_Inicio_Situacao"], _id(class_id)), record)

    class_cnpjs = {cnpj for cnpj, _ in rows}
    with_classes = {row["ID_Registro_Fundo"] for row in class_by_id.values()}
    fund_rows: dict[tuple[str, str | None], tuple[tuple, dict]] = {}
    for fund_id, fund in funds.items():
        cnpj = cnpj14(fund["cnpj"])
        if cnpj is None:
            bad_cnpj += 1
            continue
        if fund_id in with_classes or cnpj in class_cnpjs:
            continue  # the daily reports are its classes'
        record = {
            "cnpj_fundo": cnpj,
            "id_subclasse": None,
            "nome": fund["nome"],
            "tipo": fund["tipo"],
            "classe": None,
            "classe_anbima": None,
            "gestor": fund["gestor"],
            "cnpj_gestor": fund["cnpj_gestor"],
            "administrador": fund["administrador"],
            "cnpj_administrador": fund["cnpj_administrador"],
            **_situation(fund["situacao"], fund["data_situacao"], fund["data_cancelamento"]),
            "fundo_de_cotas": None,
            "fonte": FONTE_NOVA,
        }
        rank = (fund["data_situacao"], _id(fund_id))
        if (cnpj, None) not in fund_rows or rank > fund_rows[(cnpj, None)][0]:
            fund_rows[(cnpj, None)] = (rank, record)
    rows |= fund_rows

    old, old_bad = _cad_fi(cad_fi.rows)
    for cnpj, record in old.items():
        if (cnpj, None) not in rows:
            rows[(cnpj, None)] = ((), record)

    ignored |= {
        "cnpj_invalido": bad_cnpj + old_bad,
        "subclasse_sem_classe": orphans,
    }
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], item[0][1] is not None, item[0]))
    records = [{**row, "dh_atualizacao": written_at} for _, (_, row) in ordered]
    import pyarrow as pa

    return Registry(pa.Table.from_pylist(records, schema=arrow_schema()), ignored)


def _funds(rows: Sequence[Mapping[str, str]]) -> dict[str, dict]:
    """registro_fundo by ID_Registro_Fundo: the last row's columns, every row's managers."""
    by_id: dict[str, list[Mapping[str, str]]] = {}
    for row in rows:
        by_id.setdefault(row["ID_Registro_Fundo"], []).append(row)
    funds = {}
    for fund_id, group in by_id.items():
        last = group[-1]
        gestor, cnpj_gestor = _managers(group, "Tipo_Pessoa_Gestor", "CPF_CNPJ_Gestor", "Gestor")
        funds[fund_id] = {
            "cnpj": last["CNPJ_Fundo"],
            "nome": _text(last["Denominacao_Social"]),
            "tipo": _text(last["Tipo_Fundo"]),
            "situacao": last["Situacao"],
            "data_situacao": last["Data_Inicio_Situacao"],
            "data_cancelamento": last.get("Data_Cancelamento"),
            "gestor": gestor,
            "cnpj_gestor": cnpj_gestor,
            "administrador": _text(last["Administrador"]),
            "cnpj_administrador": cnpj14(last["CNPJ_Administrador"]),
        }
    return funds


def _cad_fi(rows: Sequence[Mapping[str, str]]) -> tuple[dict[str, dict], int]:
    """cad_fi by CNPJ: the row with the latest status wins (then the later line); the managers
    are those of every row with that same status and status date."""
    by_cnpj: dict[str, list[tuple[int, Mapping[str, str]]]] = {}
    bad = 0
    for line, row in enumerate(rows):
        cnpj = cnpj14(row["CNPJ_FUNDO"])
        if cnpj is None:
            bad += 1
            continue
        by_cnpj.setdefault(cnpj, []).append((line, row))
    out = {}
    for cnpj, group in by_cnpj.items():
        _, last = max(group, key=lambda item: (item[1]["DT_INI_SIT"], item[0]))
        same = [
            r for _, r in group if (r["SIT"], r["DT_INI_SIT"]) == (last["SIT"], last["DT_INI_SIT"])
        ]
        gestor, cnpj_gestor = _managers(same, "PF_PJ_GESTOR", "CPF_CNPJ_GESTOR", "GESTOR")
        out[cnpj] = {
            "cnpj_fundo": cnpj,
            "id_subclasse": None,
            "nome": _text(last["DENOM_SOCIAL"]),
            "tipo": _text(last.get("TP_FUNDO")),
            "classe": _cad_classe(last["CLASSE"]),
            "classe_anbima": _text(last.get("CLASSE_ANBIMA")),
            "gestor": gestor,
            "cnpj_gestor": cnpj_gestor,
            "administrador": _text(last["ADMIN"]),
            "cnpj_administrador": cnpj14(last["CNPJ_ADMIN"]),
            **_situation(last["SIT"], last["DT_INI_SIT"], last.get("DT_CANCEL")),
            "fundo_de_cotas": _flag(last["FUNDO_COTAS"]),
            "fonte": FONTE_ANTIGA,
        }
    return out, bad


@cache
def arrow_schema() -> pa.Schema:
    """fund_registry's schema in Arrow, built when first used: not when the code location loads,
    which would import pyarrow and numpy (0.15 s) for runs that never build a registry."""
    return to_arrow_schema(FUND_REGISTRY, timezone="UTC")

"""Synthetic CVM inf_diario CSVs in CVM's exact dialect, so tests and demos need no internet.

Volume matters as much as format (the pipeline is designed for 1.5 M rows a month), so values
are drawn with numpy for all funds and days at once and the lines are printed in bulk with one
`%` format per chunk of rows. Money and quotas are kept as integers (cents, 1e-8 of a quota)
and printed from them, so every value has exactly the decimals CVM prints. A fund's net assets
follow its printed quota and its flows to the cent, so its flows reconcile as a real fund's do
(gold's residuo_conciliacao is 0.00; dirt and restatements break that, as they would).

Measured on the 2-core development machine (Python 3.11, numpy 2.4, other jobs running):
MonthSpec(2025, 1, "c", n_funds=70_000) gives 1,478,578 rows (22 business days, 133 MB of CSV)
in 3.2-3.4 s, 3.5-3.7 s with dirt=True; restate() of that month takes about 4.5 s and
monthly_zip() about 4.5 s (36 MB zipped).
"""

from __future__ import annotations

import calendar
import collections
import gc
import io
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources

import numpy as np

LAYOUT_HEADERS: dict[str, str] = {
    "a": "CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST",
    "b": (
        "TP_FUNDO;CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST"
    ),
    "c": (
        "TP_FUNDO_CLASSE;CNPJ_FUNDO_CLASSE;ID_SUBCLASSE;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;"
        "CAPTC_DIA;RESG_DIA;NR_COTST"
    ),
}

# Brazil's fixed national holidays (month, day); CVM simply has no rows on them.
_HOLIDAYS = frozenset({(1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (12, 25)})

_W1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_W2 = (6, *_W1)

# Fund types and rough shares as they appear in the files of each layout.
_TP_FUNDO = (
    ("FI", 0.70),
    ("FIF", 0.06),
    ("FIDC", 0.10),
    ("FII", 0.04),
    ("FIP", 0.05),
    ("FACFIF", 0.03),
    ("FAPI", 0.02),
)
_TP_FUNDO_CLASSE = (("FI", 0.78), ("CLASSES - FIF", 0.14), ("FAPI", 0.02), ("FIDC", 0.06))

_SUBCLASS_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))

# The printed part of a row after its text columns; the money columns take (units, cents) and
# VL_QUOTA takes (units, 1e-8 units), padded to CVM's 12 decimals.
_NUMBERS = ";%d.%02d;%d.%08d0000;%d.%02d;%d.%02d;%d.%02d;%d"
_CHUNK_ROWS = 100_000

DIRT_KINDS: tuple[str, ...] = (
    "exact_duplicate",
    "duplicate_key",
    "zero_pl",
    "negative_pl",
    "empty_cnpj",
    "empty_date",
    "date_outside_month",
    "non_numeric",
    "too_many_decimals",
    "extra_field",
    "missing_field",
    "bad_check_digits",
    "absurd_quota",
    "latin1_text",
    "empty_nr_cotst",
)
"""The bad rows that `dirt=True` adds, one of each, at seeded random places in the file.

The two duplicates are added rows; every other kind replaces a clean row and keeps its key
(CNPJ, ID_SUBCLASSE, DT_COMPTC) unless the kind is about the key, so each kind is exactly one
row that a reader must reject or repair:

- exact_duplicate: a copy of a row right after it (as in CVM's 201901 file)
- duplicate_key: a row's key again, later in the file, with other VL_TOTAL, VL_PATRIM_LIQ,
  VL_QUOTA and CAPTC_DIA (the later row is the one to keep)
- zero_pl: VL_PATRIM_LIQ `0.00`
- negative_pl: VL_PATRIM_LIQ with a leading `-` (e.g. `-35432568.51`)
- empty_cnpj: CNPJ empty
- empty_date: DT_COMPTC empty
- date_outside_month: DT_COMPTC the 1st of the next month (e.g. `2025-02-01` in 2025-01)
- non_numeric: VL_QUOTA `abc`
- too_many_decimals: CAPTC_DIA `1.234`
- extra_field: `;1` appended (one field too many)
- missing_field: NR_COTST dropped with its `;` (one field too few)
- bad_check_digits: CNPJ punctuated with 14 digits, its last check digit +1 (mod 10)
- absurd_quota: VL_QUOTA `99999999999.000000000000`
- latin1_text: TP_FUNDO / TP_FUNDO_CLASSE `FUNDAÇÃO` (bytes `C7 C3` in latin-1); layout (a)
  has no text column, so its files have no such row
- empty_nr_cotst: NR_COTST empty (the `;` stays)
"""


def cnpj_check_digits(base12: str) -> str:
    """The two check digits of a CNPJ (Receita Federal's modulo-11 algorithm)."""
    if len(base12) != 12 or not (base12.isascii() and base12.isdigit()):
        raise ValueError(f"a CNPJ base has 12 digits, got {base12!r}")
    digits = [int(c) for c in base12]
    first = _check_digit(sum(w * d for w, d in zip(_W1, digits, strict=True)))
    second = _check_digit(sum(w * d for w, d in zip(_W2, [*digits, first], strict=True)))
    return f"{first}{second}"


def make_cnpj(base12: str) -> str:
    """A valid 14-digit CNPJ from its 12-digit root and branch."""
    return base12 + cnpj_check_digits(base12)


def format_cnpj(digits14: str) -> str:
    """CNPJ punctuated as CVM prints it: `00.017.024/0001-53`."""
    if len(digits14) != 14 or not (digits14.isascii() and digits14.isdigit()):
        raise ValueError(f"a CNPJ has 14 digits, got {digits14!r}")
    d = digits14
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}"


def business_days(ano: int, mes: int) -> list[date]:
    """Days CVM has rows for: weekdays that are not fixed national holidays."""
    n_days = calendar.monthrange(ano, mes)[1]
    days = (date(ano, mes, k) for k in range(1, n_days + 1))
    return [d for d in days if d.weekday() < 5 and (d.month, d.day) not in _HOLIDAYS]


@dataclass(frozen=True)
class MonthSpec:
    """What to generate: one month in one layout. The same spec always gives the same bytes.

    CNPJs and fund sizes depend only on `seed` and `n_funds` (in layout (c) a few CNPJs become
    classes with subclasses), so the months of one seed share their funds, as real months do.
    """

    ano: int
    mes: int
    layout: str
    n_funds: int = 300
    seed: int = 0
    subclass_share: float = 0.01
    dirt: bool = False
    line_ending: str = "\n"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUT_HEADERS:
            raise ValueError(f"layout must be one of {sorted(LAYOUT_HEADERS)}, got {self.layout!r}")
        if not 1 <= self.mes <= 12:
            raise ValueError(f"mes must be 1..12, got {self.mes}")
        if self.n_funds < 1:
            raise ValueError(f"n_funds must be positive, got {self.n_funds}")
        if self.line_ending not in ("\n", "\r\n"):
            raise ValueError("line_ending must be '\\n' or '\\r\\n'")


@dataclass(frozen=True)
class GeneratedMonth:
    """A generated CSV and where its dirt is, so tests can expect exact reject counts."""

    csv: bytes
    dirt_lines: dict[str, list[int]] = field(default_factory=dict)
    """Dirt kind -> 1-based line numbers in the file (the header is line 1)."""


def generate_month(spec: MonthSpec) -> bytes:
    """The month's CSV as CVM would publish it (latin-1 bytes)."""
    return generate(spec).csv


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: millions of new strings and lists trigger it over and over (7x
    slower parsing), and none of them form cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def generate(spec: MonthSpec) -> GeneratedMonth:
    """Like `generate_month`, and also reports the line numbers of the dirty rows."""
    le = spec.line_ending
    dirt_lines: dict[str, list[int]] = {}
    with _gc_paused():
        body = _clean_body(spec, _Funds.draw(spec))
        if spec.dirt:
            lines, dirt_lines = _add_dirt(body.split(le)[:-1], spec)
            body = le.join(lines) + le
    text = LAYOUT_HEADERS[spec.layout] + le + body
    return GeneratedMonth(text.encode("latin-1"), dirt_lines)


@dataclass(frozen=True)
class _Funds:
    """One entry per series (a fund, or one subclass of a class), sorted as CVM sorts rows."""

    # The text columns before DT_COMPTC, `;`-terminated, e.g. "FI;00.017.024/0001-53;".
    prefix: np.ndarray
    pl0: np.ndarray
    quota0: np.ndarray
    drift: np.ndarray
    vol: np.ndarray
    flow_prob: np.ndarray
    total_gap: np.ndarray
    holders0: np.ndarray

    @classmethod
    def draw(cls, spec: MonthSpec) -> _Funds:
        n = spec.n_funds
        rng = np.random.default_rng([spec.seed, n, 0])
        roots = rng.choice(99_000_000, size=n, replace=False) + 1_000_000  # never 00.xxx: real
        cnpjs = _cnpj_strings(roots * 10_000 + 1)
        names, shares = zip(*(_TP_FUNDO_CLASSE if spec.layout == "c" else _TP_FUNDO), strict=True)
        types = rng.choice(np.array(names, dtype=object), size=n, p=np.array(shares))
        subclass = np.full(n, "", dtype=object)
        if spec.layout == "c":
            _group_subclasses(spec, cnpjs, types, subclass)
        order = np.lexsort((subclass.astype(str), cnpjs.astype(str)))
        if spec.layout == "a":
            prefix = cnpjs + ";"
        elif spec.layout == "b":
            prefix = types + ";" + cnpjs + ";"
        else:
            prefix = types + ";" + cnpjs + ";" + subclass + ";"
        return cls(
            prefix=prefix[order],
            pl0=np.clip(np.exp(rng.normal(np.log(3e7), 1.7, n)), 2e5, 5e9)[order],
            quota0=np.clip(np.exp(rng.normal(np.log(20.0), 1.5, n)), 1.0, 8000.0)[order],
            drift=rng.normal(0.0004, 0.0003, n)[order],
            vol=np.clip(np.exp(rng.normal(np.log(0.002), 1.0, n)), 1e-5, 0.02)[order],
            flow_prob=np.where(rng.random(n) < 0.4, 0.0, rng.uniform(0.02, 0.4, n))[order],
            total_gap=np.clip(rng.normal(0.002, 0.003, n), -0.01, 0.05)[order],
            holders0=np.clip(np.rint(np.exp(rng.normal(np.log(30.0), 2.2, n))), 1, 100_000)[order],
        )


def _group_subclasses(
    spec: MonthSpec, cnpjs: np.ndarray, types: np.ndarray, subclass: np.ndarray
) -> None:
    """Turn about `subclass_share` of the series into subclasses of classes with 2-3 each."""
    n = len(cnpjs)
    target = round(spec.subclass_share * n)
    if target == 0 or n < 2:
        return
    target = min(max(target, 2), n)
    rng = np.random.default_rng([spec.seed, n, 1])
    # target = 3 × threes + 2 × twos, exactly
    threes = int(rng.choice([k for k in range(target // 3 + 1) if (target - 3 * k) % 2 == 0]))
    sizes = rng.permutation([3] * threes + [2] * ((target - 3 * threes) // 2))
    members = rng.permutation(n)[:target]
    ids = rng.choice(_SUBCLASS_ALPHABET, size=(target, 6))
    start = 0
    for size in sizes.tolist():
        group = members[start : start + size]
        cnpjs[group] = cnpjs[group[0]]
        types[group] = types[group[0]]
        for k, i in enumerate(group.tolist()):
            subclass[i] = "".join(ids[start + k]) + str(k + 1)
        start += size


def _cnpj_strings(bases: np.ndarray) -> np.ndarray:
    """Punctuated valid CNPJs for 12-digit integer bases, check digits computed with numpy."""
    digits = (bases[:, None] // 10 ** np.arange(11, -1, -1, dtype=np.int64)) % 10
    first = _check_digits_array(digits @ np.array(_W1))
    second = _check_digits_array(digits @ np.array(_W2[:12]) + first * _W2[12])
    full = bases * 100 + first * 10 + second
    return np.array([format_cnpj(f"{v:014d}") for v in full.tolist()], dtype=object)


def _half_up(values: np.ndarray) -> np.ndarray:
    """Rounded to integers with halves away from zero, as Spark's ROUND and CVM's cents."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _check_digit(total: int) -> int:
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def _check_digits_array(total: np.ndarray) -> np.ndarray:
    rest = total % 11
    return np.where(rest < 2, 0, 11 - rest)


def _clean_body(spec: MonthSpec, funds: _Funds) -> str:
    """All data rows, fund by fund and day by day, each ended by the line ending."""
    days = business_days(spec.ano, spec.mes)
    n, d = len(funds.prefix), len(days)
    rng = np.random.default_rng([spec.seed, n, spec.ano, spec.mes])

    # Some funds start or stop reporting within the month.
    start = np.zeros(n, dtype=np.int64)
    end = np.full(n, d, dtype=np.int64)
    if d > 1:
        late = rng.random(n) < 0.04
        start[late] = rng.integers(1, d, int(late.sum()))
        early = rng.random(n) < 0.04
        end[early] = rng.integers(1, d, int(early.sum()))
    end = np.maximum(end, start + 1)
    day_index = np.arange(d)
    reported = (day_index >= start[:, None]) & (day_index < end[:, None])

    returns = rng.normal(funds.drift[:, None], funds.vol[:, None], (n, d))
    quota = np.clip(funds.quota0[:, None] * np.cumprod(1.0 + returns, axis=1), 1.0, 10_000.0)
    quota_e8 = np.rint(quota * 1e8)  # as printed
    inflow_share = np.where(rng.random((n, d)) < funds.flow_prob[:, None], 0.03, 0.0)
    inflow_share *= rng.random((n, d))
    outflow_share = np.where(rng.random((n, d)) < funds.flow_prob[:, None], 0.03, 0.0)
    outflow_share *= rng.random((n, d))
    # Money in cents (integers held exactly by float64 below 2**53).
    inflow = np.empty((n, d))
    outflow = np.empty((n, d))
    pl = np.empty((n, d))
    previous = np.rint(funds.pl0 * 100)
    for t in range(d):
        inflow[:, t] = np.rint(previous * inflow_share[:, t])
        outflow[:, t] = np.rint(previous * outflow_share[:, t])
        # Net assets move by the return the previous day's earned at the printed quotas' return,
        # half-up to the cent, and by the day's flows: the rows reconcile (docs/analytics.md).
        if t == 0:
            earned = previous * returns[:, 0]
        else:
            earned = previous * (quota_e8[:, t] - quota_e8[:, t - 1]) / quota_e8[:, t - 1]
        previous = previous + _half_up(earned) + inflow[:, t] - outflow[:, t]
        pl[:, t] = previous
    total = pl / 100 * (1.0 + funds.total_gap[:, None] + rng.normal(0.0, 0.0005, (n, d)))
    holders = funds.holders0[:, None] + np.cumsum(
        np.rint(rng.normal(0.0, 1.0, (n, d)) * 0.002 * funds.holders0[:, None]), axis=1
    )

    keep = reported.ravel()
    cents = [np.rint(total.ravel()[keep] * 100).astype(np.int64)]
    cents += [a.ravel()[keep].astype(np.int64) for a in (pl, inflow, outflow)]
    quota_e8 = quota_e8.ravel()[keep].astype(np.int64)
    numbers = np.column_stack(
        [
            cents[0] // 100,
            cents[0] % 100,
            quota_e8 // 100_000_000,
            quota_e8 % 100_000_000,
            cents[1] // 100,
            cents[1] % 100,
            cents[2] // 100,
            cents[2] % 100,
            cents[3] // 100,
            cents[3] % 100,
            np.clip(holders.ravel()[keep], 1, 100_000).astype(np.int64),
        ]
    )
    series, day = np.nonzero(reported)
    dates = np.array([f"{x:%Y-%m-%d}" for x in days], dtype=object)
    row_format = funds.prefix[series] + dates[day] + (_NUMBERS + spec.line_ending)
    chunks = []
    for lo in range(0, len(series), _CHUNK_ROWS):
        hi = lo + _CHUNK_ROWS
        chunks.append("".join(row_format[lo:hi].tolist()) % tuple(numbers[lo:hi].ravel().tolist()))
    return "".join(chunks)


@dataclass(frozen=True)
class _Columns:
    """Field positions of one layout; the numeric columns follow DT_COMPTC in every layout."""

    tp: int | None
    cnpj: int
    subclass: int | None
    date: int
    width: int

    @classmethod
    def of(cls, layout: str) -> _Columns:
        if layout == "a":
            return cls(tp=None, cnpj=0, subclass=None, date=1, width=8)
        if layout == "b":
            return cls(tp=0, cnpj=1, subclass=None, date=2, width=9)
        return cls(tp=0, cnpj=1, subclass=2, date=3, width=10)

    def key(self, fields: list[str]) -> tuple[str, ...]:
        """CVM's natural key (CNPJ, ID_SUBCLASSE, DT_COMPTC): adjacent fields in every layout."""
        return tuple(fields[self.cnpj : self.date + 1])

    @property
    def total(self) -> int:
        return self.date + 1

    @property
    def quota(self) -> int:
        return self.date + 2

    @property
    def pl(self) -> int:
        return self.date + 3

    @property
    def inflow(self) -> int:
        return self.date + 4

    @property
    def outflow(self) -> int:
        return self.date + 5

    @property
    def holders(self) -> int:
        return self.date + 6


def _add_dirt(lines: list[str], spec: MonthSpec) -> tuple[list[str], dict[str, list[int]]]:
    """One row of every `DIRT_KINDS` kind of this layout, at seeded random places."""
    kinds = [k for k in DIRT_KINDS if k != "latin1_text" or spec.layout != "a"]
    if len(lines) < len(kinds):
        raise ValueError(f"dirt needs at least {len(kinds)} clean rows, got {len(lines)}")
    rng = np.random.default_rng([spec.seed, spec.n_funds, spec.ano, spec.mes, 2])
    picks = rng.choice(len(lines), size=len(kinds), replace=False).tolist()
    cols = _Columns.of(spec.layout)
    inserts: list[tuple[int, str, str]] = []  # (insert after this index, line, kind)
    in_place: dict[int, str] = {}
    for kind, i in zip(kinds, picks, strict=True):
        fields = lines[i].split(";")
        if kind == "exact_duplicate":
            inserts.append((i, lines[i], kind))
        elif kind == "duplicate_key":
            inserts.append((int(rng.integers(i, len(lines))), _restated(fields, cols, rng), kind))
        else:
            lines[i] = _dirty_line(kind, fields, cols, spec)
            in_place[i] = kind
    dirt_lines: dict[str, list[int]] = {kind: [] for kind in kinds}
    result: list[str] = []
    by_position: dict[int, list[tuple[str, str]]] = {}
    for after, line, kind in inserts:
        by_position.setdefault(after, []).append((line, kind))
    previous = 0
    for after in sorted(set(by_position) | set(in_place)):
        result.extend(lines[previous : after + 1])
        previous = after + 1
        if after in in_place:
            dirt_lines[in_place[after]].append(len(result) + 1)  # +1: the header line
        for line, kind in by_position.get(after, []):
            result.append(line)
            dirt_lines[kind].append(len(result) + 1)
    result.extend(lines[previous:])
    return result, dirt_lines


def _dirty_line(kind: str, fields: list[str], cols: _Columns, spec: MonthSpec) -> str:
    """A clean row turned into the bad row of `kind`, as described in `DIRT_KINDS`."""
    f = list(fields)
    if kind == "zero_pl":
        f[cols.pl] = "0.00"
    elif kind == "negative_pl":
        f[cols.pl] = "-" + f[cols.pl]
    elif kind == "empty_cnpj":
        f[cols.cnpj] = ""
    elif kind == "empty_date":
        f[cols.date] = ""
    elif kind == "date_outside_month":
        ano, mes = (spec.ano + 1, 1) if spec.mes == 12 else (spec.ano, spec.mes + 1)
        f[cols.date] = f"{ano:04d}-{mes:02d}-01"
    elif kind == "non_numeric":
        f[cols.quota] = "abc"
    elif kind == "too_many_decimals":
        f[cols.inflow] = "1.234"
    elif kind == "extra_field":
        f.append("1")
    elif kind == "missing_field":
        f.pop()
    elif kind == "bad_check_digits":
        cnpj = f[cols.cnpj]
        f[cols.cnpj] = cnpj[:-1] + str((int(cnpj[-1]) + 1) % 10)
    elif kind == "absurd_quota":
        f[cols.quota] = "99999999999.000000000000"
    elif kind == "latin1_text" and cols.tp is not None:
        f[cols.tp] = "FUNDAÇÃO"
    elif kind == "empty_nr_cotst":
        f[cols.holders] = ""
    else:
        raise ValueError(f"unknown dirt kind {kind!r} for this layout")
    return ";".join(f)


def _restated(fields: list[str], cols: _Columns, rng: np.random.Generator) -> str:
    """The same key with other VL_TOTAL, VL_PATRIM_LIQ, VL_QUOTA and CAPTC_DIA (a restatement)."""
    f = list(fields)
    pl = _cents(f[cols.pl])
    delta = 1 + int(rng.integers(0, max(1, pl // 50)))
    f[cols.pl] = _money(pl + delta)
    f[cols.total] = _money(_cents(f[cols.total]) + delta)
    f[cols.inflow] = _money(_cents(f[cols.inflow]) + 1 + int(rng.integers(0, max(1, pl // 100))))
    quota = Decimal(f[cols.quota])
    scale = Decimal(1) + Decimal(int(rng.integers(1, 1000))) / Decimal(100_000)
    f[cols.quota] = _requantize(quota * scale, f[cols.quota], quota)
    return ";".join(f)


_MONEY = re.compile(r"\d+\.\d\d")
_QUOTA = re.compile(r"\d+(\.\d+)?")


def _cents(text: str) -> int:
    return int(text.replace(".", ""))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _requantize(value: Decimal, like: str, old: Decimal) -> str:
    """`value` printed with the decimals of `like`, and never equal to the old value."""
    decimals = len(like.partition(".")[2])
    step = Decimal(1).scaleb(-decimals)
    new = value.quantize(step)
    if new == old:
        new += step
    return f"{new:.{decimals}f}"


def restate(
    csv: bytes, seed: int, change_share: float = 0.01, n_add: int = 5, n_remove: int = 5
) -> bytes:
    """A later version of the same month, as CVM republishes it with restatements.

    round(change_share × rows) rows get other VL_PATRIM_LIQ, VL_TOTAL, VL_QUOTA and CAPTC_DIA
    (same key); `n_remove` rows disappear; `n_add` rows appear (the last business days found in
    the file for new funds, in blocks at a random place). Only well-formed rows with a unique key
    that look like clean generated rows are changed or removed (unique key, valid CNPJ, date in
    the file's month, sane numbers), so dirt stays as it was and the counts are exact when
    comparing files by key.
    """
    with _gc_paused():
        return _restate(csv.decode("latin-1"), seed, change_share, n_add, n_remove)


def _restate(text: str, seed: int, change_share: float, n_add: int, n_remove: int) -> bytes:
    le = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
    header, _, body = text.partition(le)
    layout = _layout_of(header)
    cols = _Columns.of(layout)
    trailing = body.endswith(le)
    lines = body.split(le)
    if trailing:
        lines.pop()
    rng = np.random.default_rng(seed)

    parsed = [line.split(";") for line in lines]
    shaped = [f for f in parsed if len(f) == cols.width]
    keys = collections.Counter(map(cols.key, shaped))
    rows_per_date = collections.Counter(f[cols.date] for f in shaped)
    rows_per_month: collections.Counter[str] = collections.Counter()
    for day, count in rows_per_date.items():
        rows_per_month[day[:7]] += count
    month = rows_per_month.most_common(1)[0][0]
    cnpjs = {f[cols.cnpj] for f in shaped}
    valid_cnpjs = {c for c in cnpjs if _valid_cnpj(c)}
    n_change = round(change_share * len(lines))
    # Rows are checked in a seeded random order until enough are found (plus one to model new
    # rows on): checking every row of a 1.5 M-row month would take far longer.
    pool: list[int] = []
    for i in rng.permutation(len(parsed)).tolist():
        if len(pool) > n_change + n_remove:
            break
        f = parsed[i]
        if (
            len(f) == cols.width
            and keys[cols.key(f)] == 1
            and f[cols.cnpj] in valid_cnpjs
            and _clean_values(f, cols, month)
        ):
            pool.append(i)
    if n_change + n_remove > len(pool) or (n_add > 0 and not pool):
        raise ValueError(f"only {len(pool)} clean rows to change, remove or copy")
    for i in pool[:n_change]:
        lines[i] = _restated(parsed[i], cols, rng)
    removed = set(pool[n_change : n_change + n_remove])
    lines = [line for i, line in enumerate(lines) if i not in removed]

    dates = sorted(d for d in rows_per_date if d.startswith(month + "-"))
    new_rows = _new_fund_rows(cnpjs, [parsed[i] for i in pool], dates, cols, n_add, rng)
    if new_rows:
        at = int(rng.integers(0, len(lines) + 1))
        lines[at:at] = new_rows
    out = header + le + le.join(lines) + (le if trailing else "")
    return out.encode("latin-1")


def _valid_cnpj(text: str) -> bool:
    digits = text.replace(".", "").replace("/", "").replace("-", "")
    return (
        len(text) == 18
        and len(digits) == 14
        and digits.isdigit()
        and cnpj_check_digits(digits[:12]) == digits[12:]
    )


def _clean_values(f: list[str], cols: _Columns, month: str) -> bool:
    """Values as the generator writes them for a clean row."""
    money = (f[cols.total], f[cols.pl], f[cols.inflow], f[cols.outflow])
    return (
        all(_MONEY.fullmatch(v) for v in money)
        and _cents(f[cols.pl]) > 0
        and _QUOTA.fullmatch(f[cols.quota]) is not None
        and len(f[cols.quota].partition(".")[0]) <= 6
        and f[cols.holders].isdigit()
        and len(f[cols.date]) == 10
        and f[cols.date].startswith(month + "-")
    )


def _new_fund_rows(
    present: set[str],
    models: list[list[str]],
    dates: list[str],
    cols: _Columns,
    n_add: int,
    rng: np.random.Generator,
) -> list[str]:
    """`n_add` rows of new funds (CNPJs absent from the file) on the file's last dates."""
    if n_add <= 0:
        return []
    rows: list[str] = []
    while len(rows) < n_add:
        while True:
            base = f"{int(rng.integers(1_000_000, 100_000_000)):08d}0001"
            cnpj = format_cnpj(make_cnpj(base))
            if cnpj not in present:
                present.add(cnpj)
                break
        model = list(models[int(rng.integers(len(models)))])
        model[cols.cnpj] = cnpj
        if cols.subclass is not None:
            model[cols.subclass] = ""
        for day in dates[-min(len(dates), n_add - len(rows)) :]:
            model[cols.date] = day
            rows.append(";".join(model))
    return rows


def _layout_of(header: str) -> str:
    for layout, expected in LAYOUT_HEADERS.items():
        if header == expected:
            return layout
    raise ValueError(f"not an inf_diario header: {header.split(';')}")


def _zip(members: dict[str, bytes], when: dict[str, tuple[int, int, int]]) -> bytes:
    """Deflated zip with fixed timestamps, so the same content gives the same bytes (and ETag)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(*when[name], 8, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def monthly_zip(ano: int, mes: int, csv: bytes) -> bytes:
    """DADOS/inf_diario_fi_YYYYMM.zip: one member, the month's CSV."""
    name = f"inf_diario_fi_{ano:04d}{mes:02d}.csv"
    return _zip({name: csv}, {name: (ano, mes, 1)})


def yearly_zip(ano: int, months: dict[int, bytes]) -> bytes:
    """HIST/inf_diario_fi_YYYY.zip from 2005 on: one member per month."""
    names = {mes: f"inf_diario_fi_{ano:04d}{mes:02d}.csv" for mes in sorted(months)}
    return _zip(
        {names[mes]: months[mes] for mes in names}, {names[mes]: (ano, mes, 1) for mes in names}
    )


def yearly_single_member_zip(ano: int, csv: bytes) -> bytes:
    """HIST/inf_diario_fi_YYYY.zip as before 2005: the whole year in one member."""
    name = f"inf_diario_fi_{ano:04d}.csv"
    return _zip({name: csv}, {name: (ano, 1, 1)})


def with_real_rows(csv: bytes, real: bytes) -> bytes:
    """The generated CSV with a real CVM file's rows first (their `00.0…` CNPJs sort first).

    The real rows keep their own formatting (e.g. 6-decimal quotas), converted to the generated
    file's line ending.
    """
    text = csv.decode("latin-1")
    le = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
    header, _, body = text.partition(le)
    real_lines = real.decode("latin-1").splitlines()
    if not real_lines or real_lines[0] != header:
        seen = real_lines[0] if real_lines else ""
        raise ValueError(f"headers differ: {seen.split(';')} vs {header.split(';')}")
    rows = [line for line in real_lines[1:] if line]
    return (header + le + "".join(row + le for row in rows) + body).encode("latin-1")


def real_csv(name: str) -> bytes:
    """A real CVM file packaged in fake_cvm/real/, e.g. `inf_diario_fi_201901.csv`."""
    return resources.files(__package__).joinpath("real", name).read_bytes()

"""Tests of the oracle itself: if it is wrong, every pipeline test that trusts it is wrong too.

Expected numbers are written out by hand (or with `bc`), never recomputed with the oracle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest

from cvm210_assets_tests.real_files import REAL_FILES_DIR
from cvm210_assets_tests.reference import (
    LAYOUTS,
    MOTIVOS,
    BronzeRow,
    GoldRow,
    RejectRow,
    SilverRow,
    bronze_rows,
    clean,
    diff_silver,
    expected_month,
    gold,
    read_layout,
)

REAL = REAL_FILES_DIR
REAL_MONTHS = sorted(p.name for p in REAL.glob("inf_diario_fi_*.csv"))
assert len(REAL_MONTHS) == 4, f"the real CVM months shipped in {REAL}: {REAL_MONTHS}"

HEADER = {k: ";".join(v) for k, v in LAYOUTS.items()}
GOOD_A = "00.017.024/0001-53;2019-01-02;1134502.30;26.653279500000;1130684.21;0.00;0.00;1"
GOOD_B = "FI;" + GOOD_A
GOOD_C = "FI;00.017.024/0001-53;;2019-01-02;1134502.30;26.653279500000;1130684.21;0.00;0.00;1"
# Field positions of layout (a).
CNPJ, DATA, VL_TOTAL, VL_QUOTA, VL_PL, CAPTC, RESG, NR_COTST = range(8)


def csv_of(*lines: str, layout: str = "a", eol: str = "\n") -> bytes:
    """A file as CVM writes it: header, lines, a final line break, latin-1."""
    return (eol.join([HEADER[layout], *lines]) + eol).encode("latin-1")


def with_field(index: int, value: str, line: str = GOOD_A) -> str:
    """GOOD_A (or another line) with one field replaced."""
    parts = line.split(";")
    parts[index] = value
    return ";".join(parts)


def motivo(line: str, layout: str = "a", ano: int = 2019, mes: int = 1) -> str | None:
    """Reject reason of a single data line, or None when it reaches silver."""
    silver, rejects = clean(csv_of(line, layout=layout), ano, mes)
    assert len(silver) + len(rejects) == 1
    return rejects[0].motivo if rejects else None


def real(name: str) -> bytes:
    return (REAL / name).read_bytes()


# --- header and layout ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_each_layout_is_recognised(layout: str) -> None:
    assert read_layout(csv_of(layout=layout)) == layout


def test_bom_crlf_case_and_spaces_in_header_are_tolerated() -> None:
    header = "\ufeff" + " tp_fundo ;Cnpj_Fundo;DT_COMPTC ;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;"
    header += "CAPTC_DIA;RESG_DIA;nr_cotst\r\n"
    data = header.encode("utf-8") + (GOOD_B + "\r\n").encode("latin-1")
    assert data.startswith(b"\xef\xbb\xbf")
    assert read_layout(data) == "b"
    silver, rejects = clean(data, 2019, 1)
    assert rejects == []
    assert silver[0].tp_fundo == "FI"
    assert silver[0].nr_cotst == 1  # the CR did not stick to the last field


@pytest.mark.parametrize(
    "header",
    [
        "CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA",
        HEADER["a"] + ";",
        HEADER["a"] + ";EXTRA",
        "DT_COMPTC;CNPJ_FUNDO;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST",
        "CNPJ_FUNDO,DT_COMPTC,VL_TOTAL,VL_QUOTA,VL_PATRIM_LIQ,CAPTC_DIA,RESG_DIA,NR_COTST",
        '"CNPJ_FUNDO";DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST',
        "TP_FUNDO;CNPJ_FUNDO_CLASSE;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;"
        "NR_COTST",
        "",
    ],
)
def test_unknown_header_is_an_error_naming_the_columns(header: str) -> None:
    data = (header + "\n" + GOOD_A + "\n").encode("latin-1")
    with pytest.raises(ValueError, match="columns seen") as err:
        read_layout(data)
    assert header.split(";")[0].strip().upper() in str(err.value)
    for fn in (bronze_rows, lambda d: clean(d, 2019, 1), lambda d: expected_month(d, 2019, 1)):
        with pytest.raises(ValueError):
            fn(data)


def test_empty_file_is_an_unknown_header() -> None:
    with pytest.raises(ValueError, match="columns seen"):
        read_layout(b"")


def test_bom_only_counts_at_the_start_of_the_header() -> None:
    data = ("x" + "\xef\xbb\xbf" + HEADER["a"] + "\n").encode("latin-1")
    with pytest.raises(ValueError):
        read_layout(data)


# --- bronze ---------------------------------------------------------------------------------


def test_bronze_keeps_raw_text_and_physical_line_numbers() -> None:
    raw = ' 00.017.024/0001-53 ;2019-01-02;"1.00";x;;;;'
    data = (
        HEADER["a"] + "\r\n" + GOOD_A + "\r\n" + "\r\n" + "\n" + raw + "\r\n" + "   \n" + "\r\r\n"
    ).encode("latin-1")
    rows = bronze_rows(data)
    assert rows == [
        BronzeRow(2, GOOD_A, tuple(GOOD_A.split(";"))),
        BronzeRow(5, raw, tuple(raw.split(";"))),
        BronzeRow(6, "   ", ("   ",)),  # only whitespace is not an empty line
        BronzeRow(7, "\r", ("\r",)),  # only one CR is a line terminator
    ]
    assert rows[1].campos[2] == '"1.00"'  # no quoting


def test_bronze_without_final_newline_and_header_only() -> None:
    assert bronze_rows((HEADER["a"] + "\n" + GOOD_A).encode("latin-1"))[0].numero_linha == 2
    assert bronze_rows(HEADER["a"].encode("latin-1")) == []
    assert bronze_rows(csv_of()) == []


def test_bronze_decodes_latin1() -> None:
    line = with_field(NR_COTST, "Ãª")
    data = (HEADER["a"] + "\n" + line + "\n").encode("latin-1")
    assert bronze_rows(data)[0].registro == line
    assert bronze_rows(data)[0].campos[-1] == "Ãª"


# --- silver rules, one by one ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (GOOD_A, None),
        (GOOD_A + ";", "numero_de_campos"),
        (GOOD_A.rsplit(";", 1)[0], "numero_de_campos"),
        ("   ", "numero_de_campos"),
        ("\r\r", "numero_de_campos"),  # one CR is the terminator, the other is data
        # numero_de_campos comes before everything else
        (";;;;;;;;", "numero_de_campos"),
        (with_field(CNPJ, ""), "cnpj_ausente"),
        (with_field(CNPJ, "   "), "cnpj_ausente"),
        (with_field(CNPJ, "", with_field(DATA, "")), "cnpj_ausente"),
        (with_field(CNPJ, "00.017.024/0001-5"), "cnpj_invalido"),
        (with_field(CNPJ, "00.017.024/0001-531"), "cnpj_invalido"),
        (with_field(CNPJ, "00.017.024/0001-5X"), "cnpj_invalido"),
        (with_field(CNPJ, "00 017 024 0001 53"), "cnpj_invalido"),
        (with_field(CNPJ, "00,017,024/0001-53"), "cnpj_invalido"),
        (with_field(CNPJ, "00.017.024/0001-5\xb2"), "cnpj_invalido"),  # superscript two
        (with_field(CNPJ, '"00.017.024/0001-53"'), "cnpj_invalido"),
        (with_field(CNPJ, "00.017.024/0001-53", with_field(DATA, "")), "data_ausente"),
        (with_field(CNPJ, "00017024000153"), None),
        (with_field(CNPJ, "  00.017.024/0001-53 "), None),
        (with_field(CNPJ, "00.017.024/0001-99"), None),  # wrong check digits are accepted
        (with_field(CNPJ, "0-0.0/1.7/0-2.4/0-0.0/1-5.3"), None),  # every . / - is removed
        (with_field(DATA, ""), "data_ausente"),
        (with_field(DATA, " "), "data_ausente"),
        (with_field(DATA, "2019-02-30", with_field(VL_PL, "")), "data_invalida"),
        (with_field(DATA, "2019-01-32"), "data_invalida"),
        (with_field(DATA, "2019-13-01"), "data_invalida"),
        (with_field(DATA, "2019-00-10"), "data_invalida"),
        (with_field(DATA, "0000-01-01"), "data_invalida"),
        (with_field(DATA, "2019-1-02"), "data_invalida"),
        (with_field(DATA, "02/01/2019"), "data_invalida"),
        (with_field(DATA, "20190102"), "data_invalida"),
        (with_field(DATA, "2019-01-02 00:00:00"), "data_invalida"),
        (with_field(DATA, "2019-01-0\xb2"), "data_invalida"),
        (with_field(DATA, " 2019-01-31 "), None),
        (with_field(DATA, "2019-02-01"), "fora_do_mes"),
        (with_field(DATA, "2018-12-31"), "fora_do_mes"),
        (with_field(DATA, "2020-01-02"), "fora_do_mes"),
        # fora_do_mes comes before valor_invalido and the net-asset rules
        (with_field(DATA, "2019-02-01", with_field(VL_TOTAL, "x")), "fora_do_mes"),
        (with_field(VL_TOTAL, "abc"), "valor_invalido"),
        (with_field(VL_TOTAL, "1,50"), "valor_invalido"),
        (with_field(VL_TOTAL, "1.5.0"), "valor_invalido"),
        (with_field(VL_TOTAL, "1."), "valor_invalido"),
        (with_field(VL_TOTAL, ".5"), "valor_invalido"),
        (with_field(VL_TOTAL, "1e3"), "valor_invalido"),
        (with_field(VL_TOTAL, "1 000.00"), "valor_invalido"),
        (with_field(VL_TOTAL, "--1"), "valor_invalido"),
        (with_field(VL_TOTAL, "NaN"), "valor_invalido"),
        (with_field(VL_TOTAL, "1.001"), "valor_invalido"),  # 3 decimals in DECIMAL(17,2)
        (with_field(VL_TOTAL, "1.000"), "valor_invalido"),  # trailing zeros count as digits
        (with_field(VL_TOTAL, "1234567890123456"), "valor_invalido"),  # 16 integer digits
        (with_field(VL_TOTAL, "123456789012345.99"), None),  # 15 integer digits fit
        (with_field(VL_TOTAL, "000000000000000000123456789012345.99"), None),  # leading zeros
        (with_field(VL_TOTAL, "-123456789012345.99"), None),
        (with_field(VL_TOTAL, "+1"), None),
        (with_field(VL_TOTAL, ""), None),
        (with_field(VL_TOTAL, "  "), None),
        (with_field(VL_QUOTA, "1.1234567890123"), "valor_invalido"),  # 13 decimals
        (with_field(VL_QUOTA, "1.123456789012"), None),
        (with_field(VL_QUOTA, "1234567890123456.1"), "valor_invalido"),  # 16 integer digits
        (with_field(VL_QUOTA, "123456789012345.123456789012"), None),
        (with_field(VL_QUOTA, ""), None),
        (with_field(VL_PL, "1.001"), "valor_invalido"),
        (with_field(CAPTC, "1.001"), "valor_invalido"),
        (with_field(RESG, "x"), "valor_invalido"),
        (with_field(NR_COTST, "1.0"), "valor_invalido"),
        (with_field(NR_COTST, "1e3"), "valor_invalido"),
        (with_field(NR_COTST, "2147483648"), "valor_invalido"),
        (with_field(NR_COTST, "-2147483649"), "valor_invalido"),
        (with_field(NR_COTST, "2147483647"), None),
        (with_field(NR_COTST, "-2147483648"), None),
        (with_field(NR_COTST, "000000000000002147483647"), None),
        (with_field(NR_COTST, "+7"), None),
        (with_field(NR_COTST, ""), None),
        # valor_invalido comes before patrimonio_*
        (with_field(NR_COTST, "x", with_field(VL_PL, "")), "valor_invalido"),
        (with_field(VL_TOTAL, "x", with_field(VL_PL, "-1")), "valor_invalido"),
        (with_field(VL_PL, ""), "patrimonio_ausente"),
        (with_field(VL_PL, "  "), "patrimonio_ausente"),
        (with_field(VL_PL, "0"), "patrimonio_nao_positivo"),
        (with_field(VL_PL, "0.00"), "patrimonio_nao_positivo"),
        (with_field(VL_PL, "-0.00"), "patrimonio_nao_positivo"),
        (with_field(VL_PL, "+0"), "patrimonio_nao_positivo"),
        (with_field(VL_PL, "-1130684.21"), "patrimonio_nao_positivo"),
        (with_field(VL_PL, "0.01"), None),
        # negative flows, totals and quotas are not rejected
        (with_field(CAPTC, "-1.00", with_field(VL_QUOTA, "-3", with_field(VL_TOTAL, "-5"))), None),
    ],
)
def test_reason_code_of_one_line(line: str, expected: str | None) -> None:
    assert motivo(line) == expected


def test_every_reason_code_is_covered() -> None:
    """A file that breaks every rule once; the counts cover all of MOTIVOS."""
    lines = [
        GOOD_A + ";",  # 2
        with_field(CNPJ, ""),  # 3
        with_field(CNPJ, "abc"),  # 4
        with_field(DATA, ""),  # 5
        with_field(DATA, "2019-02-29"),  # 6
        with_field(DATA, "2019-03-01"),  # 7
        with_field(VL_QUOTA, "q"),  # 8
        with_field(VL_PL, ""),  # 9
        with_field(VL_PL, "0.00"),  # 10
        GOOD_A,  # 11: duplicate of line 12
        GOOD_A,  # 12: kept
    ]
    month = expected_month(csv_of(*lines), 2019, 1)
    assert [r.motivo for r in month.rejects] == list(MOTIVOS)
    assert [r.numero_linha for r in month.rejects] == list(range(2, 12))
    assert month.rejects_by_reason == dict.fromkeys(MOTIVOS, 1)
    assert [s.numero_linha for s in month.silver] == [12]
    assert month.rejects[0] == RejectRow(2, GOOD_A + ";", "numero_de_campos")


@pytest.mark.parametrize(
    ("layout", "line", "expected"),
    [
        ("b", GOOD_B, None),
        ("b", ";" + GOOD_A, None),  # empty TP_FUNDO is fine
        ("b", GOOD_A, "numero_de_campos"),
        ("b", "FI;;2019-01-02;1;1;1;1;1;1", "cnpj_ausente"),
        ("c", GOOD_C, None),
        ("c", GOOD_B, "numero_de_campos"),
        ("c", "FI;;SUB;2019-01-02;1;1;1;1;1;1", "cnpj_ausente"),
        ("c", "FI;00.017.024/0001-53;SUB;;1;1;1;1;1;1", "data_ausente"),
        ("c", "FI;00.017.024/0001-53;SUB;2019-01-02;1;1;;1;1;1", "patrimonio_ausente"),
        ("c", "FI;00.017.024/0001-53;SUB;2019-01-02;1;1;1;1;1;1.5", "valor_invalido"),
        ("a", GOOD_C, "numero_de_campos"),
    ],
)
def test_reason_codes_in_layouts_b_and_c(layout: str, line: str, expected: str | None) -> None:
    assert motivo(line, layout=layout) == expected


# --- silver values --------------------------------------------------------------------------


def test_silver_values_are_typed_and_quantized() -> None:
    line = " FI ;00.017.024/0001-53; ;2019-01-02; 0.0;34.795001;1106498.6;0;;"
    (row,), rejects = clean(csv_of(line, layout="c"), 2019, 1)
    assert rejects == []
    assert row == SilverRow(
        tp_fundo="FI",
        cnpj_fundo="00017024000153",
        id_subclasse=None,
        dt_comptc=dt.date(2019, 1, 2),
        vl_total=Decimal("0.00"),
        vl_quota=Decimal("34.795001"),
        vl_patrim_liq=Decimal("1106498.60"),
        captc_dia=Decimal("0"),
        resg_dia=None,
        nr_cotst=None,
        numero_linha=2,
        ano=2019,
        mes=1,
    )
    assert str(row.vl_total) == "0.00"
    assert str(row.vl_quota) == "34.795001000000"
    assert str(row.vl_patrim_liq) == "1106498.60"
    assert str(row.captc_dia) == "0.00"


def test_silver_signs_and_leading_zeros() -> None:
    line = "00017024000153;2019-01-02;-0.00;+007.5;+0001.00;-3;+4.1;-0012"
    (row,), _ = clean(csv_of(line), 2019, 1)
    assert str(row.vl_total) == "0.00"  # no negative zero
    assert str(row.vl_quota) == "7.500000000000"
    assert str(row.vl_patrim_liq) == "1.00"
    assert str(row.captc_dia) == "-3.00"
    assert str(row.resg_dia) == "4.10"
    assert row.nr_cotst == -12


def test_tp_fundo_of_each_layout() -> None:
    (a,), _ = clean(csv_of(GOOD_A), 2019, 1)
    (b,), _ = clean(csv_of("  ;" + GOOD_A, layout="b"), 2019, 1)
    (c,), _ = clean(
        csv_of("CLASSES - FIF;" + GOOD_C.split(";", 1)[1], layout="c", eol="\r\n"), 2019, 1
    )
    assert (a.tp_fundo, b.tp_fundo, c.tp_fundo) == (None, None, "CLASSES - FIF")
    assert a.id_subclasse is None and b.id_subclasse is None


def test_strip_removes_ascii_whitespace_only() -> None:
    """Tabs, VT and FF are padding; latin-1 NBSP (0xA0) and NEL (0x85) are data."""
    line = "\t00.017.024/0001-53 ;\t2019-01-02;1\t;\x0b2;3.00\x0c;\x0b4;5\x0c; 6 "
    (row,), rejects = clean(csv_of(line), 2019, 1)
    assert rejects == []
    assert (row.cnpj_fundo, row.vl_quota, row.vl_patrim_liq, row.nr_cotst) == (
        "00017024000153",
        Decimal(2),
        Decimal(3),
        6,
    )
    assert motivo(GOOD_A.replace(";1130684.21;", ";1130684.21\xa0;")) == "valor_invalido"


def test_literal_quote_is_data() -> None:
    assert motivo('"FI";' + GOOD_A, layout="b") is None
    (row,), _ = clean(csv_of('"FI";' + GOOD_A, layout="b"), 2019, 1)
    assert row.tp_fundo == '"FI"'


# --- duplicates -----------------------------------------------------------------------------


def test_duplicates_last_line_wins_even_with_other_values() -> None:
    second = with_field(VL_PL, "2.00", with_field(CNPJ, "00017024000153"))
    third = with_field(VL_PL, "3.00")
    lines = [GOOD_A, second, with_field(VL_PL, "-1"), third, with_field(DATA, "2019-01-03")]
    silver, rejects = clean(csv_of(*lines), 2019, 1)
    assert rejects == [
        RejectRow(2, GOOD_A, "duplicado"),
        RejectRow(3, second, "duplicado"),  # same key once the CNPJ is normalised
        RejectRow(4, lines[2], "patrimonio_nao_positivo"),  # invalid rows are not candidates
    ]
    assert [(s.numero_linha, s.vl_patrim_liq) for s in silver] == [
        (5, Decimal("3.00")),
        (6, Decimal("1130684.21")),
    ]


def test_invalid_last_row_does_not_displace_a_valid_earlier_one() -> None:
    silver, rejects = clean(csv_of(GOOD_A, with_field(VL_PL, "")), 2019, 1)
    assert [s.numero_linha for s in silver] == [2]
    assert rejects == [RejectRow(3, with_field(VL_PL, ""), "patrimonio_ausente")]


def test_subclasses_are_separate_keys_and_empty_subclass_is_null() -> None:
    def c(sub: str, pl: str) -> str:
        return f"FI;00.017.024/0001-53;{sub};2019-01-02;1;1;{pl};0;0;1"

    lines = [c("", "1"), c("B", "2"), c("A", "3"), c("  ", "4"), c(" A ", "5"), c("a", "6")]
    silver, rejects = clean(csv_of(*lines, layout="c"), 2019, 1)
    assert [r.numero_linha for r in rejects] == [2, 4]  # "" == "  " and "A" == " A "
    assert all(r.motivo == "duplicado" for r in rejects)
    # sorted by key, NULL subclass first
    assert [(s.id_subclasse, s.numero_linha) for s in silver] == [
        (None, 5),
        ("A", 6),
        ("B", 3),
        ("a", 7),
    ]


def test_silver_is_sorted_by_key_and_rejects_by_line() -> None:
    lines = [
        with_field(DATA, "2019-01-03", with_field(CNPJ, "99.999.999/9999-99")),
        with_field(DATA, "2019-01-03"),
        with_field(VL_PL, ""),
        GOOD_A,
        with_field(DATA, "2019-01-03"),
    ]
    silver, rejects = clean(csv_of(*lines), 2019, 1)
    assert [(s.cnpj_fundo, s.dt_comptc.day) for s in silver] == [
        ("00017024000153", 2),
        ("00017024000153", 3),
        ("99999999999999", 3),
    ]
    assert [(r.numero_linha, r.motivo) for r in rejects] == [
        (3, "duplicado"),
        (4, "patrimonio_ausente"),
    ]


def test_invariant_bronze_equals_silver_plus_rejects() -> None:
    lines = [GOOD_A, GOOD_A, "", "junk", with_field(DATA, "2019-01-05"), ";;;;;;;", "  "]
    data = csv_of(*lines, eol="\r\n")
    month = expected_month(data, 2019, 1)
    assert len(month.bronze) == 6
    assert len(month.silver) == 2
    assert len(month.rejects) == 4
    rejected = {r.numero_linha for r in month.rejects}
    kept = {s.numero_linha for s in month.silver}
    assert not rejected & kept
    assert rejected | kept == {b.numero_linha for b in month.bronze} == {2, 3, 5, 6, 7, 8}
    # ";;;;;;;" has the 8 fields of layout (a), so it fails on the CNPJ instead
    assert month.rejects_by_reason == {"numero_de_campos": 2, "cnpj_ausente": 1, "duplicado": 1}


# --- gold -----------------------------------------------------------------------------------

GOLD_CSV = csv_of(
    # lines out of date order on purpose
    "CLASSES - FIF;11.111.111/0001-11;;2025-02-05;1;1.100000000000;300.00;10.00;50.00;12",  # 2
    "FI;11.111.111/0001-11;;2025-02-03;1;1.000000000000;100.00;;5.00;10",  # 3
    "FI;11.111.111/0001-11;;2025-02-04;1;1.050000000000;200.00;20.00;;11",  # 4
    "FI;11.111.111/0001-11;SUB2;2025-02-03;1;;50.00;;;",  # 5
    "FI;11.111.111/0001-11;SUB1;2025-02-04;1;2.002;1001.00;1.00;0.00;5",  # 6
    "FI;11.111.111/0001-11;SUB1;2025-02-03;1;2;1000.00;0.00;0.00;5",  # 7
    "FAPI;00.000.000/0001-91;;2025-02-10;1;0;10.00;1.00;2.00;",  # 8
    "FAPI;00.000.000/0001-91;;2025-02-11;1;;30.00;5.00;1.00;4",  # 9
    "FAPI;00.000.000/0001-91;;2025-02-12;1;3;20.00;0.00;6.00;",  # 10
    layout="c",
)


def by_key(rows: list[GoldRow]) -> dict[tuple[str, str | None], GoldRow]:
    return {(g.cnpj_fundo, g.id_subclasse): g for g in rows}


def test_gold_order_and_grouping() -> None:
    silver, rejects = clean(GOLD_CSV, 2025, 2)
    assert rejects == []
    rows = gold(silver)
    assert [(g.cnpj_fundo, g.id_subclasse, g.ano, g.mes) for g in rows] == [
        ("00000000000191", None, 2025, 2),
        ("11111111000111", None, 2025, 2),
        ("11111111000111", "SUB1", 2025, 2),
        ("11111111000111", "SUB2", 2025, 2),
    ]


def test_gold_formulas_by_hand() -> None:
    g = by_key(gold(clean(GOLD_CSV, 2025, 2)[0]))[("11111111000111", None)]
    assert g == GoldRow(
        cnpj_fundo="11111111000111",
        id_subclasse=None,
        ano=2025,
        mes=2,
        tp_fundo="CLASSES - FIF",  # the last date's row, not the last line of the file
        dias_com_informe=3,
        total_captacao=Decimal("30.00"),  # NULL on 02-03 counts as 0
        total_resgate=Decimal("55.00"),  # NULL on 02-04 counts as 0
        fluxo_liquido=Decimal("-25.00"),
        patrimonio_medio=Decimal("200"),
        patrimonio_inicial=Decimal("100.00"),
        patrimonio_final=Decimal("300.00"),
        cota_inicial=Decimal("1"),
        cota_final=Decimal("1.1"),
        cota_maxima=Decimal("1.1"),
        cota_minima=Decimal("1"),
        variacao_cota=Decimal("0.1"),
        cotistas_inicial=10,
        cotistas_final=12,
        variacao_cotistas=2,
        taxa_resgate=Decimal("0.275"),
        fluxo_liquido_pct_pl=Decimal("-0.125"),
        dias_fluxo_negativo=2,  # 02-03: 0-5, 02-05: 10-50
        em_risco=True,
        # 02-04: 100 × (1.05 / 1 − 1) = 5.00; 02-05: 200 × (1.1 / 1.05 − 1) = 9.5238… → 9.52
        rendimento=Decimal("14.52"),
        # 02-04: 200 − 100 − 5.00 − 20 = 75.00; 02-05: 300 − 200 − 9.52 − (10 − 50) = 130.48
        residuo_conciliacao=Decimal("205.48"),
        residuo_pct_pl=Decimal("1.0274"),  # 205.48 / 200
    )
    assert str(g.total_captacao) == "30.00"
    assert str(g.fluxo_liquido) == "-25.00"


def test_gold_subclasses_and_nulls() -> None:
    rows = by_key(gold(clean(GOLD_CSV, 2025, 2)[0]))
    sub1 = rows[("11111111000111", "SUB1")]
    assert sub1.dias_com_informe == 2
    assert sub1.total_captacao == Decimal("1.00")
    assert sub1.fluxo_liquido == Decimal("1.00")
    assert sub1.patrimonio_medio == Decimal("1000.5")
    assert sub1.variacao_cota == Decimal("0.001")
    assert sub1.variacao_cotistas == 0
    assert sub1.taxa_resgate == 0
    assert abs(sub1.fluxo_liquido_pct_pl - Decimal("0.00099950024987506246876561719140")) < Decimal(
        "1e-30"
    )
    assert sub1.dias_fluxo_negativo == 0
    assert sub1.em_risco is False
    assert sub1.rendimento == Decimal("1.00")  # 1000 × (2.002 / 2 − 1)
    assert sub1.residuo_conciliacao == Decimal("-1.00")  # 1001 − 1000 − 1.00 − 1.00
    assert abs(sub1.residuo_pct_pl + Decimal("0.00099950024987506246876561719140")) < Decimal(
        "1e-30"
    )

    sub2 = rows[("11111111000111", "SUB2")]
    assert (sub2.total_captacao, sub2.total_resgate, sub2.fluxo_liquido) == (0, 0, 0)
    assert str(sub2.total_captacao) == "0.00"  # all NULL sums to zero, not NULL
    assert (sub2.cota_inicial, sub2.cota_final, sub2.variacao_cota) == (None, None, None)
    assert (sub2.cota_maxima, sub2.cota_minima) == (None, None)
    assert (sub2.cotistas_inicial, sub2.cotistas_final, sub2.variacao_cotistas) == (None,) * 3
    assert sub2.patrimonio_medio == sub2.patrimonio_inicial == sub2.patrimonio_final == 50
    assert sub2.em_risco is False
    assert sub2.dias_fluxo_negativo == 0
    # One report: no pair of days to reconcile, so no return and no residual (not zero).
    assert (sub2.rendimento, sub2.residuo_conciliacao, sub2.residuo_pct_pl) == (None,) * 3


def test_gold_quota_zero_and_missing_edges() -> None:
    g = by_key(gold(clean(GOLD_CSV, 2025, 2)[0]))[("00000000000191", None)]
    assert g.tp_fundo == "FAPI"
    assert (g.cota_inicial, g.cota_final, g.variacao_cota) == (0, 3, None)  # divide by zero
    assert (g.cota_maxima, g.cota_minima) == (3, 0)  # the day without a quota is left out
    assert (g.cotistas_inicial, g.cotistas_final, g.variacao_cotistas) == (None, None, None)
    assert g.total_captacao == Decimal("6.00")
    assert g.total_resgate == Decimal("9.00")
    assert g.fluxo_liquido == Decimal("-3.00")
    assert g.patrimonio_medio == 20
    assert g.taxa_resgate == Decimal("0.45")
    assert g.fluxo_liquido_pct_pl == Decimal("-0.15")
    assert g.dias_fluxo_negativo == 2  # 1-2 and 0-6; 5-1 is positive
    assert g.em_risco is True
    # A quota of 0, then none: no day's return is known, so the month cannot be reconciled.
    assert (g.rendimento, g.residuo_conciliacao, g.residuo_pct_pl) == (None,) * 3


def test_gold_missing_final_values_give_null_variations() -> None:
    data = csv_of(
        "22.222.222/0001-22;2019-01-02;1;1.5;10;0;0;7",
        "22.222.222/0001-22;2019-01-03;1;;10;0;0;",
    )
    (g,) = gold(clean(data, 2019, 1)[0])
    assert (g.cota_inicial, g.cota_final, g.variacao_cota) == (Decimal("1.5"), None, None)
    assert (g.cotistas_inicial, g.cotistas_final, g.variacao_cotistas) == (7, None, None)
    assert g.tp_fundo is None
    assert g.em_risco is False  # zero flow is not at risk
    assert g.dias_fluxo_negativo == 0
    assert (g.rendimento, g.residuo_conciliacao) == (None, None)  # the last quota is missing


def test_gold_mean_keeps_50_digits() -> None:
    data = csv_of(
        "22.222.222/0001-22;2019-01-02;1;1;1.00;0;1.00;1",
        "22.222.222/0001-22;2019-01-03;1;1;1.00;0;0;1",
        "22.222.222/0001-22;2019-01-04;1;1;2.00;0;0;1",
    )
    (g,) = gold(clean(data, 2019, 1)[0])
    assert g.patrimonio_medio == Decimal("1." + "3" * 49)
    assert g.taxa_resgate == Decimal("0.75")  # 1.00 / (4/3), no rounding on the way


def test_gold_of_several_months_and_duplicate_guard() -> None:
    jan, _ = clean(csv_of(GOOD_A), 2019, 1)
    feb, _ = clean(csv_of(with_field(DATA, "2019-02-01")), 2019, 2)
    assert [(g.ano, g.mes) for g in gold(feb + jan)] == [(2019, 1), (2019, 2)]
    assert gold([]) == []
    with pytest.raises(ValueError, match="duplicate"):
        gold(jan + jan)


# --- flow reconciliation (docs/analytics.md) -------------------------------------------------

# Hand-made months whose answer is known. Each day's net assets are the previous day's times
# the quota's return (rounded half-up to the cent) plus the day's inflow minus its redemptions,
# except where a fund is meant to break that.
RECONCILE_CSV = csv_of(
    # A clean fund: net assets move only by return and flows.
    "FI;11.111.111/0001-11;2025-02-03;1;1.000000;1000000.00;0.00;0.00;10",
    "FI;11.111.111/0001-11;2025-02-04;1;1.001000;1004000.00;5000.00;2000.00;10",  # +1000.00
    "FI;11.111.111/0001-11;2025-02-05;1;1.000500;973498.50;0.00;30000.00;10",  # -501.50
    "FI;11.111.111/0001-11;2025-02-06;1;1.000500;980498.50;7000.00;0.00;10",  # +0.00
    "FI;11.111.111/0001-11;2025-02-07;1;1.002000;981968.51;0.00;0.00;10",  # +1470.01
    # The same fund with 02-05 missing: that day's redemption of 30000.00 is in no row.
    "FI;22.222.222/0001-22;2025-02-03;1;1.000000;1000000.00;0.00;0.00;10",
    "FI;22.222.222/0001-22;2025-02-04;1;1.001000;1004000.00;5000.00;2000.00;10",
    "FI;22.222.222/0001-22;2025-02-06;1;1.000500;980498.50;7000.00;0.00;10",
    "FI;22.222.222/0001-22;2025-02-07;1;1.002000;981968.51;0.00;0.00;10",
    # Net assets jump by 500000.00 on 02-05 with no flow and an unchanged quota.
    "FI;33.333.333/0001-33;2025-02-03;1;10.000000;2000000.00;0.00;0.00;10",
    "FI;33.333.333/0001-33;2025-02-04;1;10.000000;2000000.00;0.00;0.00;10",
    "FI;33.333.333/0001-33;2025-02-05;1;10.000000;2500000.00;0.00;0.00;10",
    "FI;33.333.333/0001-33;2025-02-06;1;10.000000;2500000.00;0.00;0.00;10",
    "FI;33.333.333/0001-33;2025-02-07;1;10.000000;2500000.00;0.00;0.00;10",
    # A fund near DECIMAL(17,2)'s limit with 12-decimal quotas: a quota ratio to 10 decimals, or
    # DOUBLE, misses its cents (DOUBLE gives 3960008135245.45 for the second day).
    "FI;44.444.444/0001-44;2025-02-03;1;1.234567890123;900000000000000.00;0.00;0.00;10",
    "FI;44.444.444/0001-44;2025-02-04;1;1.234567890124;900000000000729.00;0.00;0.00;10",
    "FI;44.444.444/0001-44;2025-02-05;1;1.240000000000;903960008135974.54;0.00;0.00;10",
    # One report: nothing to reconcile.
    "FI;55.555.555/0001-55;2025-02-07;1;1.000000;1000.00;100.00;0.00;10",
    layout="b",
)

# (rendimento, residuo_conciliacao) of each fund of RECONCILE_CSV, by hand:
RECONCILED = {
    # 1000000 × 0.001 = 1000.00; 1004000 × (1.0005 / 1.001 − 1) = −501.4985… → −501.50;
    # 973498.50 × 0 = 0.00; 980498.50 × (1.002 / 1.0005 − 1) = 1470.0127… → 1470.01
    "11111111000111": (Decimal("1968.51"), Decimal("0.00")),
    # 02-04 → 02-06 is one step: 1004000 × (1.0005 / 1.001 − 1) → −501.50, and
    # 980498.50 − 1004000.00 + 501.50 − 7000.00 = −30000.00: the missing day's flow.
    "22222222000122": (Decimal("1968.51"), Decimal("-30000.00")),
    "33333333000133": (Decimal("0.00"), Decimal("500000.00")),
    # 900000000000000 × 1e-12 / 1.234567890123 = 729.0000065… → 729.00;
    # 900000000000729 × (1.24 / 1.234567890124 − 1) = 3960008135245.5384… → 3960008135245.54
    "44444444000144": (Decimal("3960008135974.54"), Decimal("0.00")),
    "55555555000155": (None, None),
}


def test_reconciliation_of_hand_made_months() -> None:
    rows = {g.cnpj_fundo: g for g in gold(clean(RECONCILE_CSV, 2025, 2)[0])}
    assert {k: (g.rendimento, g.residuo_conciliacao) for k, g in rows.items()} == RECONCILED
    assert str(rows["11111111000111"].residuo_conciliacao) == "0.00"
    assert rows["11111111000111"].residuo_pct_pl == 0
    # −30000.00 / ((1000000 + 1004000 + 980498.50 + 981968.51) / 4 = 991616.7525)
    assert abs(
        rows["22222222000122"].residuo_pct_pl - Decimal("-0.0302536236145324702952716604")
    ) < Decimal("1e-28")
    assert rows["33333333000133"].residuo_pct_pl * 23 == 5  # 500000 / 2300000


def test_reconciliation_bounds() -> None:
    """A day's return needs two positive quotas, PL in cents × |Δquota| in 1e-12 below 10^38
    (R$ 10^24 × quota units), and fits DECIMAL(27,2); otherwise the month has no residual."""

    def month(*quotas: str, pl: str = "1000.00") -> tuple[Decimal | None, Decimal | None]:
        lines = [
            f"FI;11.111.111/0001-11;2025-02-0{3 + n};1;{q};{pl};0;0;1" for n, q in enumerate(quotas)
        ]
        (g,) = gold(clean(csv_of(*lines, layout="b"), 2025, 2)[0])
        return g.rendimento, g.residuo_conciliacao

    assert month("1", "1.5") == (Decimal("500.00"), Decimal("-500.00"))
    assert month("-1", "1") == (None, None)
    assert month("1", "") == (None, None)
    big = "999999999999999.99"  # DECIMAL(17,2)'s largest
    rendimento = Decimal("9998999999999999900.01")  # big × 9999
    assert month("1", "10000", pl=big) == (rendimento, -rendimento)
    assert month("1", "10000000000", pl=big) == (None, None)  # 10^17 × 10^22: past 38 digits
    assert month("0.000000000001", "1", pl=big) == (None, None)  # a return of R$ 10^27


# --- restatements ---------------------------------------------------------------------------


def test_diff_silver_counts_inserts_updates_deletes() -> None:
    old, _ = clean(
        csv_of(
            GOOD_A,  # kept, moved to another line below
            with_field(DATA, "2019-01-03"),  # updated
            with_field(DATA, "2019-01-04"),  # deleted
            with_field(DATA, "2019-01-07"),  # same value written differently
        ),
        2019,
        1,
    )
    new, _ = clean(
        csv_of(
            with_field(DATA, "2019-01-08"),  # inserted
            with_field(DATA, "2019-01-03", with_field(RESG, "0.01")),
            GOOD_A,
            with_field(DATA, "2019-01-07", with_field(VL_QUOTA, "26.6532795")),
            with_field(DATA, "2019-01-09"),  # inserted
        ),
        2019,
        1,
    )
    assert diff_silver(old, new) == (2, 1, 1)
    assert diff_silver(old, old) == (0, 0, 0)
    assert diff_silver([], new) == (len(new), 0, 0)
    assert diff_silver(new, []) == (0, 0, len(new))


@pytest.mark.parametrize(
    "changed",
    [
        with_field(NR_COTST, ""),
        with_field(VL_TOTAL, "1134502.31"),
        with_field(VL_QUOTA, "26.653279500001"),
        with_field(CAPTC, "0.01"),
    ],
)
def test_diff_silver_sees_every_data_column(changed: str) -> None:
    old, _ = clean(csv_of(GOOD_A), 2019, 1)
    new, _ = clean(csv_of(changed), 2019, 1)
    assert diff_silver(old, new) == (0, 1, 0)


def test_diff_silver_sees_tp_fundo_and_subclass_is_key() -> None:
    old, _ = clean(csv_of(GOOD_C, layout="c"), 2019, 1)
    new_tp, _ = clean(csv_of("FAPI;" + GOOD_C.split(";", 1)[1], layout="c"), 2019, 1)
    new_sub, _ = clean(csv_of(GOOD_C.replace(";;", ";S1;", 1), layout="c"), 2019, 1)
    assert diff_silver(old, new_tp) == (0, 1, 0)
    assert diff_silver(old, new_sub) == (1, 0, 1)


def test_diff_silver_rejects_non_silver_input() -> None:
    rows, _ = clean(csv_of(GOOD_A), 2019, 1)
    with pytest.raises(ValueError, match="duplicate"):
        diff_silver(rows + rows, rows)


# --- expected_month -------------------------------------------------------------------------


def test_expected_month_bundle() -> None:
    data = csv_of(GOOD_C, layout="c")
    month = expected_month(data, 2019, 1, arquivo="inf_diario_fi_201901.csv")
    assert month.sha256 == hashlib.sha256(data).hexdigest()
    assert month.arquivo == "inf_diario_fi_201901.csv"
    assert month.layout == "c"
    assert month.colunas == LAYOUTS["c"]
    assert (len(month.bronze), len(month.silver), len(month.rejects)) == (1, 1, 0)
    assert month.rejects_by_reason == {}
    assert len(month.gold) == 1


# --- the real rows --------------------------------------------------------------------------


def test_real_201901_two_exact_duplicate_pairs() -> None:
    month = expected_month(real("inf_diario_fi_201901.csv"), 2019, 1)
    assert month.layout == "a"
    assert len(month.bronze) == 5
    assert [(s.cnpj_fundo, s.dt_comptc.day, s.numero_linha) for s in month.silver] == [
        ("00017024000153", 2, 4),
        ("00017024000153", 3, 6),
        ("00068305000135", 2, 2),
    ]
    assert [(r.numero_linha, r.motivo) for r in month.rejects] == [
        (3, "duplicado"),
        (5, "duplicado"),
    ]
    assert month.rejects[0].registro == (
        "00.017.024/0001-53;2019-01-02;1134502.30;26.653279500000;1130684.21;0.00;0.00;1"
    )
    assert month.rejects_by_reason == {"duplicado": 2}

    small, big = month.gold
    assert small.cnpj_fundo == "00017024000153"
    assert small.dias_com_informe == 2
    assert small.patrimonio_medio == Decimal("1130734.81")
    assert small.total_captacao == small.total_resgate == small.fluxo_liquido == 0
    assert small.variacao_cotistas == 0
    assert abs(small.variacao_cota - Decimal("0.0000895049331546611365404396108178732752")) < (
        Decimal("1e-38")
    )
    assert small.em_risco is False

    assert big.cnpj_fundo == "00068305000135"
    assert big.dias_com_informe == 1
    assert big.total_captacao == Decimal("11753.36")
    assert big.total_resgate == Decimal("162714.29")
    assert big.fluxo_liquido == Decimal("-150960.93")
    assert big.patrimonio_medio == big.patrimonio_inicial == Decimal("61857056.82")
    assert big.cota_inicial == big.cota_final == Decimal("25.97228")
    assert big.variacao_cota == 0
    assert big.cotistas_inicial == big.cotistas_final == 7599
    assert abs(big.taxa_resgate - Decimal("0.0026304887164852988231779890235003909777")) < (
        Decimal("1e-38")
    )
    assert big.dias_fluxo_negativo == 1
    assert big.em_risco is True
    assert big.tp_fundo is None


def test_real_201911_one_redemption_day() -> None:
    month = expected_month(real("inf_diario_fi_201911.csv"), 2019, 11)
    assert (len(month.bronze), len(month.silver), len(month.rejects)) == (9, 9, 0)
    (g,) = month.gold
    assert g.dias_com_informe == 9
    assert g.total_captacao == Decimal("0.00")
    assert g.total_resgate == Decimal("2234.40")
    assert g.fluxo_liquido == Decimal("-2234.40")
    # bc: (1128763.75+...+1126402.51) = 10149368.36; / 9
    assert abs(g.patrimonio_medio - Decimal("1127707.5955555555555555555555555555555555")) < (
        Decimal("1e-33")
    )
    assert g.patrimonio_inicial == Decimal("1128763.75")
    assert g.patrimonio_final == Decimal("1126402.51")
    assert g.cota_inicial == Decimal("27.2392714")
    assert g.cota_final == Decimal("27.2362082")
    assert abs(g.variacao_cota - Decimal("-0.0001124552839544746413444817764105100110")) < (
        Decimal("1e-38")
    )
    assert abs(g.taxa_resgate - Decimal("0.0019813646807080711769535183172719134612")) < (
        Decimal("1e-38")
    )
    assert g.fluxo_liquido_pct_pl == g.taxa_resgate.copy_negate()  # unary - rounds to 28
    assert g.dias_fluxo_negativo == 1
    assert g.em_risco is True
    # the same file is all fora_do_mes in another partition
    other = expected_month(real("inf_diario_fi_201911.csv"), 2019, 10)
    assert other.silver == [] and other.gold == []
    assert other.rejects_by_reason == {"fora_do_mes": 9}


def test_real_202403_layout_b_display_precision() -> None:
    month = expected_month(real("inf_diario_fi_202403.csv"), 2024, 3)
    assert month.layout == "b"
    assert (len(month.bronze), len(month.silver), len(month.rejects)) == (4, 4, 0)
    assert str(month.silver[0].vl_quota) == "34.795001000000"
    assert str(month.silver[0].captc_dia) == "0.00"
    (g,) = month.gold
    assert g.tp_fundo == "FI"
    assert g.dias_com_informe == 4
    assert g.patrimonio_medio == Decimal("1107072.8825")
    assert abs(g.variacao_cota - Decimal("0.0010257507967883087573413203810512895228")) < (
        Decimal("1e-38")
    )
    assert g.fluxo_liquido == 0 and g.em_risco is False


def test_real_202501_layout_c_empty_subclass() -> None:
    month = expected_month(real("inf_diario_fi_202501.csv"), 2025, 1)
    assert month.layout == "c"
    assert (len(month.bronze), len(month.silver), len(month.rejects)) == (3, 3, 0)
    assert {s.id_subclasse for s in month.silver} == {None}
    (g,) = month.gold
    assert g.id_subclasse is None
    assert g.tp_fundo == "FI"
    assert abs(g.patrimonio_medio - Decimal("1152239.8733333333333333333333333333333333")) < (
        Decimal("1e-33")
    )
    assert abs(g.variacao_cota - Decimal("0.0009383591967232692397882994607349028094")) < (
        Decimal("1e-38")
    )


@pytest.mark.parametrize("name", REAL_MONTHS)
def test_real_files_survive_crlf_bom_and_blank_lines(name: str) -> None:
    """The same rows with CRLF, a BOM and blank lines give the same silver and gold."""
    data = real(name)
    ano, mes = int(name[14:18]), int(name[18:20])
    base = expected_month(data, ano, mes)
    lines = data.split(b"\n")
    noisy = b"\xef\xbb\xbf" + b"\r\n\r\n".join(lines) + b"\r\n\n"
    month = expected_month(noisy, ano, mes)
    assert month.gold == base.gold
    assert [s.key for s in month.silver] == [s.key for s in base.silver]
    assert diff_silver(base.silver, month.silver) == (0, 0, 0)
    assert [r.motivo for r in month.rejects] == [r.motivo for r in base.rejects]
    # line numbers are physical: each original line n is now at 2n - 1
    assert [s.numero_linha for s in month.silver] == [2 * s.numero_linha - 1 for s in base.silver]

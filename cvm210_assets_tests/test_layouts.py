"""Header layouts: each file's layout comes from its header, exactly, or the file is refused."""

from __future__ import annotations

import pytest

from cvm210_assets.source.layouts import (
    LAYOUT_A,
    LAYOUT_B,
    LAYOUT_C,
    LAYOUTS,
    Layout,
    UnknownLayoutError,
    detect_layout,
    header_columns,
)
from cvm210_assets_tests.real_files import REAL_FILES_DIR

REAL_DIR = REAL_FILES_DIR

# The headers as DESIGN.md §1 spells them, typed out here rather than taken from the package.
HEADERS: dict[str, str] = {
    "a": "CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST",
    "b": "TP_FUNDO;CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;"
    "NR_COTST",
    "c": "TP_FUNDO_CLASSE;CNPJ_FUNDO_CLASSE;ID_SUBCLASSE;DT_COMPTC;VL_TOTAL;VL_QUOTA;"
    "VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST",
}
UTF8_BOM_READ_AS_LATIN1 = b"\xef\xbb\xbf".decode("latin-1")


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_each_documented_header_gives_its_layout(name: str) -> None:
    layout = detect_layout(HEADERS[name], f"inf_diario_{name}.csv")

    assert layout.name == name
    assert layout.columns == tuple(HEADERS[name].split(";"))
    assert layout.header == HEADERS[name]
    assert LAYOUTS[name] is layout


@pytest.mark.parametrize(
    ("layout", "cnpj", "type_column", "subclass"),
    [
        (LAYOUT_A, "CNPJ_FUNDO", None, None),
        (LAYOUT_B, "CNPJ_FUNDO", "TP_FUNDO", None),
        (LAYOUT_C, "CNPJ_FUNDO_CLASSE", "TP_FUNDO_CLASSE", "ID_SUBCLASSE"),
    ],
)
def test_layout_names_its_canonical_columns(
    layout: Layout, cnpj: str, type_column: str | None, subclass: str | None
) -> None:
    assert layout.cnpj_column == cnpj
    assert layout.type_column == type_column
    assert layout.subclass_column == subclass
    for column in (cnpj, type_column, subclass, "DT_COMPTC"):
        assert column is None or column in layout.columns


@pytest.mark.parametrize("name", ["a", "b", "c"])
@pytest.mark.parametrize(
    "bom", ["\ufeff", UTF8_BOM_READ_AS_LATIN1], ids=["bom-decoded", "bom-read-as-latin1"]
)
def test_byte_order_mark_is_ignored(name: str, bom: str) -> None:
    assert detect_layout(bom + HEADERS[name], "f.csv").name == name


@pytest.mark.parametrize("name", ["a", "b", "c"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_ending_is_ignored(name: str, ending: str) -> None:
    assert detect_layout(HEADERS[name] + ending, "f.csv").name == name


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_lower_case_and_padded_names_are_accepted(name: str) -> None:
    messy = "; ".join(f"  {column.lower()}\t" for column in HEADERS[name].split(";"))

    assert detect_layout(messy, "f.csv").name == name


def test_bom_lower_case_padding_and_crlf_together() -> None:
    line = UTF8_BOM_READ_AS_LATIN1 + " tp_fundo_classe ;" + HEADERS["c"].split(";", 1)[1].lower()

    assert detect_layout(line + "\r\n", "f.csv") is LAYOUT_C


def test_header_columns_strips_bom_padding_case_and_line_end() -> None:
    assert header_columns("\ufeff cnpj_fundo ;Dt_Comptc\r\n") == ("CNPJ_FUNDO", "DT_COMPTC")
    assert header_columns(UTF8_BOM_READ_AS_LATIN1 + "a;b\n") == ("A", "B")


@pytest.mark.parametrize(
    "header",
    [
        # layout (a) without NR_COTST
        "CNPJ_FUNDO;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA",
        # layout (b) with an extra column
        HEADERS["b"] + ";VL_EXTRA",
        # layout (a) with CNPJ and date swapped: order matters, nothing is guessed
        "DT_COMPTC;CNPJ_FUNDO;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;RESG_DIA;NR_COTST",
        # a mix: layout (c)'s class CNPJ in layout (b)
        "TP_FUNDO;CNPJ_FUNDO_CLASSE;DT_COMPTC;VL_TOTAL;VL_QUOTA;VL_PATRIM_LIQ;CAPTC_DIA;"
        "RESG_DIA;NR_COTST",
        # layout (a) with a trailing separator (an empty tenth column)
        HEADERS["a"] + ";",
    ],
    ids=["missing-column", "extra-column", "reordered", "mixed", "trailing-separator"],
)
def test_other_headers_are_refused_naming_file_and_columns(header: str) -> None:
    with pytest.raises(UnknownLayoutError) as caught:
        detect_layout(header + "\r\n", "HIST/inf_diario_fi_2019.zip!inf_diario_fi_201905.csv")

    message = str(caught.value)
    assert "HIST/inf_diario_fi_2019.zip!inf_diario_fi_201905.csv" in message
    assert f"columns seen: {header}. Known layouts" in message


def test_comma_separated_header_is_refused() -> None:
    header = HEADERS["a"].replace(";", ",")

    with pytest.raises(UnknownLayoutError, match=r"^x\.csv: ") as caught:
        detect_layout(header, "x.csv")

    assert f"columns seen: {header}" in str(caught.value)


def test_unknown_header_message_shows_normalised_columns_and_known_layouts() -> None:
    with pytest.raises(UnknownLayoutError) as caught:
        detect_layout("\ufeff cnpj ; data \n", "weird.csv")

    message = str(caught.value)
    assert message.startswith("weird.csv: ")
    assert "columns seen: CNPJ;DATA" in message
    for name, header in HEADERS.items():
        assert f"({name}) {header}" in message


def test_empty_header_is_refused() -> None:
    with pytest.raises(UnknownLayoutError, match=r"empty\.csv: unknown header layout"):
        detect_layout("\r\n", "empty.csv")


def test_unknown_layout_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        detect_layout("A;B", "f.csv")


REAL_FILES = {
    "inf_diario_fi_201901.csv": "a",
    "inf_diario_fi_201911.csv": "a",
    "inf_diario_fi_202403.csv": "b",
    "inf_diario_fi_202501.csv": "c",
}


@pytest.mark.parametrize(("file_name", "expected"), sorted(REAL_FILES.items()))
def test_real_cvm_files_have_the_expected_layout(file_name: str, expected: str) -> None:
    lines = (REAL_DIR / file_name).read_bytes().decode("latin-1").splitlines()

    layout = detect_layout(lines[0], file_name)

    assert layout.name == expected
    data = [line for line in lines[1:] if line]
    assert data, f"{file_name} has no data rows"
    # The layout's columns describe the real rows: one field per column in every row.
    assert {len(line.split(";")) for line in data} == {len(layout.columns)}
    date_index = layout.columns.index("DT_COMPTC")
    month = f"{file_name[14:18]}-{file_name[18:20]}"
    assert all(line.split(";")[date_index].startswith(month) for line in data)


def test_all_real_files_are_covered() -> None:
    assert sorted(p.name for p in REAL_DIR.glob("inf_diario_fi_*.csv")) == sorted(REAL_FILES)

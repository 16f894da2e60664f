"""The three header layouts CVM has used; a file's layout comes from its header, never its date."""

from __future__ import annotations

from dataclasses import dataclass

UTF8_BOM_AS_LATIN1 = "\u00ef\u00bb\u00bf"

VALUE_COLUMNS = ("VL_TOTAL", "VL_QUOTA", "VL_PATRIM_LIQ", "CAPTC_DIA", "RESG_DIA", "NR_COTST")


class UnknownLayoutError(ValueError):
    """A header that matches none of CVM's layouts: nothing is guessed."""


@dataclass(frozen=True)
class Layout:
    """One header layout, and which of its columns hold the canonical fields."""

    name: str
    columns: tuple[str, ...]
    cnpj_column: str
    type_column: str | None
    subclass_column: str | None

    @property
    def header(self) -> str:
        return ";".join(self.columns)


LAYOUT_A = Layout(
    name="a",
    columns=("CNPJ_FUNDO", "DT_COMPTC", *VALUE_COLUMNS),
    cnpj_column="CNPJ_FUNDO",
    type_column=None,
    subclass_column=None,
)
LAYOUT_B = Layout(
    name="b",
    columns=("TP_FUNDO", "CNPJ_FUNDO", "DT_COMPTC", *VALUE_COLUMNS),
    cnpj_column="CNPJ_FUNDO",
    type_column="TP_FUNDO",
    subclass_column=None,
)
# Resolução CVM 175: one row per class, or per subclass when ID_SUBCLASSE is filled.
LAYOUT_C = Layout(
    name="c",
    columns=("TP_FUNDO_CLASSE", "CNPJ_FUNDO_CLASSE", "ID_SUBCLASSE", "DT_COMPTC", *VALUE_COLUMNS),
    cnpj_column="CNPJ_FUNDO_CLASSE",
    type_column="TP_FUNDO_CLASSE",
    subclass_column="ID_SUBCLASSE",
)
LAYOUTS = {layout.name: layout for layout in (LAYOUT_A, LAYOUT_B, LAYOUT_C)}
_BY_COLUMNS = {layout.columns: layout for layout in LAYOUTS.values()}


def header_columns(header_line: str) -> tuple[str, ...]:
    """Column names of a decoded header line, without BOM, line end, padding or case."""
    line = header_line.removeprefix("\ufeff").removeprefix(UTF8_BOM_AS_LATIN1)
    return tuple(name.strip().upper() for name in line.rstrip("\r\n").split(";"))


def detect_layout(header_line: str, source: str) -> Layout:
    """The layout whose columns are exactly the header's; `source` names the file in errors."""
    columns = header_columns(header_line)
    layout = _BY_COLUMNS.get(columns)
    if layout is None:
        known = "; ".join(f"({lay.name}) {lay.header}" for lay in LAYOUTS.values())
        raise UnknownLayoutError(
            f"{source}: unknown header layout, columns seen: {';'.join(columns) or '(none)'}. "
            f"Known layouts: {known}"
        )
    return layout

"""SQL over the lake under the names and statements of the original design: DuckDB by default,
Spark SQL with Delta Lake on request (and on Databricks).

`cvm_p210.gold_cvm210_analytics` and friends are views over the Delta tables' current files
(read through delta-rs' file list and Arrow), so a query sees exactly the committed version.
The original design's extra columns are defined once, in VIEWS, and rendered both for DuckDB
and for Spark SQL (Databricks). What DuckDB does not parse is done by delta-rs
(`lake/maintenance.py`): VERSION / TIMESTAMP AS OF (rewritten into views of that version),
DESCRIBE HISTORY, OPTIMIZE [ZORDER BY] and RESTORE.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from cvm210_assets.lake import maintenance
from cvm210_assets.lake.table_catalog import (
    GOLD_FUNDOS_VIEW,
    GOLD_TABLE,
    LAKE_TABLES,
    REGISTRY_TABLE,
    SILVER_TABLE,
    SQL_SCHEMA,
    TABLES,
    LakeTable,
    sql_names,
)
from cvm210_assets.lake.tables import DeltaRsTables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Result = tuple[list[str], list[tuple[Any, ...]]]


class SqlError(ValueError):
    """A statement `cvm210 sql` cannot run, with what it can run instead."""


# --- the original design's tables -------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A table of the original design: a Delta table plus the original's extra columns."""

    table: str
    # Extra column -> SQL expression over the table's row (alias t).
    columns: Mapping[str, str] = field(default_factory=dict)


# The original design's columns that a table's own lack, by table.
EXTRA_COLUMNS: dict[LakeTable, dict[str, str]] = {
    SILVER_TABLE: {"dh_processamento_silver": "t.dh_processamento"},
    GOLD_TABLE: {
        "dias_negociacao": "t.dias_com_informe",
        "valor_total_movimentado": "t.total_captacao + t.total_resgate",
        # A return in percent. The original's (max − min) ÷ min was a range: see README.
        "variacao_cota_mes": "100 * t.variacao_cota",
        "dh_geracao_analytics": "t.dh_processamento",
    },
}
VIEWS: dict[str, View] = {t.view: View(t.name, EXTRA_COLUMNS.get(t, {})) for t in LAKE_TABLES}

# The registry's columns that gold_fundos adds to each gold row.
REGISTRY_COLUMNS = (
    "nome",
    "classe",
    "classe_anbima",
    "gestor",
    "cnpj_gestor",
    "administrador",
    "cnpj_administrador",
    "situacao",
    "fundo_de_cotas",
)


def gold_fundos_sql(relations: Mapping[str, str]) -> str:
    """gold_kpis with the fund's name, class, manager and administrator: a subclass's row
    takes its subclass's registry entry, else its class's (one row of gold, one row here)."""
    picked = [
        f"CASE WHEN s.cnpj_fundo IS NOT NULL THEN s.{c} ELSE c.{c} END AS {c}"
        for c in REGISTRY_COLUMNS
    ]
    return (
        f"SELECT g.*, {', '.join(picked)} FROM {relations[GOLD_TABLE.name]} AS g"
        f" LEFT JOIN {relations[REGISTRY_TABLE.name]} AS s"
        " ON s.cnpj_fundo = g.cnpj_fundo AND s.id_subclasse = g.id_subclasse"
        f" LEFT JOIN {relations[REGISTRY_TABLE.name]} AS c"
        " ON c.cnpj_fundo = g.cnpj_fundo AND c.id_subclasse IS NULL"
    )


# Views over several tables: name -> (the tables, its SELECT over them).
JOINED_VIEWS = {
    GOLD_FUNDOS_VIEW.view: (tuple(t.name for t in GOLD_FUNDOS_VIEW.tables), gold_fundos_sql)
}


def _joined_views(relations: Mapping[str, str]) -> list[tuple[str, str]]:
    return [
        (name, select(relations))
        for name, (needs, select) in JOINED_VIEWS.items()
        if all(t in relations for t in needs)
    ]


def view_sql(name: str, relations: Mapping[str, str]) -> str:
    """The SELECT of view `name`, over `relations` (Delta table -> how the engine names it)."""
    view = VIEWS[name]
    extras = [f"{expression} AS {column}" for column, expression in view.columns.items()]
    return f"SELECT {', '.join(['t.*', *extras])} FROM {relations[view.table]} AS t"


def spark_view_statements(relations: Mapping[str, str]) -> list[str]:
    """CREATE VIEW statements of `cvm_p210.*` for Spark SQL over `relations` (Delta table ->
    Spark's name for it, e.g. delta_relations(lake_uri) on Databricks)."""
    return (
        [f"CREATE SCHEMA IF NOT EXISTS {SQL_SCHEMA}"]
        + [
            f"CREATE OR REPLACE VIEW {SQL_SCHEMA}.{name} AS {view_sql(name, relations)}"
            for name, view in VIEWS.items()
            if view.table in relations
        ]
        + [f"CREATE OR REPLACE VIEW {SQL_SCHEMA}.{n} AS {q}" for n, q in _joined_views(relations)]
    )


def delta_relations(lake_uri: str, tables: Iterable[str] = TABLES) -> dict[str, str]:
    """The lake's Delta tables by path, for a Spark with Delta Lake."""
    return {table: f"delta.`{lake_uri.rstrip('/')}/{table}`" for table in tables}


def spark_statements(lake_uri: str, tables: Iterable[str] = TABLES) -> list[str]:
    """`cvm_p210.*` in a Spark with Delta Lake (Databricks, `cvm210 sql --engine spark`) over
    the lake's `tables`. Spark time-travels, OPTIMIZEs, VACUUMs and DESCRIBEs HISTORY only of
    tables, never of views, so the original's silver name is the silver Delta table itself
    (registered by location; there `dh_processamento_silver` is `dh_processamento`), and the
    other names are the views."""
    tables = list(tables)
    registered = []
    if SILVER_TABLE.name in tables:
        location = f"{lake_uri.rstrip('/')}/{SILVER_TABLE.name}"
        registered.append(
            f"CREATE TABLE IF NOT EXISTS {SILVER_TABLE.sql_name} USING DELTA LOCATION '{location}'"
        )
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SQL_SCHEMA}",
        *registered,
        *(
            s
            for s in spark_view_statements(delta_relations(lake_uri, tables))[1:]
            if f" {SILVER_TABLE.sql_name} " not in s
        ),
    ]


def run_spark(spark: SparkSession, lake_uri: str, tables: Iterable[str], statement: str) -> Result:
    """One statement, as written, on Spark SQL with Delta Lake over the lake's `tables`: every
    Delta statement Spark has (time travel, DESCRIBE HISTORY, OPTIMIZE, VACUUM, RESTORE …)."""
    tables = list(tables)
    for registration in spark_statements(lake_uri, tables):
        spark.sql(registration)
    for table, relation in delta_relations(lake_uri, tables).items():  # their own names too
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {table} AS SELECT * FROM {relation}")
    frame = spark.sql(statement.strip().rstrip(";"))
    return list(frame.columns), [tuple(row) for row in frame.collect()]


# --- DuckDB ----------------------------------------------------------------------------------


def _register(
    con: duckdb.DuckDBPyConnection, tables: DeltaRsTables, table: str, version: int | None
) -> str | None:
    dataset = tables.dataset(table, version)
    if dataset is None:
        return None
    name = f"_{table}" if version is None else f"_{table}@v{version}"
    con.register(name, dataset)
    return f'"{name}"'


def connect(tables: DeltaRsTables) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per Delta table that exists, under both names."""
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {SQL_SCHEMA}")
    registered = {t: _register(con, tables, t, None) for t in TABLES}
    relations = {t: name for t, name in registered.items() if name is not None}
    for name, view in VIEWS.items():
        if view.table in relations:
            con.execute(f"CREATE VIEW {SQL_SCHEMA}.{name} AS {view_sql(name, relations)}")
    for name, select in _joined_views(relations):
        con.execute(f"CREATE VIEW {SQL_SCHEMA}.{name} AS {select}")
    for table, relation in relations.items():
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {relation}")
    return con


def _version_schema(
    con: duckdb.DuckDBPyConnection, tables: DeltaRsTables, table: str, version: int
) -> str:
    """A schema holding `table` at `version` under both its names."""
    schema = f'"{table}@v{version}"'
    relations = {table: str(_register(con, tables, table, version))}
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name, view in VIEWS.items():
        if view.table == table:
            con.execute(f"CREATE OR REPLACE VIEW {schema}.{name} AS {view_sql(name, relations)}")
    con.execute(f"CREATE OR REPLACE VIEW {schema}.{table} AS SELECT * FROM {relations[table]}")
    return schema


def run(con: duckdb.DuckDBPyConnection, query: str) -> Result:
    cursor = con.execute(query)
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall()


# --- statements ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--[^\n]*|/\*.*?\*/)
      | (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")*")
      | (?P<number>\d+(?:\.\d*)?)
      | (?P<word>[^\W\d]\w*)
      | (?P<symbol>.)""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # space, comment, string, quoted, number, word or symbol
    text: str

    def is_(self, keyword: str) -> bool:
        return self.kind == "word" and self.text.upper() == keyword

    @property
    def name(self) -> str:
        """An identifier as SQL resolves it: unquoted ones without regard to case."""
        return self.text[1:-1].replace('""', '"') if self.kind == "quoted" else self.text.lower()


def tokenize(statement: str) -> list[Token]:
    """Tokens of `statement`, whitespace and comments included: joined, they give it back."""
    return [Token(str(m.lastgroup), m.group()) for m in _TOKEN.finditer(statement)]


def _table(parts: Sequence[Token]) -> str | None:
    """The Delta table that `[cvm_p210.]name` or a table's own name refers to."""
    names = [p.name for p in parts]
    if len(names) == 2 and names[0] == SQL_SCHEMA and names[1] in VIEWS:
        return VIEWS[names[1]].table
    if len(names) == 1 and names[0] in TABLES:
        return names[0]
    return None


def _known() -> str:
    return ", ".join(sql_names())


def _timestamp(literal: Token) -> dt.datetime:
    text = literal.text[1:-1].replace("''", "'").strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SqlError(
            f"TIMESTAMP AS OF {literal.text}: not a timestamp; write 'YYYY-MM-DD' or"
            " 'YYYY-MM-DD HH:MM:SS' (UTC unless an offset is given)"
        ) from None


def _as_of(tables: DeltaRsTables, table: str, clause: Sequence[Token]) -> int:
    """The version that `VERSION AS OF n` or `TIMESTAMP AS OF '…'` names, checked."""
    kind, literal = clause[0], clause[3] if len(clause) > 3 else None
    if kind.is_("VERSION") and literal is not None and literal.kind == "number":
        return maintenance.require_version(tables, table, int(literal.text))
    if kind.is_("TIMESTAMP") and literal is not None and literal.kind == "string":
        return maintenance.version_at(tables, table, _timestamp(literal))
    raise SqlError(
        f"{table}: write VERSION AS OF <number> or TIMESTAMP AS OF '<timestamp>' (a literal)"
    )


def _significant(tokens: Sequence[Token]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]


def _time_travel(con: duckdb.DuckDBPyConnection, tables: DeltaRsTables, statement: str) -> str:
    """`statement` with each `<table> VERSION|TIMESTAMP AS OF <literal>` replaced by that
    table's name in a schema holding that version (so `t.column` references still bind)."""
    tokens = tokenize(statement)
    sig = _significant(tokens)
    texts = [t.text for t in tokens]
    for k in range(1, len(sig) - 2):
        keyword, as_, of = (tokens[i] for i in sig[k : k + 3])
        travels = keyword.is_("VERSION") or keyword.is_("TIMESTAMP")
        if not (travels and as_.is_("AS") and of.is_("OF")):
            continue
        dotted = k >= 3 and tokens[sig[k - 2]].text == "."
        parts = [tokens[sig[k - 3]], tokens[sig[k - 1]]] if dotted else [tokens[sig[k - 1]]]
        table = _table(parts)
        if table is None:
            written = ".".join(p.text for p in parts)
            raise SqlError(f"{written} {keyword.text} AS OF: no such table; tables: {_known()}")
        version = _as_of(tables, table, [tokens[i] for i in sig[k : k + 4]])
        start, end = sig[k - 3 if dotted else k - 1], sig[k + 3]
        texts[start : end + 1] = [""] * (end - start + 1)
        texts[start] = f"{_version_schema(con, tables, table, version)}.{parts[-1].text}"
    return "".join(texts)


class _Words:
    """The significant tokens of a maintenance statement, consumed left to right."""

    def __init__(self, statement: str, tokens: Sequence[Token]) -> None:
        significant = [tokens[i] for i in _significant(tokens)]
        while significant and significant[-1].text == ";":
            significant.pop()
        self.statement, self.tokens, self.at = statement, significant, 0

    def take(self, *keywords: str) -> bool:
        """Consume `keywords` if they come next."""
        ahead = self.tokens[self.at : self.at + len(keywords)]
        if len(ahead) == len(keywords) and all(
            t.is_(k) for t, k in zip(ahead, keywords, strict=True)
        ):
            self.at += len(keywords)
            return True
        return False

    def symbol(self, text: str) -> bool:
        """Consume the symbol `text` if it comes next."""
        found = self.at < len(self.tokens) and self.tokens[self.at].text == text
        self.at += found
        return found

    def next(self, what: str) -> Token:
        if self.at >= len(self.tokens):
            raise SqlError(f"{self.statement}: {what} expected at the end")
        self.at += 1
        return self.tokens[self.at - 1]

    def number(self) -> int:
        token = self.next("a number")
        if token.kind != "number" or not token.text.isdigit():
            raise SqlError(f"{self.statement}: a whole number expected, not {token.text!r}")
        return int(token.text)

    def table(self) -> str:
        parts = [self.next("a table")]
        if self.symbol("."):
            parts.append(self.next("a table name after the dot"))
        table = _table(parts)
        if table is None:
            written = ".".join(p.text for p in parts)
            raise SqlError(f"{written}: no such table; tables: {_known()}")
        return table

    def end(self, syntax: str) -> None:
        if self.at < len(self.tokens):
            raise SqlError(
                f"unexpected {self.tokens[self.at].text!r} in {self.statement}; syntax: {syntax}"
            )


HISTORY_SYNTAX = "DESCRIBE HISTORY <table> [LIMIT n]"
OPTIMIZE_SYNTAX = "OPTIMIZE <table> [ZORDER BY (column, ...)]"
RESTORE_SYNTAX = "RESTORE [TABLE] <table> [TO] VERSION AS OF n | TIMESTAMP AS OF '<timestamp>'"


def _describe_history(tables: DeltaRsTables, words: _Words) -> Result:
    table = words.table()
    limit = words.number() if words.take("LIMIT") else None
    words.end(HISTORY_SYNTAX)
    rows = maintenance.history(tables, table, limit)
    columns = list(maintenance.HISTORY_COLUMNS)
    return columns, [tuple(row[c] for c in columns) for row in rows]


def _optimize(tables: DeltaRsTables, words: _Words) -> Result:
    table = words.table()
    columns: list[str] = []
    if words.take("ZORDER", "BY"):
        parenthesised = words.symbol("(")
        columns.append(words.next("a column").name)
        while words.symbol(","):
            columns.append(words.next("a column").name)
        if parenthesised and not words.symbol(")"):
            raise SqlError(f"{words.statement}: ')' expected; syntax: {OPTIMIZE_SYNTAX}")
    words.end(OPTIMIZE_SYNTAX)
    return _figures(maintenance.optimize(tables, table, columns))


def _restore(tables: DeltaRsTables, words: _Words) -> Result:
    words.take("TABLE")
    table = words.table()
    words.take("TO")
    clause = [words.next("VERSION AS OF or TIMESTAMP AS OF") for _ in range(4)]
    words.end(RESTORE_SYNTAX)
    return _figures(maintenance.restore(tables, table, _as_of(tables, table, clause)))


def _figures(figures: Mapping[str, Any]) -> Result:
    return ["metric", "value"], [(k, _text(v)) for k, v in figures.items()]


def execute(tables: DeltaRsTables, statement: str) -> Result:
    """Run one statement: a DuckDB query (time travel allowed), or one of DESCRIBE HISTORY,
    OPTIMIZE and RESTORE, done by delta-rs."""
    tokens = tokenize(statement)
    words = _Words(statement.strip(), tokens)
    if words.take("DESCRIBE", "HISTORY"):
        return _describe_history(tables, words)
    if words.take("OPTIMIZE"):
        return _optimize(tables, words)
    if words.take("RESTORE"):
        return _restore(tables, words)
    con = connect(tables)
    return run(con, _time_travel(con, tables, statement))


# --- output ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def render(columns: Sequence[str], rows: Sequence[tuple[Any, ...]], fmt: str) -> str:
    """Rows as an aligned text table, CSV or JSON (exact decimals kept as strings)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        records = [
            {
                c: (_text(v) if isinstance(v, (decimal.Decimal, dt.date)) else v)
                for c, v in zip(columns, row, strict=True)
            }
            for row in rows
        ]
        return json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row[i], (int, float, decimal.Decimal)) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    separator = "-+-".join("-" * w for w in widths)
    footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
    return "\n".join([line(columns), separator, *(line(r) for r in cells), footer]) + "\n"


@dataclass(frozen=True)
class Chart:
    """What a chart plots: x labels in plotting order and one series per numeric column."""

    x_columns: list[str]
    x: list[str]
    series: dict[str, list[float | None]]
    kind: str  # "line" over ordered x (numbers, dates), "bar" over categories (text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _column_is(rows: Sequence[tuple[Any, ...]], i: int, test: Any) -> bool:
    values = [row[i] for row in rows if row[i] is not None]
    return bool(values) and all(test(v) for v in values)


def chart_data(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Chart:
    """The x axis is the leading non-numeric columns (else the leading integer ones, e.g. ano,
    mes); every later numeric column is a series. Ordered x (integers, dates) is sorted."""
    numeric = [_column_is(rows, i, _is_number) for i in range(len(columns))]
    leading = next((i for i, n in enumerate(numeric) if n), len(columns))
    if leading == 0:
        integer = [_column_is(rows, i, lambda v: isinstance(v, int)) for i in range(len(columns))]
        leading = next((i for i, n in enumerate(integer) if not n), len(columns) - 1)
    series_at = [i for i in range(leading, len(columns)) if numeric[i]]
    if not series_at or leading == 0:
        raise SqlError(
            "--chart: the result needs x columns (text, dates or integers) followed by numeric"
            f" columns to plot; it has {', '.join(columns) or 'none'}"
        )
    ordered = all(
        _column_is(rows, i, lambda v: isinstance(v, (int, dt.date)) and not isinstance(v, bool))
        for i in range(leading)
    )
    if ordered:
        rows = sorted(rows, key=lambda r: tuple((v is None, v) for v in r[:leading]))

    def label(value: Any) -> str:
        return f"{value:02d}" if isinstance(value, int) else _text(value)

    return Chart(
        x_columns=list(columns[:leading]),
        x=["-".join(label(v) for v in row[:leading]) for row in rows],
        # Plotting only: the money itself stays DECIMAL everywhere else.
        series={
            columns[i]: [None if r[i] is None else float(r[i]) for r in rows] for i in series_at
        },
        kind="line" if ordered else "bar",
    )


def write_chart(chart: Chart, path: str, title: str) -> None:
    """The chart as a PNG, drawn by matplotlib's Agg canvas (no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(11, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(chart.x)))
    nan = float("nan")
    width = 0.8 / len(chart.series)
    for n, (name, values) in enumerate(chart.series.items()):
        points = [nan if v is None else v for v in values]
        if chart.kind == "line":
            axes.plot(positions, points, marker="o", label=name)
        else:
            axes.bar([p - 0.4 + width * (n + 0.5) for p in positions], points, width, label=name)
    step = max(1, len(chart.x) // 30)
    axes.set_xticks(positions[::step], chart.x[::step], rotation=45, ha="right")
    axes.set_xlabel(" / ".join(chart.x_columns))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(textwrap.fill(title, 140), fontsize=9, loc="left")
    figure.savefig(path, format="png", dpi=100)

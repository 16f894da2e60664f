"""Statements as tokens, and the original design's commands that DuckDB does not parse:
DESCRIBE HISTORY, OPTIMIZE [ZORDER BY] and RESTORE, done by delta-rs (`lake/maintenance.py`).

The tokenizer keeps whitespace, comments and strings, so a statement can be rewritten in place
(time travel, duckdb_engine.py) without touching what its strings and comments say.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cvm210_assets.lake import maintenance
from cvm210_assets.lake.table_catalog import SQL_SCHEMA, TABLES, sql_names
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.sql import Result, SqlError
from cvm210_assets.sql.render import cell_text
from cvm210_assets.sql.views import VIEWS

# --- tokens ----------------------------------------------------------------------------------

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


def significant(tokens: Sequence[Token]) -> list[int]:
    """The positions of the tokens that are neither whitespace nor comments."""
    return [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]


# --- names and versions ----------------------------------------------------------------------


def table_named(parts: Sequence[Token]) -> str | None:
    """The Delta table that `[cvm_p210.]name` or a table's own name refers to."""
    names = [p.name for p in parts]
    if len(names) == 2 and names[0] == SQL_SCHEMA and names[1] in VIEWS:
        return VIEWS[names[1]].table
    if len(names) == 1 and names[0] in TABLES:
        return names[0]
    return None


def known_names() -> str:
    """Every name a statement may use, for the message that says a name is unknown."""
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


def version_as_of(tables: DeltaRsTables, table: str, clause: Sequence[Token]) -> int:
    """The version that `VERSION AS OF n` or `TIMESTAMP AS OF '…'` names, checked."""
    kind, literal = clause[0], clause[3] if len(clause) > 3 else None
    if kind.is_("VERSION") and literal is not None and literal.kind == "number":
        return maintenance.require_version(tables, table, int(literal.text))
    if kind.is_("TIMESTAMP") and literal is not None and literal.kind == "string":
        return maintenance.version_at(tables, table, _timestamp(literal))
    raise SqlError(
        f"{table}: write VERSION AS OF <number> or TIMESTAMP AS OF '<timestamp>' (a literal)"
    )


# --- the commands ----------------------------------------------------------------------------


class _Words:
    """The significant tokens of a maintenance statement, consumed left to right."""

    def __init__(self, statement: str, tokens: Sequence[Token]) -> None:
        kept = [tokens[i] for i in significant(tokens)]
        while kept and kept[-1].text == ";":
            kept.pop()
        self.statement, self.tokens, self.at = statement, kept, 0

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
        table = table_named(parts)
        if table is None:
            written = ".".join(p.text for p in parts)
            raise SqlError(f"{written}: no such table; tables: {known_names()}")
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
    return _figures(maintenance.restore(tables, table, version_as_of(tables, table, clause)))


def _figures(figures: Mapping[str, Any]) -> Result:
    return ["metric", "value"], [(k, cell_text(v)) for k, v in figures.items()]


def run_command(tables: DeltaRsTables, statement: str) -> Result | None:
    """DESCRIBE HISTORY, OPTIMIZE or RESTORE, done by delta-rs; None when `statement` is none
    of them (a query, for the engine)."""
    words = _Words(statement.strip(), tokenize(statement))
    if words.take("DESCRIBE", "HISTORY"):
        return _describe_history(tables, words)
    if words.take("OPTIMIZE"):
        return _optimize(tables, words)
    if words.take("RESTORE"):
        return _restore(tables, words)
    return None

"""The DuckDB engine of `cvm210 sql`: the lake's Delta tables and the original design's views in
an in-memory DuckDB, time travel, and one statement run there.

Each table is registered from delta-rs' file list of its version (Arrow), so a query sees
exactly a committed version. What DuckDB does not parse is done by delta-rs: VERSION /
TIMESTAMP AS OF is rewritten into views of that version; DESCRIBE HISTORY, OPTIMIZE and
RESTORE are statements.py's.
"""

from __future__ import annotations

import duckdb

from cvm210_assets.lake.table_catalog import SQL_SCHEMA, TABLES
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.sql import Result, SqlError
from cvm210_assets.sql.statements import (
    known_names,
    run_command,
    significant,
    table_named,
    tokenize,
    version_as_of,
)
from cvm210_assets.sql.views import VIEWS, joined_views, view_sql


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
    columns = {
        t: [d[0] for d in con.execute(f"SELECT * FROM {r} LIMIT 0").description]
        for t, r in relations.items()
    }
    for name, select in joined_views(relations, columns):
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


def _time_travel(con: duckdb.DuckDBPyConnection, tables: DeltaRsTables, statement: str) -> str:
    """`statement` with each `<table> VERSION|TIMESTAMP AS OF <literal>` replaced by that
    table's name in a schema holding that version (so `t.column` references still bind)."""
    tokens = tokenize(statement)
    sig = significant(tokens)
    texts = [t.text for t in tokens]
    for k in range(1, len(sig) - 2):
        keyword, as_, of = (tokens[i] for i in sig[k : k + 3])
        travels = keyword.is_("VERSION") or keyword.is_("TIMESTAMP")
        if not (travels and as_.is_("AS") and of.is_("OF")):
            continue
        dotted = k >= 3 and tokens[sig[k - 2]].text == "."
        parts = [tokens[sig[k - 3]], tokens[sig[k - 1]]] if dotted else [tokens[sig[k - 1]]]
        table = table_named(parts)
        if table is None:
            written = ".".join(p.text for p in parts)
            raise SqlError(
                f"{written} {keyword.text} AS OF: no such table; tables: {known_names()}"
            )
        version = version_as_of(tables, table, [tokens[i] for i in sig[k : k + 4]])
        start, end = sig[k - 3 if dotted else k - 1], sig[k + 3]
        texts[start : end + 1] = [""] * (end - start + 1)
        texts[start] = f"{_version_schema(con, tables, table, version)}.{parts[-1].text}"
    return "".join(texts)


def execute(tables: DeltaRsTables, statement: str) -> Result:
    """Run one statement: a DuckDB query (time travel allowed), or one of DESCRIBE HISTORY,
    OPTIMIZE and RESTORE, done by delta-rs."""
    done = run_command(tables, statement)
    if done is not None:
        return done
    con = connect(tables)
    return run(con, _time_travel(con, tables, statement))

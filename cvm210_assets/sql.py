"""SQL over the lake with DuckDB, under the table names of the original design.

`cvm_p210.gold_cvm210_analytics` and friends are views over the Delta tables' current files
(read through delta-rs' file list and Arrow), so a query sees exactly the committed version.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from collections.abc import Sequence
from typing import Any

import duckdb

from cvm210_assets.lake.tables import DeltaRsTables

SCHEMA = "cvm_p210"
# SQL name -> Delta table under the lake root. Each table is also visible under its own name.
SQL_NAMES = {
    "bronze_inf_diario": "bronze",
    "silver_inf_diario": "silver",
    "silver_rejects": "silver_rejects",
    "gold_cvm210_analytics": "gold_kpis",
}


def connect(tables: DeltaRsTables) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per Delta table that exists."""
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {SCHEMA}")
    for sql_name, table in SQL_NAMES.items():
        dataset = tables.dataset(table)
        if dataset is None:
            continue
        con.register(f"_{table}", dataset)
        con.execute(f"CREATE VIEW {SCHEMA}.{sql_name} AS SELECT * FROM _{table}")
        if sql_name != table:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}")
    return con


def run(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = con.execute(query)
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall()


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

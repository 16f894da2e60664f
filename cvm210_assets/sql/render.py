"""A result as `cvm210 sql` prints it: an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from collections.abc import Sequence
from typing import Any


def cell_text(value: Any) -> str:
    """A value as the output shows it: NULL for none, ISO 8601 for dates and times."""
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
        writer.writerows([["" if v is None else cell_text(v) for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        records = [
            {
                c: (cell_text(v) if isinstance(v, (decimal.Decimal, dt.date)) else v)
                for c, v in zip(columns, row, strict=True)
            }
            for row in rows
        ]
        return json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    cells = [[cell_text(v) for v in row] for row in rows]
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

"""`cvm210 sql --chart`: a result's x columns and numeric series, drawn as a PNG."""

from __future__ import annotations

import datetime as dt
import decimal
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cvm210_assets.sql import SqlError
from cvm210_assets.sql.render import cell_text


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
        return f"{value:02d}" if isinstance(value, int) else cell_text(value)

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

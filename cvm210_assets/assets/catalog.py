"""What gold's catalog entry shows besides its table: the market's net flow over 12 months.

The chart is a Vega-Lite spec (Dagster's UI shows JSON metadata as is; paste it into any
Vega-Lite viewer, e.g. vega.github.io/editor, to draw it), built by a pure function from the
monthly totals gold_kpis recorded for the months of the last 12 that it holds.
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.partitions import Month

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def recorded_net_flow(
    state: StateStore, table: str, month: Month, months: int
) -> list[tuple[str, Decimal]]:
    """(YYYY-MM, Σ fluxo_liquido) of the `months` ending in `month` that `table` holds, in time
    order, from its state records: no table read on every materialization."""
    window = [month.shift(-k) for k in range(months - 1, -1, -1)]
    records = {m: state.get(table, m) for m in window}
    return [
        (m.key, Decimal(r["net_flow_total"]))
        for m, r in records.items()
        if r is not None and "net_flow_total" in r
    ]


def net_flow_chart(points: Sequence[tuple[str, Decimal]]) -> dict[str, Any]:
    """A Vega-Lite bar chart of the market's net flow by month: outflows red, inflows blue.

    `fluxo_liquido` is a number for plotting; `fluxo_liquido_brl` keeps the exact DECIMAL."""
    values = [
        {"mes": key, "fluxo_liquido": float(flow), "fluxo_liquido_brl": str(flow)}
        for key, flow in points
    ]
    first, last = (points[0][0], points[-1][0]) if points else ("", "")
    return {
        "$schema": VEGA_LITE_SCHEMA,
        "description": "Net flow (captação − resgates) of every fund in gold_kpis, by month",
        "title": f"Fluxo líquido do mercado, R$ ({first} a {last})" if points else "Sem dados",
        "width": 480,
        "height": 240,
        "data": {"values": values},
        "mark": "bar",
        "encoding": {
            "x": {"field": "mes", "type": "ordinal", "title": "mês"},
            "y": {"field": "fluxo_liquido", "type": "quantitative", "title": "R$"},
            "color": {
                "condition": {"test": "datum.fluxo_liquido < 0", "value": "#c0392b"},
                "value": "#2e86c1",
            },
            "tooltip": [
                {"field": "mes", "type": "ordinal"},
                {"field": "fluxo_liquido_brl", "type": "nominal", "title": "fluxo líquido (R$)"},
            ],
        },
    }

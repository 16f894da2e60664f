"""What gold's catalog entry shows besides its table: the market's net flow over 12 months.

The chart is markdown, which Dagster's UI renders (it draws no chart specs: JSON metadata is
shown as text): a sparkline and a table with a text bar per month, built by a pure function from
the monthly totals gold_kpis recorded for the months of the last 12 that it holds.
"""

from collections.abc import Sequence
from decimal import Decimal

from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.partitions import Month

SPARK = "▁▂▃▄▅▆▇█"
BAR = "█"
BAR_WIDTH = 12  # blocks for the largest month


def recorded_net_flow(
    state: StateStore, table: str, month: Month, months: int
) -> list[tuple[str, Decimal]]:
    """(YYYY-MM, Σ fluxo_liquido) of the `months` ending in `month` that `table` holds, in time
    order, from its state records: no table read on every materialization."""
    window = month.window(months)
    records = {m: state.get(table, m) for m in window}
    return [
        (m.key, Decimal(r["net_flow_total"]))
        for m, r in records.items()
        if r is not None and "net_flow_total" in r
    ]


def money(value: Decimal) -> str:
    """R$ with thousands separators and cents: -1,234,567.89."""
    return f"{value:,.2f}"


def percent(ratio: float | None) -> str | None:
    """A ratio as a percentage with two decimals (-0.123456 -> "-12.35 %"); NULL stays NULL."""
    return None if ratio is None else f"{ratio * 100:.2f} %"


def net_flow_markdown(points: Sequence[tuple[str, Decimal]]) -> str:
    """The market's net flow by month as markdown Dagster's UI draws: a title with a sparkline,
    then a row per month with its exact value and a bar, outflows growing left of the centre
    and inflows right of it, scaled to the largest month."""
    if not points:
        return "**Fluxo líquido do mercado, R$**: sem meses no lago ainda."
    flows = [flow for _, flow in points]
    low, high = min(flows), max(flows)
    spark = "".join(
        SPARK[0 if high == low else round((f - low) / (high - low) * (len(SPARK) - 1))]
        for f in flows
    )
    largest = max(abs(f) for f in flows) or Decimal(1)
    lines = [
        f"**Fluxo líquido do mercado, R$ ({points[0][0]} a {points[-1][0]})** {spark}",
        "",
        "| mês | fluxo líquido (R$) | saídas | entradas |",
        "|---|---:|---:|:---|",
    ]
    for key, flow in points:
        size = max(1, round(abs(flow) / largest * BAR_WIDTH)) if flow else 0
        bar = BAR * size
        lines.append(
            f"| {key} | {money(flow)} | {bar if flow < 0 else ''} | {bar if flow > 0 else ''} |"
        )
    return "\n".join(lines)

"""Gold's analytic definitions that Spark-free readers share with the Spark transforms.

The report and `cvm210 sql` import no Spark, yet they judge and name gold's rows as the
transforms do: the peer groups and their minimum size (docs/peers.md), the reconciliation's
tolerance (docs/analytics.md) and the codes of the events that are not outflows, with the
registry's event's window (docs/events.md).
"""

from decimal import Decimal

# Registry columns a fund-month is ranked within: gold_pares has pares_<g>, posicao_<g> and
# percentil_<g> for each.
PEER_GROUPS = ("classe", "gestor")
# Below this many funds a group has no percentiles: a lone fund would be its class's worst.
PARES_MINIMO = 10

# A fund-month's flows do not reconcile when |residuo_conciliacao| exceeds the larger of these:
# far above the rounding of quotas and cents, below what misleads a reading.
TOLERANCIA_PCT_PL = Decimal("0.01")
TOLERANCIA_MINIMA = Decimal("1.00")

# gold_kpis.evento: money that moved between keys, not investors' flows.
TRANSFERENCIA = "transferencia"
SUCESSAO = "sucessao"
# ... and, from fund_registry where it is read (never in gold_kpis itself): the key's last
# month before the registry cancelled it.
ENCERRAMENTO = "encerramento"
# A key's month is its encerramento when the registry's cancellation falls in it or in the next
# MESES_ENCERRAMENTO months: a liquidated fund is cancelled weeks after its last report, rarely
# more than a season later; a cancellation years later says nothing about that month's flows.
MESES_ENCERRAMENTO = 3

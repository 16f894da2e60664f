"""Fund events that are not outflows: money that leaves one key for another (docs/events.md).

A merger, a CVM 175 adaptation or a transfer between classes shows in the daily data as a huge
redemption (or a key that stops reporting) in one key and an inflow (or a key that starts) in
another. These rules find the pairs the month's own daily rows support; each side's fund-month
is marked with the event and its counterpart, so the alerts and the breakdowns' organic flow can
leave it out. Each month is judged on its own rows: the result does not depend on which months
are computed together.
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cvm210_assets.gold_rules import ENCERRAMENTO, MESES_ENCERRAMENTO, SUCESSAO, TRANSFERENCIA
from cvm210_assets.lake.schemas import MONEY, month_index

# Gold's fingerprint holds this: bump it when a rule or a tolerance changes, and gold's months
# (and what reads them) are recomputed, not bronze's or silver's.
REGRAS_EVENTOS = "1"
# The registry's rule (`registry_events`) is applied where fund_registry is read, never in
# gold_kpis: the breakdowns' and the alerts' fingerprints hold this; bump it when it changes.
REGRAS_REGISTRO = "1"


# A day's redemption is a transfer candidate when it takes at least half the key's net assets
# before it (vl_patrim_liq + resg_dia: the day's PL is reported after the redemption). Ordinary
# redemptions, even large ones, rarely take half a fund in a day; a transfer takes all of it.
LIMIAR_SAIDA = Decimal("0.5")
# ... and at least R$ 100 thousand: below that, another key's inflow of the same amount on the
# same day is too likely to be a coincidence.
VALOR_MINIMO = Decimal("100000")
# The counterpart's inflow matches the redemption within 0.1 %: the same money, booked by two
# keys of the same administrator, differs by rounding and fees, not by a return.
TOLERANCIA_VALOR = Decimal("0.001")
# A successor's first PL and quota match its predecessor's last within 0.5 %: the successor may
# start on the next business day, one day's return later (a day's return above 0.5 % is rare
# outside equity funds, whose successions the rule then misses rather than invents).
TOLERANCIA_SUCESSAO = Decimal("0.005")

_KEY = ("cnpj_fundo", "id_subclasse")
_MONTH = ("ano", "mes")


def _close(value: Column, reference: Column, tolerance: Decimal) -> Column:
    """|value − reference| ≤ tolerance × |reference|, in exact decimals."""
    return F.abs(value - reference) <= F.abs(reference) * F.lit(tolerance)


def _other_key(a: str, b: str) -> Column:
    """The two sides are different keys (id_subclasse NULL-safe)."""
    return ~(
        (F.col(f"{a}.cnpj_fundo") == F.col(f"{b}.cnpj_fundo"))
        & F.col(f"{a}.id_subclasse").eqNullSafe(F.col(f"{b}.id_subclasse"))
    )


def _best(pairs: DataFrame) -> DataFrame:
    """For each outgoing key and day, the counterpart whose amount is closest. When two or more
    are equally close the outgoing side is still an event (the money went to another key), but
    the data cannot tell which: its counterpart is NULL and no incoming side is marked."""
    side = Window.partitionBy("o_cnpj", "o_sub", "o_dia")
    closest = pairs.withColumn("_min", F.min("diferenca").over(side)).where(
        F.col("diferenca") == F.col("_min")
    )
    unique = F.count(F.lit(1)).over(side) == 1
    return (
        closest.withColumn("i_cnpj", F.when(unique, F.col("i_cnpj")))
        .withColumn("i_sub", F.when(unique, F.col("i_sub")))
        .dropDuplicates(["o_cnpj", "o_sub", "o_dia", "i_cnpj", "i_sub"])
    )


def _sides(pairs: DataFrame, evento: str) -> DataFrame:
    """Both sides of each pair as fund-month marks, each naming the other (the outgoing side
    alone when its counterpart is unknown). One pass over the pairs: a union of the two sides
    would plan (and run) everything that found the pairs twice."""
    columns = ("cnpj_fundo", "id_subclasse", "contraparte_cnpj", "contraparte_id_subclasse")

    def side(key: str, other: str) -> Column:
        names = (f"{key}_cnpj", f"{key}_sub", f"{other}_cnpj", f"{other}_sub")
        return F.struct(*(F.col(n).alias(c) for n, c in zip(names, columns, strict=True)))

    both = F.array(side("o", "i"), F.when(F.col("i_cnpj").isNotNull(), side("i", "o")))
    return (
        pairs.select(F.explode(both).alias("_side"), "ano", "mes", "valor")
        .where(F.col("_side").isNotNull())
        .select(*(F.col(f"_side.{c}").alias(c) for c in columns), "ano", "mes", "valor")
        .withColumn("evento", F.lit(evento))
    )


def _pair(dia: Column, valor: Column, recebido: Column) -> list[Column]:
    """A matched pair of keys `o` (outgoing) and `i` (incoming) as `_best` and `_sides` read it:
    the day, the amount that left and how far the amount received is from it."""
    return [
        F.col("o.cnpj_fundo").alias("o_cnpj"),
        F.col("o.id_subclasse").alias("o_sub"),
        dia.alias("o_dia"),
        F.col("i.cnpj_fundo").alias("i_cnpj"),
        F.col("i.id_subclasse").alias("i_sub"),
        F.col("o.ano").alias("ano"),
        F.col("o.mes").alias("mes"),
        valor.alias("valor"),
        F.abs(recebido - valor).alias("diferenca"),
    ]


def _transfers(rows: DataFrame) -> DataFrame:
    """`transferencia`: a redemption of most of a key's PL matched, the same day, by another
    key's inflow of the same amount."""
    zero = F.lit(0).cast(MONEY)
    resgate = F.coalesce(F.col("resg_dia"), zero)
    before = F.col("vl_patrim_liq") + resgate
    outgoing = rows.where(
        (resgate >= F.lit(VALOR_MINIMO)) & (resgate >= before * F.lit(LIMIAR_SAIDA))
    ).select(*_KEY, "dt_comptc", *_MONTH, resgate.alias("valor"))
    incoming = rows.where(F.col("captc_dia") >= F.lit(VALOR_MINIMO)).select(
        *_KEY, "dt_comptc", "captc_dia"
    )
    pairs = (
        F.broadcast(outgoing.alias("o"))
        .join(
            incoming.alias("i"),
            (F.col("o.dt_comptc") == F.col("i.dt_comptc"))
            & _close(F.col("i.captc_dia"), F.col("o.valor"), TOLERANCIA_VALOR)
            & _other_key("o", "i"),
        )
        .select(*_pair(F.col("o.dt_comptc"), F.col("o.valor"), F.col("i.captc_dia")))
    )
    return _sides(_best(pairs), TRANSFERENCIA)


def _successions(rows: DataFrame, fund_months: DataFrame) -> DataFrame:
    """`sucessao`: a key that stops reporting before the month's last report date, and another
    that starts after the month's first, on the same day or the market's next report date, with
    the same PL and quota. Each key's first and last report of the month are `fund_months`'
    (gold.fund_months): the KPIs' own, not aggregated from every row again."""
    days = rows.select(*_MONTH, "dt_comptc").distinct()
    in_month = Window.partitionBy(*_MONTH)
    calendar = days.select(
        *_MONTH,
        F.col("dt_comptc").alias("dia"),
        F.lead("dt_comptc").over(in_month.orderBy("dt_comptc")).alias("proximo_dia"),
        F.min("dt_comptc").over(in_month).alias("primeiro_dia"),
        F.max("dt_comptc").over(in_month).alias("ultimo_dia"),
    )
    spans = fund_months.select(
        *_KEY, *_MONTH, F.col("_first").alias("ini"), F.col("_last").alias("fim")
    )
    # Each key's last (first) report date joined to the month's calendar by equality: the
    # stops (starts) are the few keys whose date is not the month's last (first).
    last = spans.withColumn("dia", F.col("fim.dt_comptc"))
    # A stop's successor starts on its last day or the next: one row for each, so the pairs
    # are an equi-join on the day and not every stop against every start of the month.
    stops = (
        last.join(F.broadcast(calendar), [*_MONTH, "dia"])
        .where(F.col("dia") < F.col("ultimo_dia"))
        .withColumn("inicio", F.explode(F.array("dia", "proximo_dia")))
        .alias("o")
    )
    first = spans.withColumn("dia", F.col("ini.dt_comptc"))
    starts = (
        first.join(F.broadcast(calendar), [*_MONTH, "dia"])
        .where(F.col("dia") > F.col("primeiro_dia"))
        .alias("i")
    )
    pairs = stops.join(
        starts,
        (F.col("o.ano") == F.col("i.ano"))
        & (F.col("o.mes") == F.col("i.mes"))
        & (F.col("o.inicio") == F.col("i.dia"))
        & _close(F.col("i.ini.vl_patrim_liq"), F.col("o.fim.vl_patrim_liq"), TOLERANCIA_SUCESSAO)
        & _close(F.col("i.ini.vl_quota"), F.col("o.fim.vl_quota"), TOLERANCIA_SUCESSAO)
        & _other_key("o", "i"),
    ).select(*_pair(F.col("o.dia"), F.col("o.fim.vl_patrim_liq"), F.col("i.ini.vl_patrim_liq")))
    return _sides(_best(pairs), SUCESSAO)


EVENT_COLUMNS = ("evento", "contraparte_cnpj", "contraparte_id_subclasse")


def events(silver: DataFrame, fund_months: DataFrame) -> DataFrame:
    """The fund-months that are events: (cnpj_fundo, id_subclasse, ano, mes, evento,
    contraparte_cnpj, contraparte_id_subclasse), one row each. A key in several events of the
    month keeps the largest (by amount moved; ties by code and counterpart, deterministically).
    `fund_months` is gold.fund_months(silver)."""
    rows = silver.select(
        *_KEY, "dt_comptc", *_MONTH, "vl_quota", "vl_patrim_liq", "captc_dia", "resg_dia"
    )
    marks = _transfers(rows).unionByName(_successions(rows, fund_months))
    largest = F.max(F.struct("valor", *EVENT_COLUMNS)).alias("_e")
    return (
        marks.groupBy(*_KEY, *_MONTH)
        .agg(largest)
        .select(*_KEY, *_MONTH, *(F.col(f"_e.{c}").alias(c) for c in EVENT_COLUMNS))
    )


def with_events(monthly: DataFrame, silver: DataFrame) -> DataFrame:
    """`monthly` (gold.fund_months(silver), a row per key and month) with `EVENT_COLUMNS` of
    `events(silver, monthly)`, NULL for a fund-month that is no event; joined NULL-safe, a
    class's id_subclasse is NULL."""
    marks = events(silver, monthly).toDF(*(f"_ev_{c}" for c in (*_KEY, *_MONTH)), *EVENT_COLUMNS)
    on = [F.col(c).eqNullSafe(F.col(f"_ev_{c}")) for c in (*_KEY, *_MONTH)]
    joined = monthly.join(marks, on, "left")
    return joined.drop(*(f"_ev_{c}" for c in (*_KEY, *_MONTH)))


def registry_events(gold: DataFrame, registry: DataFrame) -> DataFrame:
    """`gold` (rows of consecutive months) with `evento` = `encerramento` where the registry
    says the key was cancelled in that month or the MESES_ENCERRAMENTO after it and the key
    reports in no month of `gold` from the next up to the cancellation's: its last month. The
    daily rules win (a month with an evento keeps it, and its counterpart); encerramento names
    none. The key's cancellation is its subclass's `data_cancelamento`, else its class's (a
    cancelled class ends its subclasses); a registry written before the column has none.

    `gold` must hold the MESES_ENCERRAMENTO months after each month to be judged that the lake
    has: a month whose next months are missing from `gold` is judged as the key's last."""
    if "data_cancelamento" not in registry.columns:
        return gold
    cancelled = registry.where(F.col("data_cancelamento").isNotNull())
    sub = cancelled.where(F.col("id_subclasse").isNotNull()).select(
        F.col("cnpj_fundo").alias("_s_cnpj"),
        F.col("id_subclasse").alias("_s_sub"),
        F.col("data_cancelamento").alias("_s_data"),
    )
    cls = cancelled.where(F.col("id_subclasse").isNull()).select(
        F.col("cnpj_fundo").alias("_c_cnpj"), F.col("data_cancelamento").alias("_c_data")
    )
    key = Window.partitionBy(*_KEY).orderBy(*_MONTH)
    month = month_index(F.col("ano"), F.col("mes"))
    data = F.coalesce(F.col("_s_data"), F.col("_c_data"))
    cancelled_in = month_index(F.year(data), F.month(data))
    following = F.lead(month).over(key)
    last = (
        F.col("evento").isNull()
        & cancelled_in.between(month, month + MESES_ENCERRAMENTO)
        & (following.isNull() | (following > cancelled_in))
    )
    joined = gold.join(
        F.broadcast(sub),
        (F.col("cnpj_fundo") == F.col("_s_cnpj")) & (F.col("id_subclasse") == F.col("_s_sub")),
        "left",
    ).join(F.broadcast(cls), F.col("cnpj_fundo") == F.col("_c_cnpj"), "left")
    marked = joined.withColumn(
        "evento", F.when(last, F.lit(ENCERRAMENTO)).otherwise(F.col("evento"))
    )
    return marked.select(*gold.columns)

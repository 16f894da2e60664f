"""The per-month template every Spark asset runs through, for one month or a range of them.

A step gets one month, or a range (a backfill run as one run, sharing one Spark session). The
template owns what every asset must do the same way:

1. hold each month's lock (a concurrent run of the month fails cleanly, nothing written);
2. plan each month: the upstream record it needs, the fingerprint of its inputs, and whether
   that input was already processed (then skip it and repeat the recorded check verdicts);
3. batch the months left: months the asset says may share Spark jobs (one layout, say), up to
   `Lake.batch_rows` input rows a batch, so a range is read, judged and written as a range;
4. commit a batch: the asset computes and judges it (`judge`), writes the months whose
   blocking checks passed (`Judged.write`: one commit per table for the batch, the asset's
   own tables in its own order), then the template writes each month's state record, last:
   a month without its record is redone by the next run, whatever was committed before;
5. retry a failed batch one month at a time, so a bad month fails alone and the others commit.

The asset supplies the rest: its upstream, checks, fingerprint, batching key and judge/write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dagster import AssetExecutionContext
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import SparkSession

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.common import (
    SKIPPED,
    Check,
    MonthResult,
    Outcome,
    blocking_failure,
    fingerprint,
    is_current,
    months_of,
    report_months,
    require,
    run_label,
    unchanged,
)
from cvm210_assets.lake.spark_tables import SparkDeltaTables
from cvm210_assets.partitions import Month
from cvm210_assets.resources import Lake, SparkSessionResource


@dataclass(frozen=True)
class Plan:
    """A month to compute: its upstream record, what its output will depend on (`wanted`),
    and its own last record (None the first time)."""

    month: Month
    upstream: Mapping[str, Any]
    wanted: dict[str, str]
    previous: Mapping[str, Any] | None

    @property
    def rows(self) -> int:
        """The month's input rows, as its upstream recorded them: what sizes a batch."""
        return int(self.upstream.get("rows", 0))


@dataclass(frozen=True)
class Written:
    """One month's commit: the fields of its state record and its metadata."""

    record: dict[str, Any]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Judged:
    """A batch computed and checked, not yet written: `write` commits the months it is given
    (those whose blocking checks passed) and says what it wrote for each."""

    outcomes: Mapping[Month, Sequence[Outcome]]
    write: Callable[[Sequence[Plan]], Mapping[Month, Written]]


@dataclass
class Work:
    """What a batch works with: the step's context, the lake, and Spark, started on first use
    (a run of unchanged months starts none)."""

    context: AssetExecutionContext
    lake: Lake
    pyspark: LazyPySparkResource
    _tables: SparkDeltaTables | None = field(default=None, init=False)

    @property
    def spark(self) -> SparkSession:
        return self.pyspark.spark_session

    def expect_rows(self, rows: int) -> None:
        """Size the run's Spark, if it is local and not started yet, for this many rows."""
        if isinstance(self.pyspark, SparkSessionResource):
            self.pyspark.expect_rows(rows)

    @property
    def tables(self) -> SparkDeltaTables:
        if self._tables is None:
            self._tables = self.lake.spark_tables(self.spark)
        return self._tables


class MonthlyAsset(ABC):
    """One monthly Delta asset: what the template needs to know of it."""

    name: ClassVar[str]
    upstream: ClassVar[str]
    checks: ClassVar[tuple[Check, ...]] = ()

    def wanted(self, lake: Lake, month: Month, upstream: Mapping[str, Any]) -> dict[str, str]:
        """What the month's output depends on; the month is skipped while it is unchanged."""
        return fingerprint(upstream["source_sha256"])

    def batch_key(self, plan: Plan) -> str | None:
        """Months with the same key may be computed together; None: the month goes alone."""
        return None

    def unchanged_metadata(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        """What an unchanged month shows besides its row count."""
        return {}

    @abstractmethod
    def judge(self, work: Work, plans: Sequence[Plan]) -> AbstractContextManager[Judged]:
        """Compute the batch and its check outcomes; the context frees what it cached."""


def commit_metadata(plans: Sequence[Plan]) -> dict[str, str]:
    """What a batch's commit records in Delta's history (userMetadata): the month and its input
    for one month; the months for several (each month's input is in its state record)."""
    if len(plans) == 1:
        return {"cvm210.month": plans[0].month.key, **plans[0].wanted}
    return {
        "cvm210.months": ", ".join(p.month.key for p in plans),
        "versao_pipeline": PIPELINE_VERSION,
    }


def batches(asset: MonthlyAsset, plans: Sequence[Plan], max_rows: int) -> list[list[Plan]]:
    """The plans grouped by the asset's batch key, in month order, each group cut into batches
    of at most `max_rows` input rows (a month larger than that is a batch of its own)."""
    groups: dict[str, list[list[Plan]]] = {}
    alone: list[list[Plan]] = []
    for plan in sorted(plans, key=lambda p: p.month):
        key = asset.batch_key(plan)
        if key is None:
            alone.append([plan])
            continue
        current = groups.setdefault(key, [[]])
        if current[-1] and sum(p.rows for p in current[-1]) + plan.rows > max_rows:
            current.append([])
        current[-1].append(plan)
    return sorted(
        [batch for group in groups.values() for batch in group] + alone,
        key=lambda batch: batch[0].month,
    )


def commit(work: Work, asset: MonthlyAsset, plans: Sequence[Plan]) -> list[MonthResult]:
    """Compute, judge and write one batch; then each written month's state record."""
    with asset.judge(work, plans) as judged:
        passed = [p for p in plans if not blocking_failure(judged.outcomes[p.month])]
        written = judged.write(passed) if passed else {}
    state = work.lake.state
    results = []
    for plan in plans:
        outcomes = list(judged.outcomes[plan.month])
        if plan not in passed:
            results.append(MonthResult(plan.month, {}, outcomes))
            continue
        done = written[plan.month]
        checks = [o.record() for o in outcomes]
        state.put(asset.name, plan.month, {**plan.wanted, **done.record, "checks": checks})
        results.append(
            MonthResult(
                plan.month,
                {**done.metadata, SKIPPED: False},
                outcomes,
                data_version=plan.wanted["source_sha256"],
            )
        )
    return results


def run_months(
    work: Work, asset: MonthlyAsset, months: Sequence[Month]
) -> tuple[dict[Month, MonthResult], dict[Month, Exception]]:
    """Every month of the step through the template: its results, and the months that failed
    with their errors (one month failing does not stop the others)."""
    context, lake = work.context, work.lake
    results: dict[Month, MonthResult] = {}
    failures: dict[Month, Exception] = {}
    with ExitStack() as locks:
        plans: list[Plan] = []
        for month in months:
            try:
                locks.enter_context(lake.month_lock(month, owner=run_label(context)))
                upstream = require(lake.state, asset.upstream, month)
                plan = Plan(
                    month,
                    upstream,
                    asset.wanted(lake, month, upstream),
                    lake.state.get(asset.name, month),
                )
            except Exception as error:
                failures[month] = error
                continue
            if is_current(plan.previous, plan.wanted):
                results[month] = unchanged(
                    context, asset.name, month, asset.checks, plan.previous,
                    **asset.unchanged_metadata(plan.previous),
                )  # fmt: skip
            else:
                plans.append(plan)
        if plans:
            work.expect_rows(sum(p.rows for p in plans))
        for batch in batches(asset, plans, lake.batch_rows):
            _commit_batch(work, asset, batch, results, failures)
    return results, failures


def _commit_batch(
    work: Work,
    asset: MonthlyAsset,
    batch: Sequence[Plan],
    results: dict[Month, MonthResult],
    failures: dict[Month, Exception],
) -> None:
    """One batch; when it fails, each of its months again on its own, to find the bad one."""
    log = work.context.log
    if len(batch) > 1:
        log.info(
            f"{asset.name}: {batch[0].month}...{batch[-1].month}, {len(batch)} months,"
            f" {sum(p.rows for p in batch):,} input rows in one batch"
        )
    try:
        results.update((r.month, r) for r in commit(work, asset, batch))
        return
    except Exception as error:
        if len(batch) == 1:
            failures[batch[0].month] = error
            return
        log.warning(f"{asset.name}: a batch of {len(batch)} months failed ({error}); each alone")
    for plan in batch:
        _commit_batch(work, asset, [plan], results, failures)


def materialize(
    asset: MonthlyAsset, context: AssetExecutionContext, lake: Lake, pyspark: LazyPySparkResource
) -> Iterator[Any]:
    """The asset's step: its months through the template, reported the way Dagster shows them."""
    months = months_of(context)
    results, failures = run_months(Work(context, lake, pyspark), asset, months)
    if len(months) == 1 and failures:
        raise failures[months[0]]
    yield from report_months(context, asset.name, asset.checks, months, results, failures)

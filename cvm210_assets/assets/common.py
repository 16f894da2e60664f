"""What the assets share: the month of a run, skip-if-unchanged, checks, metadata helpers."""

import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    BetaWarning,
    DataVersion,
    MarkdownMetadataValue,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as Target,
)
from pyspark.sql.types import StructType

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.partitions import Month, monthly_partitions

SKIPPED = "cvm210/unchanged"

# Single-run backfills are how a range of months shares one run and one Spark session, and how
# `dagster asset materialize --partition-range` works at all; Dagster calls the parameter beta.
warnings.filterwarnings("ignore", "Parameter `backfill_policy` of function `asset`", BetaWarning)


def months_of(context: AssetExecutionContext) -> list[Month]:
    """The run's months: one, or a range when a backfill runs as one run."""
    return [Month.from_key(key) for key in context.partition_keys]


def run_label(context: AssetExecutionContext) -> str:
    """Who holds a month's lock: the run and the step, as a user finds them in the UI."""
    return f"run {context.run.run_id} ({context.op_def.name})"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def fingerprint(source_sha256: str) -> dict[str, str]:
    """What an output depends on: the source CSV and the code that transformed it."""
    return {"source_sha256": source_sha256, "versao_pipeline": PIPELINE_VERSION}


def digest(inputs: Any) -> str:
    """sha256 of JSON-able inputs, whatever their key order: a fingerprint field for inputs
    that are not one file (several tables' versions)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def is_current(previous: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> bool:
    return previous is not None and all(previous.get(k) == v for k, v in wanted.items())


def require(state: StateStore, asset: str, month: Month) -> dict[str, Any]:
    """The upstream asset's record for the month; without it there is nothing to work on."""
    record = state.get(asset, month)
    if record is None:
        raise RuntimeError(
            f"{asset} has no record for {month}: materialize {asset} for {month} first"
            " (or the whole chain from raw_zip)."
        )
    return record


@dataclass(frozen=True)
class Check:
    """A check evaluated before the commit. Blocking checks stop the commit and downstream."""

    name: str
    description: str
    blocking: bool = True
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR

    def spec(self, asset: str) -> AssetCheckSpec:
        # Partitioned checks are a Dagster preview; we want them anyway: without them a check
        # shows one status per asset, and a failed 2019-07 would hide behind a passed 2025-01.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Specifying a partitions_def on an AssetCheckSpec")
            return AssetCheckSpec(
                self.name,
                asset=asset,
                description=self.description,
                blocking=self.blocking,
                partitions_def=monthly_partitions,
            )


# How a state record holds a check's markdown metadata (a table the UI renders).
MARKDOWN = "markdown"


@dataclass(frozen=True)
class Outcome:
    check: Check
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    def result(self, asset: str, note: str | None = None) -> AssetCheckResult:
        metadata = dict(self.metadata)
        if note:
            metadata["note"] = note
        return AssetCheckResult(
            asset_key=asset,
            check_name=self.check.name,
            passed=self.passed,
            severity=self.check.severity,
            metadata=metadata,
        )

    def evaluation(
        self, asset: str, month: Month, note: str | None, target: Target | None
    ) -> AssetCheckEvaluation:
        """The outcome recorded against the month's partition, within a range run, and against
        the materialization it judged (`target`): Dagster counts a partition's verdict only when
        it targets the partition's latest materialization."""
        metadata = {**self.metadata, **({"note": note} if note else {})}
        return AssetCheckEvaluation(
            asset_key=AssetKey(asset),
            check_name=self.check.name,
            passed=self.passed,
            severity=self.check.severity,
            metadata=metadata,
            target_materialization_data=target,
            blocking=self.check.blocking,
            partition=month.key,
        )

    def record(self) -> dict[str, Any]:
        """The outcome as JSON for the month's state record; markdown as {"markdown": text}."""
        metadata = {
            k: {MARKDOWN: v.md_str} if isinstance(v, MarkdownMetadataValue) else v
            for k, v in self.metadata.items()
        }
        return {"name": self.check.name, "passed": self.passed, "metadata": metadata}


def outcomes_from_record(checks: Sequence[Check], record: Mapping[str, Any]) -> list[Outcome]:
    """Outcomes stored with a month's state: an unchanged month keeps its checks' verdicts
    (and their tables, markdown again)."""
    stored = {item["name"]: item for item in record.get("checks", [])}
    return [
        Outcome(
            check,
            stored[check.name]["passed"],
            {
                k: MetadataValue.md(v[MARKDOWN]) if isinstance(v, dict) and MARKDOWN in v else v
                for k, v in stored[check.name]["metadata"].items()
            },
        )
        for check in checks
        if check.name in stored
    ]


@dataclass(frozen=True)
class MonthResult:
    """What an asset did for one month. `blocked`: a blocking check failed, nothing committed."""

    month: Month
    metadata: dict[str, Any]
    outcomes: Sequence[Outcome] = ()
    data_version: str | None = None
    note: str | None = None

    @property
    def blocked(self) -> bool:
        return blocking_failure(self.outcomes)


def blocking_failure(outcomes: Sequence[Outcome]) -> bool:
    """A check whose failure means bad data failed: the month must not be committed."""
    return any(o.check.blocking and not o.passed for o in outcomes)


def unchanged(
    context: AssetExecutionContext,
    asset: str,
    month: Month,
    checks: Sequence[Check],
    previous: Mapping[str, Any],
    **metadata: Any,
) -> MonthResult:
    """The month's input is what the asset last processed: say so, repeat the recorded check
    verdicts, and do no work (no Spark session, no commit)."""
    context.log.info(
        f"{asset} {month}: input {previous['source_sha256'][:12]} already processed; nothing to do"
    )
    return MonthResult(
        month,
        {SKIPPED: True, "dagster/row_count": previous["rows"], **metadata},
        outcomes_from_record(checks, previous),
        data_version=previous["source_sha256"],
        note="unchanged input: verdict of the run that processed it",
    )


class BlockingCheckFailed(RuntimeError):
    """Raised after yielding the failed results: nothing was committed."""


class MonthsFailed(RuntimeError):
    """Some months of a range run failed; the others were committed and recorded."""


def materialize_months(
    context: AssetExecutionContext,
    asset: str,
    checks: Sequence[Check],
    process: Callable[[Month], MonthResult],
) -> Iterator[AssetCheckResult | AssetCheckEvaluation | MaterializeResult]:
    """Run `process` for each month of the run, one month at a time (the assets that do no
    Spark work; the Spark assets go through assets/monthly.py), and report it."""
    months = months_of(context)
    if len(months) == 1:
        results = {months[0]: process(months[0])}
        yield from report_months(context, asset, checks, months, results, {})
        return
    results: dict[Month, MonthResult] = {}
    failures: dict[Month, Exception] = {}
    for month in months:
        try:
            results[month] = process(month)
        except Exception as error:  # one bad month must not stop a twenty-year backfill
            failures[month] = error
    yield from report_months(context, asset, checks, months, results, failures)


def report_months(
    context: AssetExecutionContext,
    asset: str,
    checks: Sequence[Check],
    months: Sequence[Month],
    results: Mapping[Month, MonthResult],
    failures: Mapping[Month, Exception],
) -> Iterator[AssetCheckResult | AssetCheckEvaluation | MaterializeResult]:
    """Report what a step did for its months the way Dagster shows it.

    A check's Partitions view counts a month's verdict only when it targets the month's latest
    materialization, so each verdict follows the materialization it judged. A month written by
    this run (or unchanged: its recorded verdicts) is materialized first, its verdicts after; a
    month not written (a blocking check failed) reports against its last materialization, the
    version its tables keep, and the step fails before anything downstream runs.

    One month: as any partitioned asset. A range (a backfill run as one run): each month's
    verdicts go to its own partition and its metadata (with its data version) to its own
    materialization; a month that failed did not stop the others, and the step fails at the end
    naming each failed month (then no month is materialized: a rerun records them unchanged).
    """
    if len(months) == 1 and not failures:
        result = results[months[0]]
        verdicts = [o.result(asset, result.note) for o in result.outcomes]
        if result.blocked:
            yield from verdicts
            raise BlockingCheckFailed(_blocked_message(asset, result))
        yield MaterializeResult(
            data_version=DataVersion(result.data_version) if result.data_version else None,
            metadata=result.metadata,
        )
        yield from verdicts  # Dagster points each at the month's latest materialization: this
        return

    problems = [f"{month}: {failures[month]}" for month in months if month in failures]
    for month, error in failures.items():
        context.log.error(f"{asset} {month} failed: {error}")
    done = [results[month] for month in months if month in results]
    for result in done:
        if result.blocked:
            problems.append(_blocked_message(asset, result))
        else:
            # Dagster keeps one data version per step output: each month's is in its metadata.
            version = {"data_version": result.data_version} if result.data_version else {}
            context.add_asset_metadata(
                {**result.metadata, **version}, partition_key=result.month.key
            )
    if not problems:
        yield MaterializeResult(
            metadata={
                "range": f"{months[0]}...{months[-1]}",
                "months": len(months),
                "months_unchanged": sum(1 for r in done if r.metadata.get(SKIPPED)),
            }
        )
    for result in done:
        target = latest_materialization(context, asset, result.month)
        yield from (o.evaluation(asset, result.month, result.note, target) for o in result.outcomes)
    for check in checks:
        verdicts = {r.month.key: o.passed for r in done for o in r.outcomes if o.check == check}
        failed = [key for key, passed in verdicts.items() if not passed]
        yield AssetCheckResult(
            asset_key=asset,
            check_name=check.name,
            passed=not failed,
            severity=check.severity,
            metadata={
                "range": f"{months[0]}...{months[-1]}",
                "months_checked": len(verdicts),
                "months_failed": ", ".join(failed) or "none",
                "note": "summary of the range; each month's result is on its partition",
            },
        )
    if problems:
        raise MonthsFailed(
            f"{asset}: {len(problems)} of {len(months)} months failed (the others are committed"
            " and a rerun skips them):\n" + "\n".join(problems)
        )


def latest_materialization(
    context: AssetExecutionContext, asset: str, month: Month
) -> Target | None:
    """The month's latest materialization, as Dagster finds it for a check result of a
    one-month step: the one a verdict yielded now judges."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[month.key]), limit=1
    ).records
    if not records:
        return None
    latest = records[0]
    return Target(storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp)


def _blocked_message(asset: str, result: MonthResult) -> str:
    failures = [o for o in result.outcomes if o.check.blocking and not o.passed]
    return (
        f"{asset} {result.month} not written (its tables keep their previous version): "
        + "; ".join(f"{f.check.name} failed {f.metadata}" for f in failures)
    )


def table_schema(schema: StructType, extra: Sequence[tuple[str, str, str]] = ()) -> TableSchema:
    """Column schema for the catalog, from a Spark schema with comments."""
    columns = [
        TableColumn(
            name=f.name, type=f.dataType.simpleString(), description=f.metadata.get("comment")
        )
        for f in schema.fields
    ]
    columns += [TableColumn(name=n, type=t, description=d) for n, t, d in extra]
    return TableSchema(columns=columns)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> MetadataValue:
    """A small markdown table for the UI; values rendered as text, NULL as an empty cell."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ("" if row.get(c) is None else str(row.get(c)).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))

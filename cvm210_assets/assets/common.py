"""What the assets share: the month of a run, skip-if-unchanged, checks, metadata helpers."""

import datetime as dt
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
)
from pyspark.sql.types import StructType

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.partitions import Month, monthly_partitions

SKIPPED = "cvm210/unchanged"


def month_of(context: AssetExecutionContext) -> Month:
    return Month.from_key(context.partition_key)


def run_label(context: AssetExecutionContext) -> str:
    """Who holds a month's lock: the run and the step, as a user finds them in the UI."""
    return f"run {context.run.run_id} ({context.op_def.name})"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def fingerprint(source_sha256: str) -> dict[str, str]:
    """What an output depends on: the source CSV and the code that transformed it."""
    return {"source_sha256": source_sha256, "versao_pipeline": PIPELINE_VERSION}


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

    def record(self) -> dict[str, Any]:
        return {"name": self.check.name, "passed": self.passed, "metadata": self.metadata}


def outcomes_from_record(checks: Sequence[Check], record: Mapping[str, Any]) -> list[Outcome]:
    """Outcomes stored with a month's state: an unchanged month keeps its checks' verdicts."""
    stored = {item["name"]: item for item in record.get("checks", [])}
    return [
        Outcome(check, stored[check.name]["passed"], stored[check.name]["metadata"])
        for check in checks
        if check.name in stored
    ]


def skip_unchanged(
    context: AssetExecutionContext,
    asset: str,
    checks: Sequence[Check],
    previous: Mapping[str, Any],
    **metadata: Any,
) -> Iterator[AssetCheckResult | MaterializeResult]:
    """The month's input is what the asset last processed: say so, repeat the recorded check
    verdicts, and do no work (no Spark session, no commit)."""
    context.log.info(
        f"{asset} {context.partition_key}: input {previous['source_sha256'][:12]} already"
        " processed; nothing to do"
    )
    for outcome in outcomes_from_record(checks, previous):
        yield outcome.result(asset, note="unchanged input: verdict of the run that processed it")
    yield MaterializeResult(
        data_version=DataVersion(previous["source_sha256"]),
        metadata={SKIPPED: True, "dagster/row_count": previous["rows"], **metadata},
    )


class BlockingCheckFailed(RuntimeError):
    """Raised after yielding the failed results: nothing was committed."""


def report(asset: str, month: Month, outcomes: Sequence[Outcome]) -> Iterator[AssetCheckResult]:
    """Yield the check results; then, if a blocking check failed, stop before any commit."""
    yield from (outcome.result(asset) for outcome in outcomes)
    failures = [o for o in outcomes if o.check.blocking and not o.passed]
    if failures:
        raise BlockingCheckFailed(
            f"{asset} {month} not written (its tables keep their previous version): "
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

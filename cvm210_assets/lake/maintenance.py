"""Delta table maintenance through delta-rs: history, versions by number or time, OPTIMIZE
(compaction or Z-order), RESTORE, and the scheduled upkeep (compact fragmented months, vacuum).

`cvm210 sql` runs these for DESCRIBE HISTORY, VERSION / TIMESTAMP AS OF, OPTIMIZE and RESTORE;
a scheduled maintenance job can call the same functions. Errors name the table and what it has.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from deltalake import DeltaTable

from cvm210_assets.lake.schemas import PARTITION_COLUMNS
from cvm210_assets.lake.tables import DeltaRsTables

HISTORY_COLUMNS = (
    "version",
    "timestamp",
    "operation",
    "operationParameters",
    "readVersion",
    "isBlindAppend",
    "operationMetrics",
    "userMetadata",
    "engineInfo",
)
# commitInfo fields the engines report; anything else delta-rs records is the writer's own
# metadata (Delta Lake's Spark engine keeps that in userMetadata, a string: ours is JSON).
_COMMIT_FIELDS = {*HISTORY_COLUMNS, "clientVersion", "isolationLevel", "txnId"}


class LakeError(ValueError):
    """A request names a table, version, time or column that the lake does not have."""


def open_table(tables: DeltaRsTables, table: str) -> DeltaTable:
    uri = tables.uri(table)
    if not DeltaTable.is_deltatable(uri, storage_options=tables.options):
        raise LakeError(f"table {table} does not exist (yet) at {uri}")
    return DeltaTable(uri, storage_options=tables.options)


def _utc(milliseconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.timezone.utc)


def _json(value: Any) -> str | None:
    return None if not value else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _user_metadata(commit: dict[str, Any]) -> str | None:
    """The writer's own metadata, as JSON text, whichever engine wrote the commit."""
    extra = {k: v for k, v in commit.items() if k not in _COMMIT_FIELDS}
    written = commit.get("userMetadata")
    if isinstance(written, str):
        try:
            parsed = json.loads(written)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return written  # someone else's text: shown as it is
        extra |= parsed
    return _json(extra)


def history(tables: DeltaRsTables, table: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commits, newest first, with the columns of Delta's DESCRIBE HISTORY; the
    pipeline's own commit metadata (month, source sha256, …) is in `userMetadata`."""
    return [
        {
            "version": commit["version"],
            "timestamp": _utc(commit["timestamp"]),
            "operation": commit.get("operation"),
            "operationParameters": _json(commit.get("operationParameters")),
            "readVersion": commit.get("readVersion"),
            "isBlindAppend": commit.get("isBlindAppend"),
            "operationMetrics": _json(commit.get("operationMetrics")),
            "userMetadata": _user_metadata(commit),
            "engineInfo": commit.get("engineInfo") or commit.get("clientVersion"),
        }
        for commit in open_table(tables, table).history(limit)
    ]


def _commits(tables: DeltaRsTables, table: str) -> list[tuple[int, int]]:
    """(version, commit time in ms) of every commit still in the log, oldest first."""
    return sorted((c["version"], c["timestamp"]) for c in open_table(tables, table).history())


def _available(table: str, commits: list[tuple[int, int]]) -> str:
    def one(version: int, ms: int) -> str:
        return f"{version} (committed {_utc(ms):%Y-%m-%d %H:%M:%S} UTC)"

    if len(commits) == 1:
        return f"{table} has one version: {one(*commits[0])}"
    return f"{table} has versions {one(*commits[0])} to {one(*commits[-1])}"


def require_version(tables: DeltaRsTables, table: str, version: int) -> int:
    """`version` itself, once the log says it exists."""
    commits = _commits(tables, table)
    if version not in {v for v, _ in commits}:
        raise LakeError(f"{table} has no version {version}: {_available(table, commits)}")
    return version


def version_at(tables: DeltaRsTables, table: str, when: dt.datetime) -> int:
    """The version current at `when` (the last one committed at or before it), as Delta's
    TIMESTAMP AS OF. A naive `when` is UTC. A time in the future is refused: its answer could
    still change."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    if when > dt.datetime.now(dt.timezone.utc):
        raise LakeError(f"{table}: {when.isoformat()} is in the future")
    at = round(when.timestamp() * 1000)
    commits = _commits(tables, table)
    before = [version for version, ms in commits if ms <= at]
    if not before:
        raise LakeError(
            f"{table} did not exist yet at {when.isoformat()}: {_available(table, commits)}"
        )
    return max(before)


def _columns(delta: DeltaTable, table: str, names: Sequence[str]) -> list[str]:
    """The table's own spelling of `names`, matched without regard to case."""
    schema = {f.name.lower(): f.name for f in delta.schema().fields}
    resolved = []
    for name in names:
        column = schema.get(name.lower())
        if column is None:
            raise LakeError(
                f"{table} has no column {name}; its columns: {', '.join(schema.values())}"
            )
        if column in PARTITION_COLUMNS:
            raise LakeError(f"{table}: {column} is a partition column; Z-order by others")
        resolved.append(column)
    return resolved


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """delta-rs' metrics, with its JSON-in-a-string file statistics spread out."""
    figures: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, str) and value.startswith("{"):
            figures.update({f"{name}.{k}": v for k, v in json.loads(value).items()})
        else:
            figures[name] = value
    return figures


def optimize(tables: DeltaRsTables, table: str, zorder_by: Sequence[str] = ()) -> dict[str, Any]:
    """Rewrite the table's files, Z-ordered by `zorder_by` (else only compacted), in a commit
    that changes no data. Returns the new version and delta-rs' figures (files added and
    removed, bytes, partitions)."""
    delta = open_table(tables, table)
    columns = _columns(delta, table, zorder_by)
    metrics = delta.optimize.z_order(columns) if columns else delta.optimize.compact()
    return {"table": table, "version": delta.version(), **_figures(metrics)}


def restore(tables: DeltaRsTables, table: str, version: int) -> dict[str, Any]:
    """Make `version`'s content the table's current one, in a new commit: the versions in
    between stay in the history (and can themselves be restored)."""
    require_version(tables, table, version)
    delta = open_table(tables, table)
    metrics = delta.restore(version)
    return {"table": table, "restored": version, "version": delta.version(), **_figures(metrics)}


# --- the scheduled upkeep ---------------------------------------------------------------------

# Vacuum never removes a file that a version younger than this still reads: users can time
# travel (and roll back) at least this far.
MIN_TIME_TRAVEL = dt.timedelta(days=30)


def retention_properties(keep: dt.timedelta) -> dict[str, str]:
    """A table's own time-travel window: Delta Lake's Spark engine refuses time travel to a
    version older than deletedFileRetentionDuration, and drops log entries older than
    logRetentionDuration when it checkpoints."""
    interval = f"interval {keep.days} days"
    return {"delta.deletedFileRetentionDuration": interval, "delta.logRetentionDuration": interval}


def keep_time_travel(tables: DeltaRsTables, table: str, keep: dt.timedelta) -> bool:
    """Make the table's retention properties say what vacuum keeps; True when they changed."""
    delta = open_table(tables, table)
    wanted = retention_properties(keep)
    current = delta.metadata().configuration
    if all(current.get(name) == value for name, value in wanted.items()):
        return False
    delta.alter.set_table_properties(wanted)
    return True


def file_figures(tables: DeltaRsTables, table: str) -> dict[str, Any]:
    """Files and bytes of the table's current version, and its months held in several files
    (none for a table that is not partitioned by month)."""
    import pyarrow as pa  # imported by the upkeep alone, not with the code location
    import pyarrow.compute as pc

    actions = pa.table(open_table(tables, table).get_add_actions(flatten=True))
    partitioned = "partition.ano" in actions.column_names
    months = actions.select(["partition.ano", "partition.mes"]).to_pylist() if partitioned else []
    per_month: dict[tuple[int, int], int] = {}
    for row in months:
        key = (row["partition.ano"], row["partition.mes"])
        per_month[key] = per_month.get(key, 0) + 1
    return {
        "files": actions.num_rows,
        "bytes": pc.sum(actions["size_bytes"]).as_py() or 0,
        "fragmented_months": sorted(k for k, n in per_month.items() if n > 1),
    }


def compact_months(
    tables: DeltaRsTables, table: str, months: Sequence[tuple[int, int]], zorder_by: Sequence[str]
) -> int:
    """Rewrite each month in one Z-ordered (or compacted) file set; other months are not
    touched, so the cost follows what changed, not the table's twenty years. Returns the
    number of data files removed."""
    removed = 0
    for ano, mes in months:
        delta = open_table(tables, table)
        where = [("ano", "=", str(ano)), ("mes", "=", str(mes))]
        columns = _columns(delta, table, zorder_by)
        optimizer = delta.optimize
        if columns:
            metrics = optimizer.z_order(columns, partition_filters=where)
        else:
            metrics = optimizer.compact(partition_filters=where)
        removed += int(metrics.get("numFilesRemoved", 0))
    return removed


def vacuum(tables: DeltaRsTables, table: str, keep: dt.timedelta) -> int:
    """Delete files no version younger than `keep` reads; returns how many were deleted."""
    if keep < MIN_TIME_TRAVEL:
        raise LakeError(f"{table}: vacuum must keep at least {MIN_TIME_TRAVEL.days} days")
    hours = int(keep.total_seconds() // 3600)
    return len(open_table(tables, table).vacuum(retention_hours=hours, dry_run=False))

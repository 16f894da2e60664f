"""Restatements of older months: a sensor that asks CVM which of M-2 … M-11 changed.

CVM rewrites M and M-1 daily (the schedule runs those) and restates older months weekly or
monthly, with no notice. Every hour the sensor HEADs each month's file (the yearly archive when
the monthly file is 404) and requests a run for the months whose validators (ETag,
Last-Modified, size) changed since it last looked. It stays gentle with CVM: a bounded number of
requests per tick, the months least recently checked first, and exponential backoff when CVM
errs.

Cursor (JSON): {"months": {"YYYY-MM": {"file", "etag", "last_modified", "bytes",
"checked_at"}}, "errors": n, "retry_after": ISO time}. A month without an entry is compared with
what the lake holds (the raw zone's latest.json of its file) instead.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster import RunRequest, SensorDefinition, SensorEvaluationContext, SensorResult, sensor

from cvm210_assets.jobs import cvm_inf_diario_job
from cvm210_assets.lake.raw_zone import lake_version
from cvm210_assets.partitions import Month
from cvm210_assets.resources import CvmSource, Lake
from cvm210_assets.source.probe import VERSION_FIELDS, ProbeError, Version, same_version

INTERVAL_SECONDS = 3600
# A HEAD has no body to wait for: a short read timeout, and the tick stopping at the first
# one, keep a tick within the 60 s that Dagster gives a sensor evaluation.
PROBE_READ_TIMEOUT_SECONDS = 10.0
BACKOFF_FIRST = dt.timedelta(hours=2)
BACKOFF_MAX = dt.timedelta(hours=24)


def watched_months(now: dt.datetime) -> list[Month]:
    """M-2 … M-11, newest first: the months CVM restates without rewriting them daily."""
    current = Month.of(now)
    return [current.shift(-back) for back in range(2, 12)]


def probe_order(months: Sequence[Month], seen: Mapping[str, Mapping[str, Any]]) -> list[Month]:
    """Months never seen first, then the least recently checked: a small budget still rotates."""
    return sorted(
        months,
        key=lambda m: (m.key in seen, seen[m.key]["checked_at"] if m.key in seen else ""),
    )


def backoff(errors: int) -> dt.timedelta:
    """How long to leave CVM alone after `errors` failed ticks in a row: doubling, capped."""
    return min(BACKOFF_FIRST * 2 ** (errors - 1), BACKOFF_MAX)


def changed_months(
    found: Mapping[Month, Version],
    seen: Mapping[str, Mapping[str, Any]],
    in_lake: Callable[[str], Version | None],
) -> list[Month]:
    """Published months whose version differs from the one last seen; for a month the cursor
    does not know yet, from the one the lake holds (a month captured by a run is not redone)."""
    changed = []
    for month, current in found.items():
        if current["file"] is None:
            continue
        previous = seen.get(month.key)
        if previous is None:
            previous = in_lake(current["file"])
        if not same_version(previous, current):
            changed.append(month)
    return changed


def run_key(month: Month, seen: Version) -> str:
    """The month and its version: Dagster launches one run per key, so a change runs once."""
    token = json.dumps([seen[field] for field in VERSION_FIELDS])
    return f"{month.key}:{hashlib.sha256(token.encode()).hexdigest()[:16]}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_change_sensor(
    max_requests: int, now: Callable[[], dt.datetime] = _utc_now
) -> SensorDefinition:
    """The sensor, making at most `max_requests` a tick (CVM210_SENSOR_MAX_REQUESTS); `now`
    is its clock (tests fix it to evaluate a given day)."""

    @sensor(
        name="cvm_inf_diario_changes",
        job=cvm_inf_diario_job,
        minimum_interval_seconds=INTERVAL_SECONDS,
        description="Runs the months M-2 … M-11 whose file CVM changed (HTTP HEAD, hourly).",
    )
    def cvm_inf_diario_changes(
        context: SensorEvaluationContext, cvm: CvmSource, lake: Lake
    ) -> SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        moment = now().astimezone(dt.timezone.utc)
        retry_after = cursor.get("retry_after")
        if retry_after and moment < dt.datetime.fromisoformat(retry_after):
            return SensorResult(skip_reason=f"CVM erred: leaving it alone until {retry_after}")
        seen = cursor.get("months", {})
        window = watched_months(moment)
        try:
            found = cvm.observe(probe_order(window, seen), max_requests, PROBE_READ_TIMEOUT_SECONDS)
        except ProbeError as error:
            errors = cursor.get("errors", 0) + 1
            until = (moment + backoff(errors)).isoformat(timespec="seconds")
            context.log.warning(f"{error}; failure {errors} in a row, next try {until}")
            return SensorResult(
                skip_reason=f"{error}; backing off until {until}",
                cursor=json.dumps({**cursor, "errors": errors, "retry_after": until}),
            )
        changed = changed_months(found, seen, lambda file: lake_version(lake.storage, file))
        run_requests = [
            RunRequest(partition_key=m.key, run_key=run_key(m, found[m])) for m in changed
        ]
        checked_at = moment.isoformat(timespec="seconds")
        months = {m.key: seen[m.key] for m in window if m.key in seen}  # older ones drop out
        months.update({m.key: {**v, "checked_at": checked_at} for m, v in found.items()})
        next_cursor = {"months": dict(sorted(months.items()))}
        return SensorResult(
            run_requests=run_requests,
            skip_reason=(None if run_requests else f"no change in the {len(found)} months checked"),
            cursor=json.dumps(next_cursor),
        )

    return cvm_inf_diario_changes

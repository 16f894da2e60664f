"""Is the lake keeping up with CVM? Two warnings, checked on weekdays at noon São Paulo time.

- `current_month_fresh` (on silver): the newest reporting date of the current month (or of
  the previous month, in a month's first days) is at most N business days old
  (`CVM210_FRESHNESS_BUSINESS_DAYS`, default 2: CVM publishes a business day's reports on the
  next one or two).
- `cvm_copy_not_newer` (on raw_zip): CVM's file for the current month is the version the lake
  captured; when CVM's is newer, the daily run has not caught it yet.

Business days follow B3's national calendar: weekends and Brazil's national holidays
(Carnival, Good Friday and Corpus Christi move with Easter).

Freshness is about now. Dagster runs an asset's checks with its materializations, so these two
also come along in runs of silver or raw_zip; there they judge only a run that covers the
current month. In a run of another month (a 2019-05 backfill) they yield no result: the UI
shows them skipped, not failed, and the log says why. Their own job (`cvm_freshness`, on its
weekday schedule) always judges.
"""

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from cvm210_assets.assets.ingestion import raw_zip
from cvm210_assets.assets.silver import SILVER_ASSET, silver
from cvm210_assets.lake.raw_zone import lake_version
from cvm210_assets.partitions import CVM_TIMEZONE, Month
from cvm210_assets.resources import CvmSource, Lake
from cvm210_assets.source.probe import ProbeError, same_version

# The two checks, whatever their threshold: what the freshness job selects.
CURRENT_MONTH_FRESH = AssetCheckKey(silver.key, "current_month_fresh")
CVM_COPY_NOT_NEWER = AssetCheckKey(raw_zip.key, "cvm_copy_not_newer")
FRESHNESS_CHECK_KEYS = (CURRENT_MONTH_FRESH, CVM_COPY_NOT_NEWER)
FIXED_HOLIDAYS = ((1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (12, 25))


def easter(year: int) -> dt.date:
    """Western Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l_) // 433
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def holidays(year: int) -> set[dt.date]:
    """Brazil's national holidays (B3 closes): fixed dates and those that move with Easter."""
    sunday = easter(year)
    moving = {sunday + dt.timedelta(days=n) for n in (-48, -47, -2, 60)}
    fixed = {dt.date(year, m, d) for m, d in FIXED_HOLIDAYS}
    if year >= 2024:
        fixed.add(dt.date(year, 11, 20))  # Consciência Negra, national since 2024
    return fixed | moving


def business_days_after(start: dt.date, end: dt.date) -> int:
    """Business days in (start, end]: how many reporting days have passed since `start`."""
    days, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays(day.year):
            days += 1
    return days


def freshness(latest: dt.date | None, today: dt.date, limit: int) -> tuple[bool, dict[str, Any]]:
    """The verdict and what it is based on."""
    if latest is None:
        return False, {"today": today.isoformat(), "note": "no silver rows this month or last"}
    age = business_days_after(latest, today)
    return age <= limit, {
        "latest_dt_comptc": latest.isoformat(),
        "today": today.isoformat(),
        "business_days_old": age,
        "max_business_days": limit,
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def other_months(tags: Mapping[str, str], current: Month) -> str | None:
    """The months of a partition run that does not cover `current` ("2019-05",
    "2019-01...2019-12"); None when the run should judge freshness: it covers the current
    month, or it has no partition (the freshness job, a check launched on its own)."""
    first = tags.get(PARTITION_NAME_TAG) or tags.get(ASSET_PARTITION_RANGE_START_TAG)
    last = tags.get(PARTITION_NAME_TAG) or tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not first or not last or first <= current.key <= last:  # "YYYY-MM" sort as months
        return None
    return first if first == last else f"{first}...{last}"


def _not_now(context: AssetCheckExecutionContext, name: str, current: Month) -> bool:
    """True (and a log line) when this run is of other months: the check yields nothing."""
    months = other_months(context.run.tags, current)
    if months is None:
        return False
    context.log.info(
        f"{name}: not judged in a run of {months}; freshness is about the current month"
        f" ({current.key}), judged by the job cvm_freshness and in runs of {current.key}."
    )
    return True


def build_freshness_checks(
    limit: int, now: Callable[[], dt.datetime] = _now
) -> list[AssetChecksDefinition]:
    """The two checks, silver's newest date at most `limit` business days old
    (CVM210_FRESHNESS_BUSINESS_DAYS); `now` is their clock (tests fix it)."""

    # multi_asset_check with can_subset: a check that may yield no result (see the docstring).
    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                CURRENT_MONTH_FRESH.name,
                asset=silver,
                blocking=False,
                description=f"The newest dt_comptc is at most {limit} business days old (WARN)."
                " Judged in its own job and in runs of the current month; skipped in others.",
            )
        ],
        can_subset=True,
        name="current_month_fresh",
    )
    def current_month_fresh(
        context: AssetCheckExecutionContext, lake: Lake
    ) -> Iterator[AssetCheckResult]:
        today = now().astimezone(ZoneInfo(CVM_TIMEZONE)).date()
        current = Month(today.year, today.month)
        if _not_now(context, "current_month_fresh", current):
            return
        latest = None
        for month in (current, current.shift(-1)):
            record = lake.state.get(SILVER_ASSET, month)
            if record and record.get("latest_dt_comptc"):
                latest = dt.date.fromisoformat(record["latest_dt_comptc"])
                break
        yield _warning(silver.key, "current_month_fresh", *freshness(latest, today, limit))

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                CVM_COPY_NOT_NEWER.name,
                asset=raw_zip,
                blocking=False,
                description="CVM's file for the current month is the version the lake holds"
                " (WARN). Judged in its own job and in runs of the current month; skipped in"
                " others.",
            )
        ],
        can_subset=True,
        name="cvm_copy_not_newer",
    )
    def cvm_copy_not_newer(
        context: AssetCheckExecutionContext, cvm: CvmSource, lake: Lake
    ) -> Iterator[AssetCheckResult]:
        today = now().astimezone(ZoneInfo(CVM_TIMEZONE)).date()
        month = Month(today.year, today.month)
        if _not_now(context, "cvm_copy_not_newer", month):
            return
        yield _copy_verdict(context, cvm, lake, month)

    return [current_month_fresh, cvm_copy_not_newer]


def _copy_verdict(
    context: AssetCheckExecutionContext, cvm: CvmSource, lake: Lake, month: Month
) -> AssetCheckResult:
    def result(passed: bool, metadata: dict[str, Any]) -> AssetCheckResult:
        return _warning(raw_zip.key, "cvm_copy_not_newer", passed, metadata)

    try:
        found = cvm.observe([month], 2, cvm.connect_timeout_seconds)[month]
    except ProbeError as error:
        context.log.warning(str(error))
        return result(True, {"month": month.key, "note": f"CVM did not answer: {error}"})
    if found["file"] is None:
        return result(True, {"month": month.key, "note": "CVM has not published it yet"})
    ours = lake_version(lake.storage, found["file"])
    return result(
        same_version(ours, found),
        {
            "month": month.key,
            "file": found["file"],
            "cvm_last_modified": found["last_modified"] or "",
            "cvm_etag": found["etag"] or "",
            "lake_last_modified": (ours or {}).get("last_modified") or "(none)",
            "lake_etag": (ours or {}).get("etag") or "(none)",
        },
    )


def _warning(
    asset: AssetKey, check: str, passed: bool, metadata: Mapping[str, Any]
) -> AssetCheckResult:
    """A verdict of one of the two WARN checks (a multi_asset_check's result names its check)."""
    return AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata=dict(metadata),
    )

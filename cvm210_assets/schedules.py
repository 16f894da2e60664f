"""The schedules: the daily run, the registry's, the freshness checks' and the weekly upkeep's
(jobs in jobs.py).

The daily run is aligned with CVM's publication: the current month and the previous one. CVM
rewrites the files of months M and M-1 Tuesday to Saturday around 08:00 São Paulo time, so
the schedule fires shortly after and takes both months through the whole chain to gold_kpis.
Months that did not change cost a HTTP 304 and nothing else (every asset skips unchanged input).
"""

import datetime as dt
import os
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import (
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)

from cvm210_assets.cron_text import describe
from cvm210_assets.jobs import (
    cvm_fund_registry_job,
    cvm_inf_diario_job,
    freshness_job,
    lake_maintenance,
)
from cvm210_assets.partitions import CVM_TIMEZONE, Month

# Tuesday to Saturday at 08:30, half an hour after CVM's usual publication time.
DEFAULT_CRON = "30 8 * * 2-6"


def daily_run_requests(scheduled: dt.datetime) -> list[RunRequest]:
    """One run for M-1 and one for M; the run key names the tick, so a tick runs each once."""
    current = Month.of(scheduled)
    tick = scheduled.astimezone(ZoneInfo(CVM_TIMEZONE)).isoformat()
    return [
        RunRequest(partition_key=month.key, run_key=f"{month.key}@{tick}")
        for month in (current.shift(-1), current)
    ]


def schedule_cron(env: Mapping[str, str] = os.environ) -> str:
    return env.get("CVM210_SCHEDULE_CRON") or DEFAULT_CRON


def schedule_timezone(env: Mapping[str, str] = os.environ) -> str:
    timezone = env.get("CVM210_SCHEDULE_TIMEZONE") or CVM_TIMEZONE
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"CVM210_SCHEDULE_TIMEZONE={timezone!r}: not an IANA time zone (e.g. America/Sao_Paulo)"
        ) from error
    return timezone


def build_daily_schedule(cron: str, timezone: str) -> ScheduleDefinition:
    @schedule(
        name="cvm_inf_diario_daily",
        cron_schedule=cron,
        execution_timezone=timezone,
        job=cvm_inf_diario_job,
        description=f"Months M and M-1 after CVM rewrites them: {describe(cron, timezone)}.",
    )
    def cvm_inf_diario_daily(context: ScheduleEvaluationContext) -> list[RunRequest]:
        return daily_run_requests(context.scheduled_execution_time)

    return cvm_inf_diario_daily


# CVM rewrites its fund registry every day around 08:00; gold_breakdowns of the daily run
# (08:30 on weekdays) then groups funds by today's registry.
REGISTRY_CRON = "15 8 * * *"
fund_registry_schedule = ScheduleDefinition(
    name="fund_registry_daily",
    cron_schedule=REGISTRY_CRON,
    execution_timezone=CVM_TIMEZONE,
    job=cvm_fund_registry_job,
    description=f"CVM's fund registry into fund_registry: {describe(REGISTRY_CRON, CVM_TIMEZONE)}.",
)

# Weekdays at noon São Paulo time: after CVM's morning publication has had time to land.
FRESHNESS_CRON = "0 12 * * 1-5"
freshness_schedule = ScheduleDefinition(
    name="cvm_freshness_weekdays",
    job=freshness_job,
    cron_schedule=FRESHNESS_CRON,
    execution_timezone=CVM_TIMEZONE,
    description="The two freshness checks (WARN), on silver and raw_zip:"
    f" {describe(FRESHNESS_CRON, CVM_TIMEZONE)}.",
)

# Sundays 03:00 São Paulo: no CVM publication, no daily run.
MAINTENANCE_CRON = "0 3 * * 0"


def maintenance_schedule(env: Mapping[str, str] = os.environ) -> ScheduleDefinition:
    cron = env.get("CVM210_MAINTENANCE_CRON") or MAINTENANCE_CRON
    return ScheduleDefinition(
        name="lake_maintenance_weekly",
        job=lake_maintenance,
        cron_schedule=cron,
        execution_timezone=CVM_TIMEZONE,
        description="Compaction and VACUUM of the lake's Delta tables:"
        f" {describe(cron, CVM_TIMEZONE)}.",
    )


SCHEDULES = [
    build_daily_schedule(schedule_cron(), schedule_timezone()),
    fund_registry_schedule,
    freshness_schedule,
    maintenance_schedule(),
]

"""The schedules: the daily run, the registry's, the freshness checks' and the weekly upkeep's
(jobs in jobs.py).

The daily run is aligned with CVM's publication: the current month and the previous one. CVM
rewrites the files of months M and M-1 Tuesday to Saturday around 08:00 São Paulo time, so
the schedule fires shortly after and takes both months through the whole chain to gold_kpis.
Months that did not change cost a HTTP 304 and nothing else (every asset skips unchanged input).
"""

import datetime as dt
from zoneinfo import ZoneInfo

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
from cvm210_assets.settings import AutomationSettings


def daily_run_requests(scheduled: dt.datetime) -> list[RunRequest]:
    """One run for M-1 and one for M; the run key names the tick, so a tick runs each once."""
    current = Month.of(scheduled)
    tick = scheduled.astimezone(ZoneInfo(CVM_TIMEZONE)).isoformat()
    return [
        RunRequest(partition_key=month.key, run_key=f"{month.key}@{tick}")
        for month in (current.shift(-1), current)
    ]


def build_daily_schedule(cron: str, timezone: str) -> ScheduleDefinition:
    """The daily run on `cron` in `timezone` (CVM210_SCHEDULE_CRON, CVM210_SCHEDULE_TIMEZONE);
    its months are São Paulo's whatever the time zone."""

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


def maintenance_schedule(cron: str) -> ScheduleDefinition:
    """The weekly upkeep on `cron` (CVM210_MAINTENANCE_CRON), in São Paulo time."""
    return ScheduleDefinition(
        name="lake_maintenance_weekly",
        job=lake_maintenance,
        cron_schedule=cron,
        execution_timezone=CVM_TIMEZONE,
        description="Compaction and VACUUM of the lake's Delta tables:"
        f" {describe(cron, CVM_TIMEZONE)}.",
    )


def build_schedules(automation: AutomationSettings) -> list[ScheduleDefinition]:
    """The daily run and the weekly upkeep as configured, the registry's and the freshness
    checks'."""
    daily = build_daily_schedule(automation.schedule_cron, automation.schedule_timezone)
    upkeep = maintenance_schedule(automation.maintenance_cron)
    return [daily, fund_registry_schedule, freshness_schedule, upkeep]

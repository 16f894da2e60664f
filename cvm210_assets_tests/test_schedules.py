"""The daily schedule: when it fires, which months it asks for, and the job it runs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import Definitions, RunRequest, build_schedule_context
from dagster._utils.schedules import cron_string_iterator

from cvm210_assets.cron_text import DAYS, describe
from cvm210_assets.definitions import build_definitions
from cvm210_assets.partitions import Month, monthly_partitions
from cvm210_assets.schedules import build_daily_schedule, build_schedules
from cvm210_assets.settings import AutomationSettings
from cvm210_assets_tests.conftest import settings_for

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
DAILY = build_schedules(AutomationSettings())[0]


def schedule_cron(env: dict[str, str]) -> str:
    return AutomationSettings.from_env(env).schedule_cron


def schedule_timezone(env: dict[str, str]) -> str:
    return AutomationSettings.from_env(env).schedule_timezone


def evaluate(when: dt.datetime) -> list[RunRequest]:
    requests = DAILY(build_schedule_context(scheduled_execution_time=when))
    assert isinstance(requests, list)
    return requests


def keys(requests: list[RunRequest]) -> list[str | None]:
    return [r.partition_key for r in requests]


def test_fires_tuesday_to_saturday_at_0830_in_sao_paulo() -> None:
    assert DAILY.execution_timezone == "America/Sao_Paulo"
    sunday = dt.datetime(2025, 3, 2, tzinfo=SAO_PAULO)
    ticks = cron_string_iterator(sunday.timestamp(), DAILY.cron_schedule, DAILY.execution_timezone)
    two_weeks = [next(ticks).astimezone(SAO_PAULO) for _ in range(10)]
    assert [t.strftime("%a %d") for t in two_weeks] == [
        "Tue 04", "Wed 05", "Thu 06", "Fri 07", "Sat 08",
        "Tue 11", "Wed 12", "Thu 13", "Fri 14", "Sat 15",
    ]  # fmt: skip
    assert {(t.hour, t.minute) for t in two_weeks} == {(8, 30)}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # a Tuesday mid-month
        (dt.datetime(2025, 3, 11, 8, 30, tzinfo=SAO_PAULO), ["2025-02", "2025-03"]),
        # January: the previous month is December of the year before
        (dt.datetime(2025, 1, 7, 8, 30, tzinfo=SAO_PAULO), ["2024-12", "2025-01"]),
        # Saturday the 1st, after a Friday in the month before
        (dt.datetime(2025, 2, 28, 8, 30, tzinfo=SAO_PAULO), ["2025-01", "2025-02"]),
        (dt.datetime(2025, 3, 1, 8, 30, tzinfo=SAO_PAULO), ["2025-02", "2025-03"]),
        # 02:00 UTC on the 1st is still the 31st in São Paulo: months follow CVM's calendar
        (dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.timezone.utc), ["2025-11", "2025-12"]),
    ],
)
def test_requests_exactly_the_current_and_previous_month(
    when: dt.datetime, expected: list[str]
) -> None:
    requests = evaluate(when)

    assert keys(requests) == expected
    assert all(r.partition_key in monthly_partitions.get_partition_keys() for r in requests)
    assert len({r.run_key for r in requests}) == 2


def test_run_keys_make_a_tick_idempotent_and_the_next_day_run_again() -> None:
    tuesday = dt.datetime(2025, 3, 11, 8, 30, tzinfo=SAO_PAULO)
    first = [r.run_key for r in evaluate(tuesday)]
    again = [r.run_key for r in evaluate(tuesday.astimezone(dt.timezone.utc))]
    wednesday = [r.run_key for r in evaluate(tuesday + dt.timedelta(days=1))]

    assert first == again
    assert not set(first) & set(wednesday)


def test_month_arithmetic() -> None:
    assert Month(2025, 1).shift(-1) == Month(2024, 12)
    assert Month(2025, 3).shift(-11) == Month(2024, 4)
    assert Month(2024, 12).shift(1) == Month(2025, 1)
    assert Month(2025, 6).shift(-24) == Month(2023, 6)
    assert Month.of(dt.datetime(2025, 6, 1, 2, 59, tzinfo=dt.timezone.utc)) == Month(2025, 5)
    assert Month.of(dt.datetime(2025, 6, 1, 3, 0, tzinfo=dt.timezone.utc)) == Month(2025, 6)


def test_cron_and_time_zone_come_from_the_environment() -> None:
    env = {"CVM210_SCHEDULE_CRON": "0 10 * * 1-5", "CVM210_SCHEDULE_TIMEZONE": "UTC"}
    assert (schedule_cron({}), schedule_timezone({})) == ("30 8 * * 2-6", "America/Sao_Paulo")
    assert (schedule_cron(env), schedule_timezone(env)) == ("0 10 * * 1-5", "UTC")
    other = build_daily_schedule(schedule_cron(env), schedule_timezone(env))
    assert (other.cron_schedule, other.execution_timezone) == ("0 10 * * 1-5", "UTC")
    # months are still São Paulo's: 01:00 UTC on Feb 1st is January there
    requests = other(
        build_schedule_context(
            scheduled_execution_time=dt.datetime(2025, 2, 1, 1, 0, tzinfo=dt.timezone.utc)
        )
    )
    assert keys(requests) == ["2024-12", "2025-01"]
    with pytest.raises(ValueError, match="CVM210_SCHEDULE_TIMEZONE='Mars/Olympus'"):
        schedule_timezone({"CVM210_SCHEDULE_TIMEZONE": "Mars/Olympus"})


def test_the_job_runs_its_eight_assets_by_month_and_loads_with_the_automation(
    tmp_path: Path,
) -> None:
    defs = build_definitions(settings_for(str(tmp_path / "lake"), "http://127.0.0.1:1"))
    Definitions.validate_loadable(defs)

    job = defs.resolve_job_def("cvm_inf_diario")
    assert job.partitions_def == monthly_partitions
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "raw_zip",
        "s3_csv_partition",
        "bronze",
        "silver",
        "gold_kpis",
        "gold_breakdowns",
        "outflow_alerts",
        "alert_deliveries",
    }
    assert defs.resolve_schedule_def("cvm_inf_diario_daily").job_name == "cvm_inf_diario"
    assert defs.resolve_sensor_def("cvm_inf_diario_changes").job_name == "cvm_inf_diario"


def _every_schedule() -> list:
    from cvm210_assets.definitions import defs

    return list(defs.schedules or [])


@pytest.mark.parametrize("schedule", _every_schedule(), ids=lambda s: s.name)
def test_each_schedule_says_when_it_fires_as_its_cron_does(schedule) -> None:
    """The description's time and days are those of the cron's next fortnight of ticks."""
    assert schedule.description, f"{schedule.name} has no description"
    zone = ZoneInfo(schedule.execution_timezone)
    start = dt.datetime(2025, 3, 2, tzinfo=zone)  # a Sunday
    ticks = cron_string_iterator(
        start.timestamp(), schedule.cron_schedule, schedule.execution_timezone
    )
    fortnight = [next(ticks).astimezone(zone) for _ in range(14)]
    fortnight = [t for t in fortnight if t < start + dt.timedelta(days=14)]
    times = {t.strftime("%H:%M") for t in fortnight}
    assert times == set(re.findall(r"\b\d\d:\d\d\b", schedule.description)), schedule.description
    days = {t.strftime("%A") for t in fortnight}
    named = {d for d in DAYS if d in schedule.description}
    if len(days) == 7:
        assert "every day" in schedule.description
    elif len(named) == len(days):  # a list of days
        assert named == days
    else:  # a range: its first and last day
        first, last = re.search(r"(\w+day) to (\w+day)", schedule.description).groups()
        assert DAYS.index(first) <= DAYS.index(last)
        assert days == set(DAYS[DAYS.index(first) : DAYS.index(last) + 1])
    if schedule.execution_timezone == "America/Sao_Paulo":
        assert "São Paulo time" in schedule.description


def test_cron_descriptions() -> None:
    assert describe("30 8 * * 2-6", "America/Sao_Paulo") == (
        "Tuesday to Saturday at 08:30 São Paulo time"
    )
    assert describe("0 3 * * 0", "America/Sao_Paulo") == "Sundays at 03:00 São Paulo time"
    assert describe("15 8 * * *", "UTC") == "every day at 08:15 UTC"
    assert describe("0 10 * * 1,3", "UTC") == "Monday and Wednesday at 10:00 UTC"
    assert describe("*/5 * * * *", "UTC") == "on cron `*/5 * * * *`, UTC"
    env = {"CVM210_SCHEDULE_CRON": "0 10 * * 1-5", "CVM210_SCHEDULE_TIMEZONE": "UTC"}
    other = build_daily_schedule(schedule_cron(env), schedule_timezone(env))
    assert other.description.endswith("Monday to Friday at 10:00 UTC.")

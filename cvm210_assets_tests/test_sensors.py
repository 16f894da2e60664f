"""The restatement sensor against the fake CVM, on a fixed clock: what it requests, how often
it asks CVM, and how it backs off."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorDefinition, SensorResult, build_sensor_context

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm, RequestRecord
from cvm210_assets.partitions import Month
from cvm210_assets.resources import CvmSource, Lake
from cvm210_assets.sensors import backoff, build_change_sensor
from cvm210_assets.settings import AutomationSettings
from cvm210_assets.source.capture import capture_month

T0 = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.timezone.utc)  # M = 2025-06
WINDOW = [
    "2025-04", "2025-03", "2025-02", "2025-01", "2024-12",
    "2024-11", "2024-10", "2024-09", "2024-08", "2024-07",
]  # fmt: skip
LAST_MODIFIED = dt.datetime(2025, 6, 1, 11, 0, tzinfo=dt.timezone.utc)


def monthly(key: str) -> str:
    return f"inf_diario_fi_{key.replace('-', '')}.zip"


@dataclass
class Tick:
    keys: list[str]
    run_keys: list[str]
    skip_reason: str | None
    cursor: str | None  # None: the tick left the cursor as it was
    http: list[RequestRecord]


class Harness:
    """The sensor on a clock the test moves, wired to the fake CVM and a lake folder."""

    def __init__(
        self, fake: FakeCvm, lake_dir: Path, instance: DagsterInstance, max_requests: int = 12
    ) -> None:
        self.fake = fake
        self.now = T0
        self.sensor: SensorDefinition = build_change_sensor(max_requests, now=lambda: self.now)
        self.cvm = CvmSource(base_url=fake.base_url)
        self.lake = Lake(uri=str(lake_dir))
        self.cursor: str | None = None
        self.instance = instance

    def tick(self) -> Tick:
        self.fake.reset_log()
        with build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"cvm": self.cvm, "lake": self.lake},
        ) as context:
            result = self.sensor(context)
        assert isinstance(result, SensorResult)
        if result.cursor is not None:
            self.cursor = result.cursor
        return Tick(
            keys=[r.partition_key for r in result.run_requests or []],
            run_keys=[r.run_key for r in result.run_requests or []],
            skip_reason=result.skip_reason.skip_message if result.skip_reason else None,
            cursor=result.cursor,
            http=self.fake.requests,
        )

    def state(self) -> dict:
        assert self.cursor is not None
        return json.loads(self.cursor)


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    """One for every tick: an ephemeral instance costs most of a second to create."""
    return DagsterInstance.ephemeral()


@pytest.fixture
def harness(fake_cvm: FakeCvm, tmp_path: Path, instance: DagsterInstance) -> Harness:
    return Harness(fake_cvm, tmp_path / "lake", instance)


def publish_monthly(fake: FakeCvm, keys: list[str], version: str = "v1") -> None:
    for key in keys:
        fake.put(monthly(key), f"{key} {version}".encode(), last_modified=LAST_MODIFIED)


def test_requests_every_month_new_to_it_then_nothing(harness: Harness) -> None:
    publish_monthly(harness.fake, WINDOW)

    first = harness.tick()
    assert first.keys == WINDOW
    assert len(set(first.run_keys)) == 10
    assert sorted(r.path.rsplit("/", 1)[1] for r in first.http) == sorted(map(monthly, WINDOW))
    assert {r.method for r in first.http} == {"HEAD"}
    assert set(harness.state()["months"]) == set(WINDOW)

    harness.now += dt.timedelta(hours=1)
    second = harness.tick()
    assert second.keys == []
    assert second.skip_reason == "no change in the 10 months checked"
    assert len(second.http) == 10


def test_first_sight_of_a_month_compares_with_what_the_lake_holds(
    harness: Harness, tmp_path: Path
) -> None:
    """2025-03 is in the lake as CVM has it; 2025-02 in an older version; the rest not at all."""
    fake = harness.fake
    publish_monthly(fake, [k for k in WINDOW if k not in ("2025-03", "2025-02")])
    csv = {k: generate_month(MonthSpec(2025, int(k[-2:]), "c", n_funds=3)) for k in WINDOW[1:3]}
    for key, body in csv.items():
        fake.publish_month(2025, int(key[-2:]), body, LAST_MODIFIED)
        capture_month(
            Month.from_key(key), fake.base_url, harness.cvm.fetch, harness.lake.storage, tmp_path
        )
    fake.publish_month(2025, 2, restate(csv["2025-02"], seed=1))

    tick = harness.tick()

    assert tick.keys == [k for k in WINDOW if k != "2025-03"]
    assert harness.state()["months"]["2025-03"]["file"] == "inf_diario_fi_202503"


def test_a_restated_month_is_requested_once(harness: Harness) -> None:
    publish_monthly(harness.fake, WINDOW)
    first = harness.tick()
    harness.fake.put(monthly("2024-11"), b"2024-11 restated")
    before_restated = harness.cursor

    harness.now += dt.timedelta(hours=1)
    second = harness.tick()
    assert second.keys == ["2024-11"]
    assert second.run_keys[0] != first.run_keys[WINDOW.index("2024-11")]

    harness.now += dt.timedelta(hours=1)
    assert harness.tick().keys == []

    # A tick that saw the same change again (its cursor lost) asks with the same run key:
    # Dagster launches one run per run key.
    harness.cursor = before_restated
    assert harness.tick().run_keys == second.run_keys


def test_the_window_moves_with_the_month(harness: Harness) -> None:
    publish_monthly(harness.fake, ["2025-05", *WINDOW])
    harness.tick()

    harness.now = dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.timezone.utc)  # M = 2025-07
    tick = harness.tick()

    assert tick.keys == ["2025-05"]  # new to the window, and not in the lake
    assert set(harness.state()["months"]) == {"2025-05", *WINDOW[:-1]}  # 2024-07 left it
    assert harness.fake.count("HEAD", monthly("2024-07")) == 0


def test_months_of_a_yearly_archive_share_one_probe_per_tick(harness: Harness) -> None:
    fake = harness.fake
    publish_monthly(fake, WINDOW[:4])  # 2025 monthly; 2024 only in HIST, as before 2021
    fake.put("HIST/inf_diario_fi_2024.zip", b"2024 v1", last_modified=LAST_MODIFIED)

    first = harness.tick()
    assert first.keys == WINDOW
    assert harness.fake.count("HEAD", "HIST/inf_diario_fi_2024.zip") == 1
    assert len(first.http) == 11  # ten monthly files (six 404) and the archive once
    assert harness.state()["months"]["2024-07"]["file"] == "inf_diario_fi_2024"

    harness.now += dt.timedelta(hours=1)
    assert harness.tick().keys == []

    fake.put("HIST/inf_diario_fi_2024.zip", b"2024 v2, restated")
    harness.now += dt.timedelta(hours=1)
    third = harness.tick()
    assert third.keys == WINDOW[4:]
    assert harness.fake.count("HEAD", "HIST/inf_diario_fi_2024.zip") == 1

    harness.now += dt.timedelta(hours=1)
    assert harness.tick().keys == []


@pytest.mark.parametrize("max_requests", [2, 3, 4, 5])
def test_requests_per_tick_stay_within_the_bound_and_every_month_gets_its_turn(
    fake_cvm: FakeCvm, tmp_path: Path, instance: DagsterInstance, max_requests: int
) -> None:
    harness = Harness(fake_cvm, tmp_path / "lake", instance, max_requests=max_requests)
    publish_monthly(fake_cvm, WINDOW[:4])
    fake_cvm.put("HIST/inf_diario_fi_2024.zip", b"2024 v1", last_modified=LAST_MODIFIED)

    requested: list[str] = []
    ticks = 0
    while set(requested) != set(WINDOW):
        ticks += 1
        assert ticks <= 10, f"still missing {set(WINDOW) - set(requested)}"
        tick = harness.tick()
        assert 1 <= len(tick.http) <= max_requests
        requested += tick.keys
        harness.now += dt.timedelta(hours=1)
    assert sorted(requested) == sorted(WINDOW)  # each once

    # Every month has been checked: the next ticks re-check the least recently checked first.
    checked = {k: m["checked_at"] for k, m in harness.state()["months"].items()}
    tick = harness.tick()
    assert tick.keys == []
    first = tick.http[0].path.rsplit("_", 1)[1].removesuffix(".zip")  # YYYYMM
    assert checked[f"{first[:4]}-{first[4:]}"] == min(checked.values())


def test_backs_off_when_cvm_errs_and_resumes_with_its_cursor(harness: Harness) -> None:
    fake = harness.fake
    publish_monthly(fake, WINDOW)
    harness.tick()
    months = harness.state()["months"]
    fake.put(monthly("2024-11"), b"2024-11 restated")

    fake.fail_next(monthly("2025-04"), 503)  # the first month it will probe
    harness.now = T0 + dt.timedelta(hours=1)
    failed = harness.tick()
    assert failed.keys == []
    assert "HTTP 503" in (failed.skip_reason or "")
    assert len(failed.http) == 1  # the tick stops at the first error
    assert harness.state() == {
        "months": months,
        "errors": 1,
        "retry_after": (harness.now + dt.timedelta(hours=2)).isoformat(),
    }

    harness.now = T0 + dt.timedelta(hours=2, minutes=59)
    waiting = harness.tick()
    assert (waiting.keys, waiting.http, waiting.cursor) == ([], [], None)
    assert "until" in (waiting.skip_reason or "")

    fake.fail_next(monthly("2025-04"), 500)
    harness.now = T0 + dt.timedelta(hours=3)
    assert harness.tick().keys == []
    assert harness.state()["errors"] == 2
    assert harness.state()["retry_after"] == (harness.now + dt.timedelta(hours=4)).isoformat()

    harness.now = T0 + dt.timedelta(hours=6, minutes=59)
    assert harness.tick().http == []

    harness.now = T0 + dt.timedelta(hours=7)
    resumed = harness.tick()
    assert resumed.keys == ["2024-11"]
    assert set(harness.state()) == {"months"}


def test_connection_errors_back_off_too(harness: Harness) -> None:
    harness.fake.stop()

    tick = harness.tick()

    assert tick.keys == []
    assert "ConnectionError" in (tick.skip_reason or "")
    assert harness.state()["errors"] == 1


def test_backoff_doubles_up_to_a_day() -> None:
    hours = [backoff(n) / dt.timedelta(hours=1) for n in range(1, 7)]
    assert hours == [2, 4, 8, 16, 24, 24]


def sensor_max_requests(env: dict[str, str]) -> int:
    return AutomationSettings.from_env(env).sensor_max_requests


def test_max_requests_comes_from_the_environment() -> None:
    assert sensor_max_requests({}) == 12
    assert sensor_max_requests({"CVM210_SENSOR_MAX_REQUESTS": "5"}) == 5
    for wrong in ("1", "0", "-3", "many"):
        with pytest.raises(ValueError, match=f"CVM210_SENSOR_MAX_REQUESTS='{wrong}'"):
            sensor_max_requests({"CVM210_SENSOR_MAX_REQUESTS": wrong})

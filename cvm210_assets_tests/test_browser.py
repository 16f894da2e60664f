"""Dagster's UI in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium; nothing downloaded) against `dagster-webserver` on a small lake fed by the
fake CVM. The asset graph lists every asset, a month materialized from the UI succeeds, and the
month's check verdicts show in the check's Partitions view.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets_tests.conftest import MONTHLY_CHECKS, cli_env, free_port, wait_for_http

pytestmark = pytest.mark.spark  # the run launched from the UI starts Spark in its own process

# The browser and its driver, found on PATH (Debian's chromium and chromium-driver install them
# there) or named by CVM210_CHROMIUM / CVM210_CHROMEDRIVER: never downloaded.
BROWSER = ("CVM210_CHROMIUM", ("chromium", "chromium-browser"))
DRIVER = ("CVM210_CHROMEDRIVER", ("chromedriver",))
MONTH = "2024-03"
CHAIN = ("raw_zip", "s3_csv_partition", "bronze", "silver", "gold_kpis")
# Runs start as soon as they are launched: no daemon to dequeue them in this test.
INSTANCE_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""
CHECK_STATUSES = """
query Statuses($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name
      partitionStatuses { ... on AssetCheckTimePartitionStatuses {
        ranges { startKey endKey status } } } } } } }
  }
}"""


def executable(setting: str, names: tuple[str, ...]) -> str | None:
    """The program the environment variable `setting` names, else the first of `names` on PATH."""
    if os.environ.get(setting):
        return shutil.which(os.environ[setting])
    return next((found for name in names if (found := shutil.which(name))), None)


def chromium_or_skip() -> tuple[str, str]:
    """The browser and its driver. Skip without them; CI (`CI` set) must not: its set-up
    installs them."""
    found = {setting: executable(setting, names) for setting, names in (BROWSER, DRIVER)}
    missing = [f"{setting} or {'/'.join(names)} on PATH" for setting, names in (BROWSER, DRIVER)
               if found[setting] is None]  # fmt: skip
    if missing:
        reason = (
            f"no headless Chromium ({'; '.join(missing)}): ./scripts/setup.sh installs"
            " Debian's chromium and chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found[BROWSER[0]], found[DRIVER[0]]


@dataclass(frozen=True)
class Ui:
    url: str
    home: Path

    def graphql(self, query: str, **variables: object) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]


@pytest.fixture
def ui(fake_cvm: FakeCvm, tmp_path: Path) -> Iterator[Ui]:
    """`dagster-webserver` on a free port of 127.0.0.1, on an empty lake and a fresh instance;
    stopped with the runs it started."""
    chromium_or_skip()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    port = free_port()
    env = cli_env(fake_cvm, tmp_path / "lake", home)
    command = [
        sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
        "-m", "cvm210_assets.definitions",
    ]  # fmt: skip
    log = (tmp_path / "webserver.log").open("wb")
    server = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(
            f"{url}/server_info", server, 120, "dagster-webserver", tmp_path / "webserver.log"
        )
        yield Ui(url, home)
    finally:
        os.killpg(server.pid, 15)  # the server and the run processes it launched
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through its chromedriver: both given, so Selenium Manager has nothing
    to find or download."""
    chromium, chromedriver = chromium_or_skip()
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(20)
    yield driver
    driver.quit()


def test_a_month_materialized_from_the_ui_and_its_check_verdicts(
    ui: Ui, browser: WebDriver, fake_cvm: FakeCvm
) -> None:
    from cvm210_assets.definitions import defs

    fake_cvm.publish_month(2024, 3, generate_month(MonthSpec(2024, 3, "b", n_funds=10, seed=3)))

    # The asset graph: every group opened in its sidebar, every asset listed.
    every_asset = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert len(every_asset) == 9
    open_page(browser, f"{ui.url}/asset-groups")
    groups = "//button[contains(@class, 'Unstyled')][.//*[@aria-label='arrow_drop_down']]"
    for n in range(len(browser.find_elements(By.XPATH, groups))):
        browser.find_elements(By.XPATH, groups)[n].click()
    listed = {e.get_attribute("title") for e in browser.find_elements(By.XPATH, "//*[@title]")}
    assert every_asset <= listed, every_asset - listed

    # The chain raw_zip → gold_kpis, "Materialize all…", the month picked, one run launched.
    selection = " or ".join(f"key:{asset}" for asset in CHAIN)
    open_page(browser, f"{ui.url}/asset-groups~{urllib.parse.quote(selection)}/")
    click(browser, "//button[normalize-space()='Materialize all…']")
    partitions = browser.find_element(By.XPATH, "//input[starts-with(@placeholder, 'ex: 2005')]")
    partitions.send_keys(MONTH, Keys.ENTER)
    click(browser, "//button[normalize-space()='Launch 1 run']")

    with DagsterInstance.from_config(str(ui.home)) as instance:
        run = wait_for_run(instance)
        assert run.status == DagsterRunStatus.SUCCESS, run.status
        assert run.tags["dagster/partition"] == MONTH and run.tags["dagster/from_ui"] == "true"
        for asset in CHAIN:
            assert instance.get_materialized_partitions(AssetKey(asset)) == {MONTH}, asset

    # silver → Checks → key_unique → Partitions: the month passed, no other month judged.
    open_page(browser, f"{ui.url}/assets/silver?view=checks&checkDetail=key_unique")
    click(browser, "//*[normalize-space()='Execution history']/following::*[.='Partitions'][1]")
    WebDriverWait(browser, 30).until(lambda b: "Passed (1)" in b.page_source)
    assert "Failed (0)" in browser.page_source

    # The same view's data for every check of the month's assets (GraphQL partitionStatuses).
    for asset, checks in MONTHLY_CHECKS.items():
        data = ui.graphql(CHECK_STATUSES, key={"path": [asset]})
        shown = {
            c["name"]: c["partitionStatuses"]["ranges"]
            for c in data["assetNodeOrError"]["assetChecksOrError"]["checks"]
            if c["name"] in checks
        }
        passed = [{"startKey": MONTH, "endKey": MONTH, "status": "SUCCEEDED"}]
        assert shown == dict.fromkeys(checks, passed), asset


def open_page(browser: WebDriver, url: str) -> None:
    """Open a page; dismiss the community invitation a fresh UI shows once."""
    browser.get(url)
    browser.implicitly_wait(0)
    try:
        WebDriverWait(browser, 5).until(
            lambda b: b.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
        )[0].click()
    except TimeoutException:  # no invitation this time
        pass
    finally:
        browser.implicitly_wait(20)


def click(browser: WebDriver, xpath: str) -> None:
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.XPATH, xpath).is_enabled())
    browser.find_element(By.XPATH, xpath).click()


def wait_for_run(instance: DagsterInstance, timeout: float = 420):
    """The one run the UI launched, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if runs and runs[0].is_finished:
            assert len(runs) == 1, [r.run_id for r in runs]
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"no finished run after {timeout} s: {instance.get_runs()}")

"""Dagster's current CLI, `dg`, on this project ([tool.dg] in pyproject.toml), offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm

ROOT = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).parent / "dg")

pytestmark = pytest.mark.dagster_processes  # every test starts `dg`


def _env(**extra: str) -> dict[str, str]:
    # This checkout's code first, as in a clean clone's editable install.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_dg_check_defs_loads_the_definitions(tmp_path: Path) -> None:
    check = subprocess.run(
        [DG, "check", "defs"],
        cwd=ROOT,
        env=_env(DAGSTER_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    assert "All definitions loaded successfully." in check.stdout


def test_dg_launch_materializes_one_month_of_raw_zip(fake_cvm: FakeCvm, tmp_path: Path) -> None:
    """`dg launch --assets raw_zip --partition 2024-03` (README) against the fake CVM."""
    fake_cvm.publish_month(2024, 3, generate_month(MonthSpec(2024, 3, "b", n_funds=5, seed=2)))
    lake = tmp_path / "lake"
    (tmp_path / "home").mkdir()
    launch = subprocess.run(
        [DG, "launch", "--assets", "raw_zip", "--partition", "2024-03"],
        cwd=ROOT,
        env=_env(
            DAGSTER_HOME=str(tmp_path / "home"),
            CVM210_SOURCE_URL=fake_cvm.base_url,
            CVM210_LAKE_URI=str(lake),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "RUN_SUCCESS" in launch.stderr
    latest = json.loads((lake / "raw/zip/inf_diario_fi_202403/latest.json").read_text())
    assert latest["url"] == fake_cvm.url("inf_diario_fi_202403.zip")
    assert fake_cvm.count("GET", "inf_diario_fi_202403.zip") == 1

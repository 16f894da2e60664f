"""The one settings object: read in settings.py alone, documented where users look."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cvm210_assets
from cvm210_assets.settings import RETIRED_VARIABLES, AlertSettings, AutomationSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(cvm210_assets.__file__).parent
VARIABLE = re.compile(r"CVM210_[A-Z0-9_]+\*?")
# The modules that read the project's variables: the settings and their Databricks section.
SETTINGS_MODULES = ("settings.py", "databricks_settings.py")
# Where the package reads the environment besides them, each for the reason settings.py gives.
OTHER_READERS = {"settings.py", "lake/storage.py", "jvm_archive.py", "demo.py", "spark_server.py"}


def read_by_settings() -> set[str]:
    names = set()
    for module in SETTINGS_MODULES:
        names |= set(VARIABLE.findall((PACKAGE / module).read_text()))
    return names - set(RETIRED_VARIABLES)


def configuration_section() -> str:
    """The Configuration section: in the README, or in docs/ once it moves there."""
    for path in [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md"))]:
        lines = path.read_text().splitlines()
        for start, line in enumerate(lines):
            heading = re.fullmatch(r"(#+) Configuration\s*", line)
            if heading:
                level = len(heading[1])
                next_heading = re.compile(rf"#{{1,{level}}} ")
                end = next(
                    (i for i in range(start + 1, len(lines)) if next_heading.match(lines[i])),
                    len(lines),
                )
                return "\n".join(lines[start:end])
    raise AssertionError("no Configuration section in README.md or docs/")


def documented(text: str) -> set[str]:
    """The variables a text names; `CVM210_SMTP_*` names those of that prefix."""
    names = set(VARIABLE.findall(text))
    wildcards = {n for n in names if n.endswith("*")}
    read = read_by_settings()
    expanded = {r for w in wildcards for r in read if r.startswith(w[:-1])}
    for wildcard in wildcards:
        assert any(r.startswith(wildcard[:-1]) for r in read), f"{wildcard} names no setting"
    return (names - wildcards) | expanded


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(configuration_section, id="Configuration"),
        pytest.param(lambda: (ROOT / ".env.example").read_text(), id=".env.example"),
    ],
)
def test_every_setting_is_documented_and_every_documented_one_is_read(where) -> None:
    text = where()
    assert read_by_settings() - documented(text) == set(), "read but not documented"
    assert documented(text) - read_by_settings() == set(), "documented but not read"


def test_only_settings_reads_the_project_s_variables() -> None:
    readers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"os\.environ|getenv", path.read_text())
    }
    assert readers == OTHER_READERS
    for reader in OTHER_READERS - {"settings.py"}:
        text = (PACKAGE / reader).read_text()
        assert re.findall(r'os\.environ(?:\.get\(|\[)"(CVM210_\w+)', text) == [], reader


def test_importing_the_modules_reads_no_setting_and_loading_the_definitions_does() -> None:
    """Bad settings fail when the definitions load, naming the variable, not at an import."""
    env = {**os.environ, "CVM210_SCHEDULE_TIMEZONE": "Mars/Olympus", "PYTHONPATH": str(ROOT)}
    modules = ("schedules", "sensors", "freshness", "upkeep", "resources", "jobs", "cli")
    imported = subprocess.run(
        [sys.executable, "-c", "import " + ", ".join(f"cvm210_assets.{m}" for m in modules)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    loaded = subprocess.run(
        [sys.executable, "-c", "import cvm210_assets.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode != 0
    assert "CVM210_SCHEDULE_TIMEZONE='Mars/Olympus'" in loaded.stderr


def test_defaults_and_sections() -> None:
    settings = Settings.from_env({})
    assert settings.alerts == AlertSettings()
    assert settings.automation == AutomationSettings()
    assert settings.registry_url is None
    env = {
        "CVM210_SMTP_PORT": "2525",
        "CVM210_SMTP_SECURITY": "SSL",
        "CVM210_ALERT_RULES": "r.yaml",
    }
    alerts = Settings.from_env(env).alerts
    assert (alerts.smtp_port, alerts.smtp_security, alerts.rules_file) == (2525, "ssl", "r.yaml")
    for name, value in (("CVM210_SMTP_PORT", "smtp"), ("CVM210_SMTP_SECURITY", "tls")):
        with pytest.raises(ValueError, match=f"{name}='{value}'"):
            Settings.from_env({name: value})

"""The README's quick start is what CI runs, and the documentation's links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks/README.md"]


def _quick_start() -> list[str]:
    """The commands of the README's Quick start block, without their comments."""
    section = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line[:1].strip()]


def test_ci_runs_exactly_the_readme_quick_start() -> None:
    script = ROOT.joinpath(".ci/run").read_text().splitlines()
    commands = [line for line in script if line and not line.startswith(("#", "set ", "cd "))]
    # CI only adds its own variable in front of a command.
    assert [re.sub(r'^CI="\$\{CI:-1\}" ', "", c) for c in commands] == _quick_start()
    assert _quick_start() == [
        "./scripts/setup.sh",
        ".venv/bin/cvm210 demo",
        ".venv/bin/python -m pytest",
    ]


def test_every_relative_link_of_the_documentation_exists() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken

"""`cvm210 demo`: the whole pipeline on generated data served by a local copy of CVM's folders.

For a newcomer without internet access (or a CVM account of patience): one command shows the
assets, the lake and the SQL working end to end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from dagster import DagsterInstance, materialize

from cvm210_assets.assets.registry import CvmRegistry, fund_registry
from cvm210_assets.definitions import ASSETS
from cvm210_assets.fake_cvm.demo_site import REGISTRY_PATH, publish_demo
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.resources import build_resources
from cvm210_assets.settings import Settings
from cvm210_assets.settings import lake_uri as resolve_lake
from cvm210_assets.sql.duckdb_engine import connect, run
from cvm210_assets.sql.render import render

# One month of each header layout; 2019-07 comes from the 2019 yearly archive.
DEMO_MONTHS = ("2019-07", "2024-03", "2025-01")

DESIGN_QUERY = """SELECT CNPJ_FUNDO, total_captacao, total_resgate, fluxo_liquido, patrimonio_medio
FROM cvm_p210.gold_cvm210_analytics
WHERE fluxo_liquido < 0
ORDER BY fluxo_liquido ASC
LIMIT 10;"""
# The same outflows with the registry's names (the view gold_fundos).
NAMES_QUERY = """SELECT nome, gestor, fluxo_liquido
FROM cvm_p210.gold_fundos
WHERE fluxo_liquido < 0
ORDER BY fluxo_liquido ASC
LIMIT 5;"""


def run_demo(
    settings: Settings,
    lake: str,
    months: Sequence[str] = DEMO_MONTHS,
    funds: int = 300,
    say: Callable = print,
) -> bool:
    """Serve the demo site on 127.0.0.1, materialize `months` and the fund registry into
    `lake` with the rest of `settings`, print the design's query."""
    with FakeCvm() as fake:
        published = publish_demo(fake, n_funds=funds)
        say(f"Local CVM at {fake.base_url}: {', '.join(sorted(published))}")
        settings = replace(settings, source_url=fake.base_url, lake_uri=resolve_lake(lake))
        resources = build_resources(settings)
        instance = (
            DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        )
        for key in months:
            say(f"Materializing raw_zip → gold_kpis for {key} …")
            result = materialize(
                ASSETS,
                partition_key=key,
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )
            if not result.success:
                say(f"{key} failed; see the errors above.")
                return False
        # After the months: the registry's coverage check compares it with gold's latest month.
        say("Materializing fund_registry (names, classes, managers) …")
        result = materialize(
            [fund_registry],
            resources={**resources, "cvm_registry": CvmRegistry(zip_url=fake.url(REGISTRY_PATH))},
            instance=instance,
            raise_on_error=False,
        )
        if not result.success:
            say("fund_registry failed; see the errors above.")
            return False
    say(f"\nLake: {settings.lake_uri}\n\n{DESIGN_QUERY}\n")
    connection = connect(resources["lake"].tables)
    columns, rows = run(connection, DESIGN_QUERY)
    say(render(columns, rows, "table"))
    say(f"\n{NAMES_QUERY}\n")
    columns, rows = run(connection, NAMES_QUERY)
    say(render(columns, rows, "table"))
    return True

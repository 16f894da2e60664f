"""A small but complete copy of CVM's inf_diario folders, for a newcomer's first run.

It covers what the pipeline must cope with: a HIST yearly archive with twelve members in layout
(a), a monthly file in layout (b) and one in layout (c) with subclasses, dirt in both, and the
real CVM rows merged into their months; and the fund registry of all of their funds
(`FI/CAD/DADOS/registro_fundo_classe.zip` and `cad_fi.csv`), which `fund_registry` reads.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, real_csv, with_real_rows
from cvm210_assets.fake_cvm.registry import registry_files
from cvm210_assets.fake_cvm.server import CAD_PATH, FakeCvm

_BRT = timezone(timedelta(hours=-3))
_SEED = 210
REGISTRY_PATH = f"{CAD_PATH}/registro_fundo_classe.zip"


def publish_demo(fake: FakeCvm, n_funds: int = 300) -> dict[str, dict[str, object]]:
    """Publish 2019 (HIST archive), 2024-03 and 2025-01 (monthly files) on `fake`, and the
    registry of their funds (`REGISTRY_PATH` and `cad_fi.csv` beside it).

    Returns, per month "YYYY-MM": the file's path relative to DADOS, the zip member, the
    layout, whether dirt was added and the number of data rows.
    """
    published: dict[str, dict[str, object]] = {}
    csvs: list[bytes] = []

    year: dict[int, bytes] = {}
    for mes in range(1, 13):
        csv = generate_month(MonthSpec(2019, mes, "a", n_funds=n_funds, seed=_SEED))
        if mes in (1, 11):
            csv = with_real_rows(csv, real_csv(f"inf_diario_fi_2019{mes:02d}.csv"))
        year[mes] = csv
        csvs.append(csv)
    hist_path = fake.publish_year(2019, year, datetime(2021, 1, 4, 8, 0, tzinfo=_BRT))
    for mes, csv in year.items():
        published[f"2019-{mes:02d}"] = _describe(hist_path, 2019, mes, "a", False, csv)

    for ano, mes, layout, modified in (
        (2024, 3, "b", datetime(2024, 4, 30, 8, 0, tzinfo=_BRT)),
        (2025, 1, "c", datetime(2025, 2, 28, 8, 0, tzinfo=_BRT)),
    ):
        spec = MonthSpec(
            ano, mes, layout, n_funds=n_funds, seed=_SEED, subclass_share=0.05, dirt=True
        )
        csv = with_real_rows(generate_month(spec), real_csv(f"inf_diario_fi_{ano}{mes:02d}.csv"))
        path = fake.publish_month(ano, mes, csv, modified)
        published[f"{ano}-{mes:02d}"] = _describe(path, ano, mes, layout, True, csv)
        csvs.append(csv)
    fake.publish_registry(
        registry_files(csvs, seed=_SEED), datetime(2025, 2, 28, 8, 0, tzinfo=_BRT)
    )
    return published


def _describe(
    path: str, ano: int, mes: int, layout: str, dirt: bool, csv: bytes
) -> dict[str, object]:
    return {
        "path": path,
        "member": f"inf_diario_fi_{ano:04d}{mes:02d}.csv",
        "layout": layout,
        "dirt": dirt,
        "rows": csv.count(b"\n") - 1,
    }

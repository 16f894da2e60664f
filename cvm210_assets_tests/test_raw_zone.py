"""State records where lakes have always kept them: per month, and per asset without months."""

from __future__ import annotations

import json
from pathlib import Path

from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.partitions import Month


def test_an_unpartitioned_record_is_the_assets_latest_json(tmp_path: Path) -> None:
    state = StateStore(LocalStorage(tmp_path))
    assert state.get("fund_registry") is None
    state.put("fund_registry", None, {"rows": 3, "delta_version": 0})

    written = tmp_path / "_state" / "fund_registry" / "latest.json"
    assert json.loads(written.read_text()) == {"delta_version": 0, "rows": 3}
    # A record written before StateStore read it (the registry wrote its own JSON) still reads.
    written.write_text(json.dumps({"rows": 5}, sort_keys=True, indent=1))
    assert state.get("fund_registry") == {"rows": 5}


def test_the_months_an_asset_has_records_of_in_order(tmp_path: Path) -> None:
    state = StateStore(LocalStorage(tmp_path))
    assert state.months("gold_kpis") == []
    for key in ("2025-01", "2019-07", "2024-03"):
        state.put("gold_kpis", Month.from_key(key), {"rows": 1})
    assert state.key("gold_kpis", Month(2024, 3)) == "_state/gold_kpis/2024-03.json"
    assert state.months("gold_kpis") == [Month(2019, 7), Month(2024, 3), Month(2025, 1)]

"""Where raw files and per-month processing records live in the lake.

raw/zip/<file stem>/<sha256>.zip        every distinct version CVM served, by content hash
raw/zip/<file stem>/<sha256>.json       when and from where that version came
raw/zip/<file stem>/latest.json         the version captured last, with CVM's ETag/Last-Modified
raw/csv/ano=YYYY/mes=MM/inf_diario_fi_YYYYMM.csv   the month's current CSV
_state/<asset>/YYYY-MM.json             what each asset last produced for the month, and from
                                        which input: the record that lets a rerun skip work
_state/<asset>/latest.json              the same for an asset without partitions (fund_registry)
"""

from __future__ import annotations

import json
from typing import Any

from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.partitions import Month
from cvm210_assets.source.probe import VERSION_FIELDS

STATE_PREFIX = "_state"


def zip_key(stem: str, sha256: str) -> str:
    return f"raw/zip/{stem}/{sha256}.zip"


def latest_key(stem: str) -> str:
    """The record of the version of a CVM file the lake captured last."""
    return f"raw/zip/{stem}/latest.json"


def csv_key(month: Month) -> str:
    return f"raw/csv/ano={month.ano:04d}/mes={month.mes:02d}/inf_diario_fi_{month.compact}.csv"


class StateStore:
    """One small JSON record per (asset, month), or per asset without partitions (month None),
    written after the asset's data is committed.

    A crash between the commit and the record only costs a redo: every write is idempotent.
    """

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage

    @staticmethod
    def key(asset: str, month: Month | None = None) -> str:
        return f"{STATE_PREFIX}/{asset}/{'latest' if month is None else month.key}.json"

    def get(self, asset: str, month: Month | None = None) -> dict[str, Any] | None:
        data = self.storage.read_bytes(self.key(asset, month))
        return None if data is None else json.loads(data)

    def put(self, asset: str, month: Month | None, record: dict[str, Any]) -> None:
        body = json.dumps(record, sort_keys=True, indent=1, default=str).encode()
        self.storage.write_bytes(self.key(asset, month), body)

    def months(self, asset: str) -> list[Month]:
        """The months the asset has a record of, in order."""
        prefix = f"{STATE_PREFIX}/{asset}/"
        return [
            Month.from_key(key.removeprefix(prefix).removesuffix(".json"))
            for key in self.storage.list(prefix)
            if key.endswith(".json")
        ]


def lake_version(storage: LakeStorage, file: str) -> dict[str, Any] | None:
    """The version of CVM's `file` that raw_zip captured last (source.probe's `Version`: its
    ETag, Last-Modified and size), or None when the lake has none."""
    data = storage.read_bytes(latest_key(file))
    if data is None:
        return None
    latest = json.loads(data)
    return {"file": file, **{field: latest.get(field) for field in VERSION_FIELDS[1:]}}

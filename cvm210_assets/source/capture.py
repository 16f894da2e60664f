"""Capture a month from CVM: fetch its file, keep the version, point the month at it.

Versions are kept per file by content hash. A yearly archive is one file for twelve months, so
its validators (ETag, Last-Modified) are shared: once one month has fetched the archive, the
others get HTTP 304 and reuse the stored copy instead of downloading it again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from cvm210_assets.lake.raw_zone import StateStore, latest_key, zip_key
from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.partitions import Month
from cvm210_assets.source.archive import extract_month, find_month_member
from cvm210_assets.source.download import Downloaded, NotFound, NotModified
from cvm210_assets.source.urls import monthly_name, monthly_url, yearly_name, yearly_url

RAW_ZIP = "raw_zip"

Fetch = Callable[[str, Path, str | None, str | None], Downloaded | NotModified | NotFound]


class NotPublishedError(RuntimeError):
    """CVM has no file for the month (404 on the monthly file and on the yearly archive)."""


@dataclass(frozen=True)
class Capture:
    """What raw_zip recorded for a month; also its state record."""

    month: str
    url: str
    file: str
    zip_key: str
    sha256: str
    bytes: int
    last_modified: str | None
    etag: str | None
    member: str
    whole_year_member: bool
    layout: str
    rows: int
    csv_sha256: str
    fetched_at: str
    stored_new_version: bool
    changed: bool


def capture_month(
    month: Month, base_url: str, fetch: Fetch, storage: LakeStorage, workdir: Path
) -> Capture:
    """Fetch the month's file (monthly first, the yearly archive on 404) and record it."""
    state = StateStore(storage)
    previous = state.get(RAW_ZIP, month)
    candidates = (
        (monthly_url(base_url, month), monthly_name(month)),
        (yearly_url(base_url, month.ano), yearly_name(month.ano)),
    )
    for url, stem in candidates:
        latest = kept_latest(storage, latest_key(stem), partial(zip_key, stem))
        local = workdir / f"{stem}.zip"
        if latest:
            result = fetch(url, local, latest.get("etag"), latest.get("last_modified"))
        else:
            result = fetch(url, local, None, None)
        if isinstance(result, NotFound):
            continue
        if isinstance(result, NotModified) and previous and previous["sha256"] == latest["sha256"]:
            # The month was captured from this very version: its facts stand, nothing to reread
            # (reading a 3 M-row month's zip again cost more than the rest of a rerun).
            capture = replace(
                Capture(**previous), fetched_at=_now(), stored_new_version=False, changed=False
            )
        elif isinstance(result, NotModified):
            assert latest is not None  # 304 only answers a conditional request
            storage.download(zip_key(stem, latest["sha256"]), local)
            download = Downloaded(
                url=url,
                path=local,
                sha256=latest["sha256"],
                bytes=latest["bytes"],
                last_modified=latest.get("last_modified"),
                etag=latest.get("etag"),
            )
            capture = _describe(month, stem, download, False, previous)
        else:
            download = result
            stored_new = not storage.exists(zip_key(stem, download.sha256))
            # Read the file before keeping it: an error page served with HTTP 200 is no version.
            capture = _describe(month, stem, download, stored_new, previous)
            keep_version(storage, download, zip_key(stem, download.sha256), latest_key(stem))
        state.put(RAW_ZIP, month, asdict(capture))
        return capture
    raise NotPublishedError(
        f"CVM has not published {month}: HTTP 404 for {candidates[0][0]} and for the yearly"
        f" archive {candidates[1][0]}. Nothing was written."
    )


def kept_latest(
    storage: LakeStorage, latest: str, version_key: Callable[[str], str]
) -> dict | None:
    """The record of the version captured last, while its copy is still kept (else None: ask
    for the whole file again)."""
    record = _read_json(storage, latest)
    return record if record and storage.exists(version_key(record["sha256"])) else None


def keep_version(storage: LakeStorage, download: Downloaded, key: str, latest: str) -> None:
    """Store the file under its hash-named `key`, with where and when it came from beside it,
    unless that version is already kept; point `latest` at it."""
    info = {
        "url": download.url,
        "sha256": download.sha256,
        "bytes": download.bytes,
        "etag": download.etag,
        "last_modified": download.last_modified,
        "fetched_at": _now(),
    }
    if not storage.exists(key):
        storage.upload(download.path, key)
        storage.write_bytes(key.rsplit(".", 1)[0] + ".json", _json(info))
    storage.write_bytes(latest, _json(info))


def _describe(
    month: Month,
    stem: str,
    download: Downloaded,
    stored_new: bool,
    previous: dict | None,
) -> Capture:
    source = f"{download.url} (sha256 {download.sha256[:12]})"
    member = find_month_member(download.path, month, source)
    measured = extract_month(download.path, member, month, Path(os.devnull), source)
    return Capture(
        month=month.key,
        url=download.url,
        file=stem,
        zip_key=zip_key(stem, download.sha256),
        sha256=download.sha256,
        bytes=download.bytes,
        last_modified=download.last_modified,
        etag=download.etag,
        member=member.name,
        whole_year_member=member.whole_year,
        layout=measured.layout.name,
        rows=measured.rows,
        csv_sha256=measured.sha256,
        fetched_at=_now(),
        stored_new_version=stored_new,
        changed=previous is None or previous.get("csv_sha256") != measured.sha256,
    )


def _read_json(storage: LakeStorage, key: str) -> dict | None:
    data = storage.read_bytes(key)
    return None if data is None else json.loads(data)


def _json(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, indent=1).encode()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

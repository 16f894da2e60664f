"""CVM's fund registry files: where they are, and each version kept in the raw zone by sha256.

raw/cad/<file stem>/<sha256>.<ext>    every distinct version CVM served
raw/cad/<file stem>/<sha256>.json     its URL, ETag, Last-Modified, fetch time
raw/cad/<file stem>/latest.json       the version captured last (its validators ask CVM for
                                      HTTP 304 next time)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.source.capture import Fetch, keep_version, kept_latest
from cvm210_assets.source.download import NotFound, NotModified

REGISTRY_MEMBERS = ("registro_fundo.csv", "registro_classe.csv", "registro_subclasse.csv")
CAD_FI = "cad_fi.csv"
# The zip's members are a few tens of MB; a member claiming more is not CVM's registry.
MAX_MEMBER_BYTES = 2 << 30


def registry_url(source_url: str, configured: str | None = None) -> str:
    """`configured` (CVM210_REGISTRY_URL); else the registry beside the DADOS folder, same host
    and prefix: .../FI/DOC/INF_DIARIO/DADOS -> .../FI/CAD/DADOS/registro_fundo_classe.zip
    (CVM's own registry beside CVM's folder)."""
    if configured:
        return configured
    return urljoin(source_url.rstrip("/") + "/", "../../../CAD/DADOS/registro_fundo_classe.zip")


def cad_fi_url(zip_url: str) -> str:
    """cad_fi.csv sits in the registry zip's folder."""
    return urljoin(zip_url, CAD_FI)


def version_key(stem: str, sha256: str, ext: str) -> str:
    return f"raw/cad/{stem}/{sha256}.{ext}"


def latest_key(stem: str) -> str:
    return f"raw/cad/{stem}/latest.json"


@dataclass(frozen=True)
class Captured:
    """One registry file as the lake holds it now."""

    url: str
    path: Path  # the local copy, in the caller's workdir
    key: str
    sha256: str
    bytes: int
    etag: str | None
    last_modified: str | None
    downloaded: bool  # False: CVM answered 304 and the kept copy was used


def capture(url: str, fetch: Fetch, storage: LakeStorage, workdir: Path) -> Captured:
    """Fetch `url` (conditionally, with the validators of the version kept last) and keep a
    new version under its sha256; a missing file is an error that names the URL."""
    name = url.rsplit("/", 1)[-1]
    stem, _, ext = name.rpartition(".")
    latest = kept_latest(storage, latest_key(stem), lambda sha: version_key(stem, sha, ext))
    local = workdir / name
    result = fetch(
        url, local, latest and latest.get("etag"), latest and latest.get("last_modified")
    )
    if isinstance(result, NotFound):
        raise FileNotFoundError(f"CVM has no {url} (HTTP 404); nothing was written")
    if isinstance(result, NotModified):
        assert latest is not None  # 304 only answers a conditional request
        key = version_key(stem, latest["sha256"], ext)
        storage.download(key, local)
        return Captured(
            url,
            local,
            key,
            latest["sha256"],
            latest["bytes"],
            latest.get("etag"),
            latest.get("last_modified"),
            downloaded=False,
        )
    if ext == "zip":
        registry_members(local)  # an error page served with HTTP 200 is no version
    key = version_key(stem, result.sha256, ext)
    keep_version(storage, result, key, latest_key(stem))
    return Captured(
        url,
        local,
        key,
        result.sha256,
        result.bytes,
        result.etag,
        result.last_modified,
        downloaded=True,
    )


def registry_members(path: Path) -> dict[str, bytes]:
    """The three CSVs of registro_fundo_classe.zip; an error names what the zip holds."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {Path(i.filename).name.lower(): i for i in archive.infolist()}
            missing = [m for m in REGISTRY_MEMBERS if m not in infos]
            if missing:
                raise ValueError(
                    f"{path.name}: members {missing} missing; members: {sorted(infos)}"
                )
            too_big = [m for m in REGISTRY_MEMBERS if infos[m].file_size > MAX_MEMBER_BYTES]
            if too_big:
                raise ValueError(f"{path.name}: members {too_big} too large (a zip bomb?)")
            return {m: archive.read(infos[m]) for m in REGISTRY_MEMBERS}
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path.name}: not a zip file ({error})") from error

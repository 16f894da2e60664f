"""Ask CVM whether a file changed without downloading it: one HTTP HEAD, its validators.

No retries here: a sensor that probes CVM every hour backs off as a whole when the server errs,
instead of insisting request by request. The change sensor and the freshness check both ask
through `observe` (with `CvmSource`'s HTTP client) and compare `Version`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from cvm210_assets.partitions import Month
from cvm210_assets.source.download import NotFound, request_same_host
from cvm210_assets.source.urls import monthly_name, monthly_url, yearly_name, yearly_url

VERSION_FIELDS = ("file", "etag", "last_modified", "bytes")

Version = dict[str, Any]  # VERSION_FIELDS; "file" (the file's stem) is None when unpublished


class ProbeError(RuntimeError):
    """CVM did not answer the probe usefully (5xx, connection error, timeout, odd status)."""


@dataclass(frozen=True)
class Validators:
    """What identifies a version of a file without its bytes, as HTTP caching sees it."""

    url: str
    etag: str | None
    last_modified: str | None
    bytes: int | None


def probe(
    session: requests.Session, url: str, timeout: tuple[float, float]
) -> Validators | NotFound:
    """HEAD `url`; follow redirects only within its host, as downloads do."""
    try:
        response = request_same_host(session, "HEAD", url, timeout, ProbeError)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise ProbeError(f"{url}: {type(error).__name__}: {error}") from error
    with response:
        if response.status_code == 404:
            return NotFound(url)
        if response.status_code != 200:
            raise ProbeError(f"{url}: HTTP {response.status_code}")
        length = response.headers.get("Content-Length")
        return Validators(
            url=url,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            bytes=int(length) if length is not None and length.isdigit() else None,
        )


def version(file: str | None, found: Validators | NotFound) -> Version:
    if isinstance(found, NotFound):
        return dict.fromkeys(VERSION_FIELDS)
    return {
        "file": file,
        "etag": found.etag,
        "last_modified": found.last_modified,
        "bytes": found.bytes,
    }


def same_version(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    return a is not None and all(a.get(field) == b.get(field) for field in VERSION_FIELDS)


def observe(
    session: requests.Session,
    base_url: str,
    months: Sequence[Month],
    max_requests: int,
    timeout: tuple[float, float],
) -> dict[Month, Version]:
    """Probe the months in order until the budget is spent; a year's archive at most once.

    Raises ProbeError at CVM's first error: the caller stops there.
    """
    found: dict[Month, Version] = {}
    archives: dict[int, Validators | NotFound] = {}
    spent = 0
    for month in months:
        if spent == max_requests:
            break
        result = probe(session, monthly_url(base_url, month), timeout)
        spent += 1
        if not isinstance(result, NotFound):
            found[month] = version(monthly_name(month), result)
            continue
        if month.ano not in archives:
            if spent == max_requests:
                break
            archives[month.ano] = probe(session, yearly_url(base_url, month.ano), timeout)
            spent += 1
        found[month] = version(yearly_name(month.ano), archives[month.ano])
    return found

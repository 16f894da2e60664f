"""Ask CVM whether a file changed without downloading it: one HTTP HEAD, its validators.

No retries here: a sensor that probes CVM every hour backs off as a whole when the server errs,
instead of insisting request by request.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from cvm210_assets.source.download import NotFound, request_same_host


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

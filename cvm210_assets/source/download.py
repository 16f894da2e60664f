"""Streaming HTTP download with timeouts, bounded retries and conditional requests.

Memory stays flat whatever the file size: the body goes to disk in chunks while it is hashed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 3


class DownloadError(RuntimeError):
    """A download that failed for good: after the retries, or for a reason retrying cannot fix."""


@dataclass(frozen=True)
class Downloaded:
    url: str
    path: Path
    sha256: str
    bytes: int
    last_modified: str | None
    etag: str | None


@dataclass(frozen=True)
class NotModified:
    """The server confirmed that our copy is current (HTTP 304)."""

    url: str


@dataclass(frozen=True)
class NotFound:
    url: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)


class _Retryable(Exception):
    pass


def download(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    timeout: tuple[float, float],
    retry: RetryPolicy,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Downloaded | NotModified | NotFound:
    """Fetch `url` into `dest`, retrying 5xx, resets, truncated bodies and timeouts."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    last_problem = ""
    for attempt in range(1, retry.attempts + 1):
        try:
            return _attempt(session, url, dest, headers, timeout)
        except _Retryable as problem:
            last_problem = str(problem)
        except (requests.ConnectionError, requests.Timeout) as problem:
            last_problem = f"{type(problem).__name__}: {problem}"
        if attempt < retry.attempts:
            wait = retry.delay(attempt)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs", url, last_problem, attempt, retry.attempts, wait
            )
            time.sleep(wait)
    raise DownloadError(
        f"{url}: gave up after {retry.attempts} attempts; last error: {last_problem}"
    )


def _attempt(
    session: requests.Session,
    url: str,
    dest: Path,
    headers: dict[str, str],
    timeout: tuple[float, float],
) -> Downloaded | NotModified | NotFound:
    response = request_same_host(
        session, "GET", url, timeout, DownloadError, headers=headers, stream=True
    )
    with response:
        if response.status_code == 404:
            return NotFound(url)
        if response.status_code == 304:
            return NotModified(url)
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise DownloadError(f"{url}: unexpected HTTP {response.status_code}")
        expected = response.headers.get("Content-Length")
        digest = hashlib.sha256()
        size = 0
        try:
            with dest.open("wb") as out:
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as error:
            raise _Retryable(f"connection lost after {size} bytes: {error}") from error
        if expected is not None and int(expected) != size:
            raise _Retryable(f"body shorter than Content-Length: {size} of {expected} bytes")
        return Downloaded(
            url=url,
            path=dest,
            sha256=digest.hexdigest(),
            bytes=size,
            last_modified=response.headers.get("Last-Modified"),
            etag=response.headers.get("ETag"),
        )


def request_same_host(
    session: requests.Session,
    method: str,
    url: str,
    timeout: tuple[float, float],
    error: type[Exception],
    **kwargs: Any,
) -> requests.Response:
    """Follow redirects only within the configured host: CVM's files come from CVM. A
    redirect elsewhere, or too many, raise `error`."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = session.request(
            method, current, timeout=timeout, allow_redirects=False, **kwargs
        )
        if not response.is_redirect:
            return response
        target = urljoin(current, response.headers.get("Location", ""))
        response.close()
        if urlsplit(target)[:2] != urlsplit(url)[:2]:
            raise error(f"{url}: refused redirect to another host: {target}")
        current = target
    raise error(f"{url}: more than {MAX_REDIRECTS} redirects")

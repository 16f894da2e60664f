"""Streaming download against the fake CVM: statuses, validators, retries, timeouts, redirects."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month, monthly_zip
from cvm210_assets.fake_cvm.server import DADOS_PATH, FakeCvm, RequestRecord
from cvm210_assets.source.download import (
    Downloaded,
    DownloadError,
    NotFound,
    NotModified,
    RetryPolicy,
    download,
)

FAST_RETRY = RetryPolicy(attempts=3, backoff_seconds=0.01)
TIMEOUT = (2.0, 5.0)
PATH = "inf_diario_fi_202401.zip"
FULL_PATH = f"{DADOS_PATH}/{PATH}"
PUBLISHED_AT = datetime(2024, 2, 1, 11, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def body() -> bytes:
    # Several 64 KiB chunks on the wire, so "half the body" is a real partial transfer.
    csv = generate_month(MonthSpec(2024, 1, "c", n_funds=400, seed=3))
    data = monthly_zip(2024, 1, csv)
    assert len(data) > 3 * 64 * 1024
    return data


@pytest.fixture
def cvm(body: bytes) -> Iterator[FakeCvm]:
    with FakeCvm() as fake:
        fake.put(PATH, body, last_modified=PUBLISHED_AT)
        yield fake


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def fetch(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    timeout: tuple[float, float] = TIMEOUT,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Downloaded | NotModified | NotFound:
    return download(
        session,
        url,
        dest,
        timeout=timeout,
        retry=FAST_RETRY,
        etag=etag,
        last_modified=last_modified,
    )


def statuses(cvm: FakeCvm, path: str = FULL_PATH) -> list[int]:
    return [r.status for r in cvm.requests if r.path == path]


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cvm210_assets.source.download" and r.levelno == logging.WARNING
    ]


def assert_complete(result: object, dest: Path, body: bytes, url: str) -> None:
    assert isinstance(result, Downloaded), result
    assert result.url == url
    assert result.path == dest
    assert dest.read_bytes() == body
    assert result.bytes == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()


# Status codes and validators ---------------------------------------------------------------


def test_200_writes_the_file_with_hash_size_and_validators(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "month.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, body, cvm.url(PATH))
    assert isinstance(result, Downloaded)
    assert result.etag == f'"{hashlib.sha256(body).hexdigest()}"'
    assert result.last_modified == "Thu, 01 Feb 2024 11:00:00 GMT"
    assert cvm.requests == [RequestRecord("GET", FULL_PATH, 200)]


def test_404_is_not_found_without_retry_or_file(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    dest = tmp_path / "missing.zip"
    url = cvm.url("inf_diario_fi_203001.zip")

    result = fetch(session, url, dest)

    assert result == NotFound(url)
    assert not dest.exists()
    assert cvm.count("GET", "inf_diario_fi_203001.zip") == 1


def test_matching_etag_is_not_modified_and_leaves_our_copy_alone(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "month.zip"
    dest.write_bytes(b"our stored copy")
    etag = f'"{hashlib.sha256(body).hexdigest()}"'

    result = fetch(session, cvm.url(PATH), dest, etag=etag)

    assert result == NotModified(cvm.url(PATH))
    assert dest.read_bytes() == b"our stored copy"
    assert statuses(cvm) == [304]


def test_last_modified_alone_gives_not_modified(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    since = format_datetime(PUBLISHED_AT, usegmt=True)

    result = fetch(session, cvm.url(PATH), tmp_path / "m.zip", last_modified=since)

    assert result == NotModified(cvm.url(PATH))
    assert statuses(cvm) == [304]


def test_validators_of_an_older_version_fetch_the_restated_file(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    old_etag = f'"{hashlib.sha256(body).hexdigest()}"'
    old_since = format_datetime(PUBLISHED_AT, usegmt=True)
    restated = monthly_zip(2024, 1, generate_month(MonthSpec(2024, 1, "c", n_funds=5, seed=9)))
    cvm.put(PATH, restated, last_modified=datetime(2024, 2, 2, 11, 0, tzinfo=timezone.utc))
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest, etag=old_etag, last_modified=old_since)

    assert_complete(result, dest, restated, cvm.url(PATH))
    assert isinstance(result, Downloaded)
    assert result.etag == f'"{hashlib.sha256(restated).hexdigest()}"'
    assert result.last_modified == "Fri, 02 Feb 2024 11:00:00 GMT"


# Retries -----------------------------------------------------------------------------------


def test_503_then_500_then_success(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    cvm.fail_next(PATH, 503, 500)
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, body, cvm.url(PATH))
    assert statuses(cvm) == [503, 500, 200]
    assert cvm.count("GET", PATH) == 3


def test_always_503_gives_up_naming_url_and_attempts(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    cvm.fail_next(PATH, 503, 503, 503, 503)  # one more than the attempts: it must stop at 3

    with pytest.raises(DownloadError) as caught:
        fetch(session, cvm.url(PATH), tmp_path / "m.zip")

    message = str(caught.value)
    assert cvm.url(PATH) in message
    assert "3 attempts" in message
    assert "HTTP 503" in message
    assert statuses(cvm) == [503, 503, 503]


def test_client_error_is_not_retried(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    cvm.fail_next(PATH, 403)

    with pytest.raises(DownloadError, match=r"unexpected HTTP 403") as caught:
        fetch(session, cvm.url(PATH), tmp_path / "m.zip")

    assert cvm.url(PATH) in str(caught.value)
    assert statuses(cvm) == [403]


def test_truncated_body_is_retried_and_the_file_is_complete(
    cvm: FakeCvm,
    session: requests.Session,
    body: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cvm.truncate_next(PATH)
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, body, cvm.url(PATH))
    warnings = retry_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert cvm.url(PATH) in warnings[0]
    assert "retry 1/3" in warnings[0]
    assert "connection lost after" in warnings[0].lower()
    assert cvm.count("GET", PATH) == 2


def test_truncated_every_time_fails_after_the_attempts(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    cvm.truncate_next(PATH, times=3)

    with pytest.raises(DownloadError, match=r"gave up after 3 attempts") as caught:
        fetch(session, cvm.url(PATH), tmp_path / "m.zip")

    assert cvm.url(PATH) in str(caught.value)
    assert cvm.count("GET", PATH) == 3


def test_connection_reset_mid_body_is_retried(
    cvm: FakeCvm,
    session: requests.Session,
    body: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cvm.reset_next(PATH)
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, body, cvm.url(PATH))
    warnings = retry_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert cvm.url(PATH) in warnings[0]
    assert "retry 1/3" in warnings[0]
    assert cvm.count("GET", PATH) == 2


def test_read_timeout_is_retried_without_waiting_for_the_slow_body(
    cvm: FakeCvm,
    session: requests.Session,
    body: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cvm.delay_next(PATH, 1.0)
    dest = tmp_path / "m.zip"

    started = time.monotonic()
    result = fetch(session, cvm.url(PATH), dest, timeout=(2, 0.3))
    elapsed = time.monotonic() - started

    assert_complete(result, dest, body, cvm.url(PATH))
    warnings = retry_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert cvm.url(PATH) in warnings[0]
    assert "retry 1/3" in warnings[0]
    assert "timed out" in warnings[0].lower()
    assert cvm.count("GET", PATH) == 2
    assert elapsed < 0.95, f"waited {elapsed:.2f}s: the 0.3 s read timeout did not fire"


def test_read_timeout_every_time_fails_saying_so(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    cvm.delay_next(PATH, 1.0, times=3)

    with pytest.raises(DownloadError, match=r"gave up after 3 attempts") as caught:
        fetch(session, cvm.url(PATH), tmp_path / "m.zip", timeout=(2, 0.2))

    assert "timed out" in str(caught.value).lower()
    assert cvm.count("GET", PATH) == 3


# Redirects ---------------------------------------------------------------------------------


def test_redirect_to_another_host_is_refused(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    with FakeCvm() as elsewhere:
        elsewhere.put(PATH, body)
        target = elsewhere.url(PATH)  # same address, other port: another origin
        cvm.redirect_next(PATH, target)

        with pytest.raises(DownloadError, match=r"refused redirect") as caught:
            fetch(session, cvm.url(PATH), tmp_path / "m.zip")

        assert elsewhere.requests == []
    assert target in str(caught.value)
    assert cvm.url(PATH) in str(caught.value)
    assert statuses(cvm) == [302]
    assert not (tmp_path / "m.zip").exists()


def test_redirect_within_the_host_is_followed(
    cvm: FakeCvm, session: requests.Session, tmp_path: Path
) -> None:
    moved = monthly_zip(2024, 1, generate_month(MonthSpec(2024, 1, "b", n_funds=4, seed=1)))
    cvm.put("moved/inf_diario_fi_202401.zip", moved)
    cvm.redirect_next(PATH, f"{DADOS_PATH}/moved/inf_diario_fi_202401.zip")
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, moved, cvm.url(PATH))
    assert [(r.path, r.status) for r in cvm.requests] == [
        (FULL_PATH, 302),
        (f"{DADOS_PATH}/moved/inf_diario_fi_202401.zip", 200),
    ]


def test_absolute_redirect_to_the_same_origin_is_followed(
    cvm: FakeCvm, session: requests.Session, body: bytes, tmp_path: Path
) -> None:
    cvm.redirect_next(PATH, cvm.url(PATH))
    dest = tmp_path / "m.zip"

    result = fetch(session, cvm.url(PATH), dest)

    assert_complete(result, dest, body, cvm.url(PATH))
    assert statuses(cvm) == [302, 200]


def test_redirect_loop_stops(cvm: FakeCvm, session: requests.Session, tmp_path: Path) -> None:
    cvm.redirect_next(PATH, FULL_PATH, times=10)

    with pytest.raises(DownloadError, match=r"more than 3 redirects"):
        fetch(session, cvm.url(PATH), tmp_path / "m.zip")

    assert statuses(cvm) == [302, 302, 302, 302]


# Backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=8, backoff_seconds=1.5, max_backoff_seconds=10.0)

    assert [policy.delay(n) for n in range(1, 6)] == [1.5, 3.0, 6.0, 10.0, 10.0]

"""Probing a CVM file with HEAD: its validators, 404, errors without retries, redirects."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests

from cvm210_assets.fake_cvm.server import FakeCvm, RequestRecord
from cvm210_assets.source.download import NotFound
from cvm210_assets.source.probe import ProbeError, Validators, probe

FILE = "inf_diario_fi_202403.zip"
BODY = b"PK\x03\x04 not really a zip, but HEAD never reads it"
TIMEOUT = (2.0, 2.0)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_head_gives_the_files_validators_without_its_body(
    fake_cvm: FakeCvm, session: requests.Session
) -> None:
    fake_cvm.put(FILE, BODY, last_modified=datetime(2024, 4, 2, 11, 5, 7, tzinfo=timezone.utc))

    found = probe(session, fake_cvm.url(FILE), TIMEOUT)

    assert found == Validators(
        url=fake_cvm.url(FILE),
        etag=f'"{hashlib.sha256(BODY).hexdigest()}"',
        last_modified="Tue, 02 Apr 2024 11:05:07 GMT",
        bytes=len(BODY),
    )
    assert [(r.method, r.status) for r in fake_cvm.requests] == [("HEAD", 200)]


def test_a_missing_file_is_not_found(fake_cvm: FakeCvm, session: requests.Session) -> None:
    assert probe(session, fake_cvm.url(FILE), TIMEOUT) == NotFound(fake_cvm.url(FILE))


@pytest.mark.parametrize("status", [500, 503, 403])
def test_an_error_status_raises_at_once_without_retrying(
    fake_cvm: FakeCvm, session: requests.Session, status: int
) -> None:
    fake_cvm.put(FILE, BODY)
    fake_cvm.fail_next(FILE, status)

    with pytest.raises(ProbeError, match=f"HTTP {status}"):
        probe(session, fake_cvm.url(FILE), TIMEOUT)
    assert fake_cvm.count("HEAD", FILE) == 1


def test_a_connection_refused_raises(session: requests.Session) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ProbeError, match="ConnectionError"):
        probe(session, f"http://127.0.0.1:{port}/{FILE}", TIMEOUT)


def test_a_redirect_within_the_host_is_followed(
    fake_cvm: FakeCvm, session: requests.Session
) -> None:
    fake_cvm.put(FILE, BODY)
    fake_cvm.redirect_next(FILE, fake_cvm.url(FILE))

    found = probe(session, fake_cvm.url(FILE), TIMEOUT)

    assert isinstance(found, Validators)
    assert found.bytes == len(BODY)
    path = fake_cvm.requests[0].path
    assert fake_cvm.requests == [RequestRecord("HEAD", path, 302), RequestRecord("HEAD", path, 200)]


def test_a_redirect_to_another_host_is_refused_unfollowed(
    fake_cvm: FakeCvm, session: requests.Session
) -> None:
    fake_cvm.put(FILE, BODY)
    elsewhere = f"http://localhost:{fake_cvm.port}/dados/FI/DOC/INF_DIARIO/DADOS/{FILE}"
    fake_cvm.redirect_next(FILE, elsewhere)

    with pytest.raises(ProbeError, match="refused redirect to another host"):
        probe(session, fake_cvm.url(FILE), TIMEOUT)
    assert [r.status for r in fake_cvm.requests] == [302]

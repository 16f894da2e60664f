"""Capturing a month from the fake CVM into a local lake: versions, state, 304s, HIST fallback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cvm210_assets.fake_cvm.generator import (
    LAYOUT_HEADERS,
    MonthSpec,
    generate_month,
    monthly_zip,
    restate,
    yearly_single_member_zip,
    yearly_zip,
)
from cvm210_assets.fake_cvm.server import DADOS_PATH, FakeCvm, RequestRecord
from cvm210_assets.lake.storage import LocalStorage
from cvm210_assets.partitions import Month
from cvm210_assets.source.archive import ArchiveError
from cvm210_assets.source.capture import Capture, Fetch, NotPublishedError, capture_month
from cvm210_assets.source.download import (
    Downloaded,
    NotFound,
    NotModified,
    RetryPolicy,
    download,
)

JAN_2024 = Month(2024, 1)
MONTHLY = "inf_diario_fi_202401.zip"
HIST_2019 = "HIST/inf_diario_fi_2019.zip"

Capturer = Callable[[Month], Capture]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_rows(csv: bytes) -> int:
    return sum(1 for line in csv.splitlines()[1:] if line)


@pytest.fixture
def cvm() -> Iterator[FakeCvm]:
    with FakeCvm() as fake:
        yield fake


@pytest.fixture
def fetch() -> Iterator[Fetch]:
    """What CvmSource.fetch does, with fast retries."""
    with requests.Session() as session:

        def fetch(
            url: str, dest: Path, etag: str | None, last_modified: str | None
        ) -> Downloaded | NotModified | NotFound:
            return download(
                session,
                url,
                dest,
                timeout=(2.0, 5.0),
                retry=RetryPolicy(attempts=3, backoff_seconds=0.01),
                etag=etag,
                last_modified=last_modified,
            )

        yield fetch


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def storage(lake: Path) -> LocalStorage:
    return LocalStorage(lake)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def capture(cvm: FakeCvm, fetch: Fetch, storage: LocalStorage, workdir: Path) -> Capturer:
    def run(month: Month) -> Capture:
        return capture_month(month, cvm.base_url, fetch, storage, workdir)

    return run


def zips_in(lake: Path, stem: str) -> dict[str, bytes]:
    folder = lake / "raw" / "zip" / stem
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.zip"))}


def state(lake: Path, month: Month) -> dict[str, Any]:
    return json.loads((lake / "_state" / "raw_zip" / f"{month.key}.json").read_text())


# A monthly file ------------------------------------------------------------------------------


def test_monthly_file_is_stored_by_hash_with_a_state_record(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    csv = generate_month(MonthSpec(2024, 1, "c", n_funds=5, seed=1, subclass_share=0.4))
    body = monthly_zip(2024, 1, csv)
    cvm.put(MONTHLY, body)

    result = capture(JAN_2024)

    stem = "inf_diario_fi_202401"
    assert zips_in(lake, stem) == {f"{sha(body)}.zip": body}
    assert result.zip_key == f"raw/zip/{stem}/{sha(body)}.zip"
    assert (result.url, result.file, result.sha256, result.bytes) == (
        cvm.url(MONTHLY),
        stem,
        sha(body),
        len(body),
    )
    assert result.etag == f'"{sha(body)}"'
    assert (result.member, result.whole_year_member) == ("inf_diario_fi_202401.csv", False)
    assert (result.stored_new_version, result.changed) == (True, True)
    record = state(lake, JAN_2024)
    assert record["month"] == "2024-01"
    assert record["layout"] == "c"
    assert record["rows"] == data_rows(csv)
    assert record["csv_sha256"] == sha(csv)
    assert record["zip_key"] == result.zip_key
    info = json.loads((lake / "raw" / "zip" / stem / f"{sha(body)}.json").read_text())
    assert (info["url"], info["sha256"], info["bytes"]) == (cvm.url(MONTHLY), sha(body), len(body))
    assert cvm.requests == [RequestRecord("GET", f"{DADOS_PATH}/{MONTHLY}", 200)]


def test_unchanged_file_is_asked_conditionally_and_not_stored_again(
    cvm: FakeCvm, capture: Capturer, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = generate_month(MonthSpec(2024, 1, "b", n_funds=4, seed=2))
    body = monthly_zip(2024, 1, csv)
    cvm.put(MONTHLY, body)
    first = capture(JAN_2024)
    cvm.reset_log()

    def no_reread(*args):
        raise AssertionError("the month's zip was read again for an unchanged file")

    monkeypatch.setattr(LocalStorage, "download", no_reread)  # nor reread: its facts stand
    second = capture(JAN_2024)

    assert cvm.requests == [RequestRecord("GET", f"{DADOS_PATH}/{MONTHLY}", 304)]
    assert (second.stored_new_version, second.changed) == (False, False)
    assert zips_in(lake, "inf_diario_fi_202401") == {f"{sha(body)}.zip": body}
    assert (second.zip_key, second.sha256, second.csv_sha256, second.rows) == (
        first.zip_key,
        first.sha256,
        sha(csv),
        data_rows(csv),
    )
    assert state(lake, JAN_2024)["changed"] is False


def test_restated_file_is_kept_next_to_the_first_version(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    csv = generate_month(MonthSpec(2024, 1, "c", n_funds=20, seed=3))
    first_body = monthly_zip(2024, 1, csv)
    cvm.put(MONTHLY, first_body)
    first = capture(JAN_2024)
    restated = restate(csv, seed=7, change_share=0.05, n_add=2, n_remove=1)
    assert restated != csv
    second_body = monthly_zip(2024, 1, restated)
    cvm.put(MONTHLY, second_body)
    cvm.reset_log()

    second = capture(JAN_2024)

    assert [r.status for r in cvm.requests] == [200]
    assert (second.stored_new_version, second.changed) == (True, True)
    assert zips_in(lake, "inf_diario_fi_202401") == {
        f"{sha(first_body)}.zip": first_body,
        f"{sha(second_body)}.zip": second_body,
    }
    assert second.zip_key != first.zip_key
    record = state(lake, JAN_2024)
    assert (record["sha256"], record["csv_sha256"], record["rows"]) == (
        sha(second_body),
        sha(restated),
        data_rows(restated),
    )


def test_monthly_file_is_preferred_to_the_yearly_archive(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    monthly_csv = generate_month(MonthSpec(2020, 12, "b", n_funds=3, seed=1))
    yearly_csv = generate_month(MonthSpec(2020, 12, "b", n_funds=3, seed=2))
    cvm.publish_month(2020, 12, monthly_csv)
    cvm.publish_year(2020, {12: yearly_csv})

    result = capture(Month(2020, 12))

    assert result.csv_sha256 == sha(monthly_csv)
    assert result.file == "inf_diario_fi_202012"
    assert cvm.count("GET", "HIST/inf_diario_fi_2020.zip") == 0
    assert not (lake / "raw" / "zip" / "inf_diario_fi_2020").exists()


# The yearly archive --------------------------------------------------------------------------


def test_hist_archive_is_downloaded_once_for_two_months(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    months = {mes: generate_month(MonthSpec(2019, mes, "a", n_funds=3, seed=5)) for mes in (3, 4)}
    months[5] = generate_month(MonthSpec(2019, 5, "b", n_funds=3, seed=5))
    body = yearly_zip(2019, months)
    cvm.put(HIST_2019, body)

    march = capture(Month(2019, 3))

    assert [(r.path, r.status) for r in cvm.requests] == [
        (f"{DADOS_PATH}/inf_diario_fi_201903.zip", 404),
        (f"{DADOS_PATH}/{HIST_2019}", 200),
    ]
    assert (march.url, march.file, march.member) == (
        cvm.url(HIST_2019),
        "inf_diario_fi_2019",
        "inf_diario_fi_201903.csv",
    )
    assert (march.csv_sha256, march.rows, march.layout) == (
        sha(months[3]),
        data_rows(months[3]),
        "a",
    )
    cvm.reset_log()

    april = capture(Month(2019, 4))

    assert [(r.path, r.status) for r in cvm.requests] == [
        (f"{DADOS_PATH}/inf_diario_fi_201904.zip", 404),
        (f"{DADOS_PATH}/{HIST_2019}", 304),
    ]
    assert (april.stored_new_version, april.changed) == (False, True)
    assert (april.member, april.csv_sha256, april.rows) == (
        "inf_diario_fi_201904.csv",
        sha(months[4]),
        data_rows(months[4]),
    )
    assert april.zip_key == march.zip_key
    assert zips_in(lake, "inf_diario_fi_2019") == {f"{sha(body)}.zip": body}
    # The layout is read from each member: May's is (b) in the same archive.
    assert capture(Month(2019, 5)).layout == "b"
    assert state(lake, Month(2019, 4))["csv_sha256"] == sha(months[4])


def test_restating_one_month_of_the_archive_leaves_the_others_unchanged(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    months = {mes: generate_month(MonthSpec(2019, mes, "a", n_funds=10, seed=6)) for mes in (3, 4)}
    cvm.put(HIST_2019, yearly_zip(2019, months))
    capture(Month(2019, 3))
    capture(Month(2019, 4))
    months[4] = restate(months[4], seed=1, change_share=0.1, n_add=1, n_remove=1)
    cvm.put(HIST_2019, yearly_zip(2019, months))

    march = capture(Month(2019, 3))
    april = capture(Month(2019, 4))

    assert (march.stored_new_version, march.changed) == (True, False)
    assert (april.stored_new_version, april.changed) == (False, True)
    assert april.csv_sha256 == sha(months[4])
    assert len(zips_in(lake, "inf_diario_fi_2019")) == 2


def test_single_member_year_gives_the_months_rows(cvm: FakeCvm, capture: Capturer) -> None:
    header = LAYOUT_HEADERS["a"]
    parts = {
        mes: generate_month(MonthSpec(2004, mes, "a", n_funds=2, seed=8)).decode().splitlines()[1:]
        for mes in (1, 2)
    }
    csv = "\n".join([header, *parts[1], *parts[2]]) + "\n"
    cvm.put("HIST/inf_diario_fi_2004.zip", yearly_single_member_zip(2004, csv.encode()))

    result = capture(Month(2004, 2))

    expected = ("\n".join([header, *parts[2]]) + "\n").encode()
    assert (result.member, result.whole_year_member) == ("inf_diario_fi_2004.csv", True)
    assert (result.rows, result.csv_sha256) == (len(parts[2]), sha(expected))


# Not published -------------------------------------------------------------------------------


def test_month_not_published_anywhere(
    cvm: FakeCvm, capture: Capturer, lake: Path, workdir: Path
) -> None:
    with pytest.raises(NotPublishedError) as caught:
        capture(Month(2030, 1))

    message = str(caught.value)
    assert "has not published 2030-01" in message
    assert cvm.url("inf_diario_fi_203001.zip") in message
    assert cvm.url("HIST/inf_diario_fi_2030.zip") in message
    assert [r.status for r in cvm.requests] == [404, 404]
    assert not lake.exists() or list(lake.rglob("*")) == []
    assert list(workdir.iterdir()) == []


def test_html_error_page_is_not_kept_as_a_version(
    cvm: FakeCvm, capture: Capturer, lake: Path
) -> None:
    body = monthly_zip(2024, 1, generate_month(MonthSpec(2024, 1, "a", n_funds=2)))
    cvm.put(MONTHLY, body)
    capture(JAN_2024)
    cvm.html_error_next(MONTHLY)

    with pytest.raises(ArchiveError, match=r"not a zip"):
        capture(JAN_2024)

    assert zips_in(lake, "inf_diario_fi_202401") == {f"{sha(body)}.zip": body}

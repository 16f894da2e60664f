"""The fake CVM must look like CVM: exact dialect, valid CNPJs, the dirt it promises, HTTP."""

from __future__ import annotations

import collections
import hashlib
import http.client
import io
import itertools
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from cvm210_assets.fake_cvm import (
    DADOS_PATH,
    DIRT_KINDS,
    LAYOUT_HEADERS,
    FakeCvm,
    MonthSpec,
    business_days,
    cnpj_check_digits,
    format_cnpj,
    generate,
    generate_month,
    make_cnpj,
    monthly_zip,
    real_csv,
    restate,
    with_real_rows,
    yearly_single_member_zip,
    yearly_zip,
)
from cvm210_assets.fake_cvm.demo_site import REGISTRY_PATH, publish_demo

WIDTH = {"a": 8, "b": 9, "c": 10}
DATE_COLUMN = {"a": 1, "b": 2, "c": 3}
CNPJ_COLUMN = {"a": 0, "b": 1, "c": 1}
CNPJ_PATTERN = re.compile(r"\d\d\.\d{3}\.\d{3}/\d{4}-\d\d")
MONEY = re.compile(r"\d+\.\d\d")
QUOTA = re.compile(r"\d+\.\d{12}")
REAL_SHA256 = {
    "inf_diario_fi_201901.csv": "b8c886095723ac9bd9489e28c4866be695d53069c68f91152b89a23c5fe111a5",
    "inf_diario_fi_201911.csv": "e4288e52bbf98911d48724b2a81866ffd2ff3fa9fcb52602d0d83c096ad145f0",
    "inf_diario_fi_202403.csv": "bab8d1790a8357ac9d73cb2e1e0a00a992624887febb99532780454b1202c97b",
    "inf_diario_fi_202501.csv": "ed72311e540702b620de5d9075d04629ac7cb3ca48811164d18486fc356f98ed",
}


def rows_of(csv: bytes) -> tuple[str, list[list[str]]]:
    """Header and split data rows, decoded as CVM encodes them."""
    lines = csv.decode("latin-1").splitlines()
    return lines[0], [line.split(";") for line in lines[1:]]


def key_of(fields: list[str], layout: str) -> tuple[str, ...]:
    d = DATE_COLUMN[layout]
    if layout == "c":
        return (fields[1], fields[2], fields[d])
    return (fields[CNPJ_COLUMN[layout]], fields[d])


def valid_cnpj(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return (
        CNPJ_PATTERN.fullmatch(text) is not None and cnpj_check_digits(digits[:12]) == digits[12:]
    )


# CNPJ ------------------------------------------------------------------------------------------


def test_check_digits_of_real_cnpjs() -> None:
    assert cnpj_check_digits("000170240001") == "53"
    assert make_cnpj("000683050001") == "00068305000135"
    assert format_cnpj(make_cnpj("000170240001")) == "00.017.024/0001-53"
    assert format_cnpj("00068305000135") == "00.068.305/0001-35"
    real_layouts = {"201901": "a", "201911": "a", "202403": "b", "202501": "c"}
    for month, layout in real_layouts.items():
        header, rows = rows_of(real_csv(f"inf_diario_fi_{month}.csv"))
        assert header == LAYOUT_HEADERS[layout]
        assert all(valid_cnpj(r[CNPJ_COLUMN[layout]]) for r in rows)


@pytest.mark.parametrize("bad", ["00017024000", "0001702400011", "00017024000a"])
def test_check_digits_reject_malformed_bases(bad: str) -> None:
    with pytest.raises(ValueError):
        cnpj_check_digits(bad)


# Calendar and layouts ---------------------------------------------------------------------------


def test_business_days_skip_weekends_and_fixed_holidays() -> None:
    jan = business_days(2025, 1)
    assert len(jan) == 22
    assert date(2025, 1, 1) not in jan
    assert all(d.weekday() < 5 for d in jan)
    nov = business_days(2019, 11)
    assert date(2019, 11, 15) not in nov  # a Friday, Proclamação da República
    assert len(nov) == 20
    assert len(business_days(2024, 3)) == 21
    real_dates = {r[1] for r in rows_of(real_csv("inf_diario_fi_201911.csv"))[1]}
    assert real_dates <= {f"{d:%Y-%m-%d}" for d in nov}


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_header_and_row_shape_per_layout(layout: str) -> None:
    csv = generate_month(MonthSpec(2025, 1, layout, n_funds=120, subclass_share=0.1))
    header, rows = rows_of(csv)
    assert header == LAYOUT_HEADERS[layout]
    assert csv.startswith(LAYOUT_HEADERS[layout].encode() + b"\n")
    assert csv.endswith(b"\n") and b"\r" not in csv
    d = DATE_COLUMN[layout]
    for r in rows:
        assert len(r) == WIDTH[layout]
        assert valid_cnpj(r[CNPJ_COLUMN[layout]])
        assert r[d].startswith("2025-01-")
        assert all(MONEY.fullmatch(r[i]) for i in (d + 1, d + 3, d + 4, d + 5))
        assert QUOTA.fullmatch(r[d + 2]) and 1 <= float(r[d + 2]) <= 10_000
        assert 1e5 <= float(r[d + 3]) <= 1e10
        assert 1 <= int(r[d + 6]) <= 100_000
    types = {r[0] for r in rows}
    if layout == "b":
        assert "FI" in types and types <= {"FI", "FIF", "FIDC", "FII", "FIP", "FACFIF", "FAPI"}
    if layout == "c":
        assert "FI" in types and types <= {"FI", "CLASSES - FIF", "FAPI", "FIDC"}
    keys = [key_of(r, layout) for r in rows]
    assert len(keys) == len(set(keys))


def test_rows_per_fund_and_realistic_dynamics() -> None:
    csv = generate_month(MonthSpec(2024, 3, "b", n_funds=400, seed=7))
    _, rows = rows_of(csv)
    per_fund = collections.Counter(r[1] for r in rows)
    n_days = len(business_days(2024, 3))
    assert len(per_fund) == 400
    assert max(per_fund.values()) == n_days
    assert min(per_fund.values()) < n_days  # some funds start or stop within the month
    flows = [r[6] for r in rows] + [r[7] for r in rows]
    zero_share = flows.count("0.00") / len(flows)
    assert 0.7 < zero_share < 0.99
    quotas: dict[str, list[float]] = collections.defaultdict(list)
    for r in rows:
        quotas[r[1]].append(float(r[4]))
        assert float(r[6]) <= 0.05 * float(r[5]) and float(r[7]) <= 0.05 * float(r[5])
        assert abs(float(r[3]) / float(r[5]) - 1) < 0.07
    moves = [abs(q[i + 1] / q[i] - 1) for q in quotas.values() for i in range(len(q) - 1)]
    assert max(moves) < 0.15 and sum(moves) > 0


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_funds_reconcile_to_the_cent(layout: str) -> None:
    """Each report's net assets are the previous report's grown by the quota's return (half-up
    to the cent) plus the day's inflow minus its redemptions: the flow reconciliation's
    residual is zero for every generated fund (docs/analytics.md)."""
    csv = generate_month(MonthSpec(2025, 1, layout, n_funds=300, seed=11, subclass_share=0.2))
    _, rows = rows_of(csv)
    at = DATE_COLUMN[layout]
    series: dict[tuple[str, ...], list[list[str]]] = collections.defaultdict(list)
    for r in rows:
        series[tuple(r[:at])].append(r[at:])
    pairs = 0
    for days in series.values():
        for before, after in itertools.pairwise(days):
            pl, quota = Decimal(before[3]), Decimal(before[2])
            earned = (pl * (Decimal(after[2]) / quota - 1)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            flow = Decimal(after[4]) - Decimal(after[5])
            assert Decimal(after[3]) == pl + earned + flow, (before, after)
            pairs += 1
    assert pairs > 5000


def test_generation_is_deterministic_and_seeded() -> None:
    spec = MonthSpec(2025, 1, "c", n_funds=50, seed=3, dirt=True)
    assert generate_month(spec) == generate_month(spec)
    assert generate_month(spec) != generate_month(MonthSpec(2025, 1, "c", n_funds=50, seed=4))


def test_funds_are_stable_across_months_of_one_seed() -> None:
    jan = {r[0] for r in rows_of(generate_month(MonthSpec(2019, 1, "a", n_funds=30)))[1]}
    feb = {r[0] for r in rows_of(generate_month(MonthSpec(2019, 2, "a", n_funds=30)))[1]}
    assert len(jan & feb) >= 25


def test_crlf_line_ending() -> None:
    csv = generate_month(MonthSpec(2025, 1, "a", n_funds=10, line_ending="\r\n"))
    lines = csv.split(b"\r\n")
    assert lines[0].decode() == LAYOUT_HEADERS["a"]
    assert lines[-1] == b"" and all(b"\n" not in line for line in lines)


def test_layout_c_subclasses() -> None:
    _, rows = rows_of(generate_month(MonthSpec(2025, 1, "c", n_funds=1000, subclass_share=0.05)))
    with_subclass = [r for r in rows if r[2]]
    assert 0.03 < len(with_subclass) / len(rows) < 0.07
    subclasses: dict[str, set[str]] = collections.defaultdict(set)
    for r in with_subclass:
        assert re.fullmatch(r"[A-Z0-9]{7}", r[2])
        subclasses[r[1]].add(r[2])
    assert {len(s) for s in subclasses.values()} <= {2, 3}
    assert not any(r[1] in subclasses for r in rows if not r[2])  # a class has only subclasses
    per_day = collections.Counter((r[1], r[3]) for r in with_subclass)
    assert max(per_day.values()) in (2, 3)
    no_subclasses = MonthSpec(2025, 1, "c", n_funds=200, subclass_share=0.0)
    assert all(r[2] == "" for r in rows_of(generate_month(no_subclasses))[1])


# Dirt ------------------------------------------------------------------------------------------


def detect_dirt(csv: bytes, layout: str, ano: int, mes: int) -> dict[str, int]:
    """Count each dirt kind by reading the CSV, independently of the generator's report."""
    lines = csv.decode("latin-1").splitlines()[1:]
    width, d, c = WIDTH[layout], DATE_COLUMN[layout], CNPJ_COLUMN[layout]
    found = dict.fromkeys(DIRT_KINDS, 0)
    found["exact_duplicate"] = sum(n - 1 for n in collections.Counter(lines).values())
    by_key: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    for line in lines:
        f = line.split(";")
        if len(f) == width + 1:
            found["extra_field"] += 1
            continue
        if len(f) == width - 1:
            found["missing_field"] += 1
            continue
        assert len(f) == width, line
        by_key[key_of(f, layout)].add(line)
        found["zero_pl"] += f[d + 3] == "0.00"
        found["negative_pl"] += f[d + 3].startswith("-")
        found["empty_cnpj"] += f[c] == ""
        found["empty_date"] += f[d] == ""
        found["date_outside_month"] += f[d] != "" and not f[d].startswith(f"{ano}-{mes:02d}-")
        found["non_numeric"] += f[d + 2] == "abc"
        found["too_many_decimals"] += re.fullmatch(r"\d+\.\d{3,}", f[d + 4]) is not None
        found["bad_check_digits"] += bool(CNPJ_PATTERN.fullmatch(f[c])) and not valid_cnpj(f[c])
        found["absurd_quota"] += f[d + 2] == "99999999999.000000000000"
        found["latin1_text"] += layout != "a" and f[0] == "FUNDAÇÃO"
        found["empty_nr_cotst"] += f[d + 6] == ""
    found["duplicate_key"] = sum(len(v) - 1 for v in by_key.values())
    return found


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_dirt_adds_every_kind_once_at_varied_places(layout: str) -> None:
    spec = MonthSpec(2025, 12, layout, n_funds=200, seed=11, dirt=True, subclass_share=0.05)
    clean = generate_month(MonthSpec(2025, 12, layout, n_funds=200, seed=11, subclass_share=0.05))
    result = generate(spec)
    kinds = [k for k in DIRT_KINDS if layout != "a" or k != "latin1_text"]
    assert detect_dirt(clean, layout, 2025, 12) == dict.fromkeys(DIRT_KINDS, 0)
    found = detect_dirt(result.csv, layout, 2025, 12)
    assert found == {**dict.fromkeys(DIRT_KINDS, 0), **dict.fromkeys(kinds, 1)}
    assert sorted(result.dirt_lines) == sorted(kinds)
    assert result.csv.count(b"\n") == clean.count(b"\n") + 2  # two rows added, others replaced
    lines = result.csv.decode("latin-1").splitlines()
    assert "2026-01-01" in lines[result.dirt_lines["date_outside_month"][0] - 1]
    assert (
        lines[result.dirt_lines["exact_duplicate"][0] - 1]
        == lines[result.dirt_lines["exact_duplicate"][0] - 2]
    )
    positions = sorted(n for ns in result.dirt_lines.values() for n in ns)
    assert positions[0] < len(lines) / 3 and positions[-1] > len(lines) / 2
    if layout != "a":
        assert b"\nFUNDA\xc7\xc3O;" in result.csv  # latin-1 bytes, not UTF-8


# Restatements ----------------------------------------------------------------------------------


def test_restate_changes_adds_and_removes_exactly() -> None:
    csv = generate_month(MonthSpec(2025, 1, "c", n_funds=150, subclass_share=0.05))
    new = restate(csv, seed=5, change_share=0.02, n_add=7, n_remove=4)
    assert new == restate(csv, seed=5, change_share=0.02, n_add=7, n_remove=4)
    header, old_rows = rows_of(csv)
    new_header, new_rows = rows_of(new)
    assert new_header == header
    old = {key_of(r, "c"): r for r in old_rows}
    now = {key_of(r, "c"): r for r in new_rows}
    assert len(now) == len(new_rows)  # keys stay unique
    changed = [k for k in old.keys() & now.keys() if old[k] != now[k]]
    assert len(changed) == round(0.02 * len(old_rows))
    assert len(now.keys() - old.keys()) == 7
    assert len(old.keys() - now.keys()) == 4
    for k in changed:
        before, after = old[k], now[k]
        assert before[6] != after[6] and before[5] != after[5] and before[7] != after[7]
        assert MONEY.fullmatch(after[6]) and QUOTA.fullmatch(after[5])
    old_cnpjs = {r[1] for r in old_rows}
    added = [now[k] for k in now.keys() - old.keys()]
    assert all(valid_cnpj(r[1]) and r[1] not in old_cnpjs and r[2] == "" for r in added)


def test_restate_keeps_dirt_and_line_ending() -> None:
    spec = MonthSpec(2024, 3, "b", n_funds=60, dirt=True, line_ending="\r\n")
    csv = generate_month(spec)
    new = restate(csv, seed=1, n_add=3, n_remove=2)
    assert new.count(b"\r\n") == csv.count(b"\r\n") + 1
    assert new.count(b"\n") == new.count(b"\r\n")
    assert detect_dirt(new, "b", 2024, 3) == detect_dirt(csv, "b", 2024, 3)


# Zips and real rows ----------------------------------------------------------------------------


def test_zip_members_and_compression() -> None:
    jan = generate_month(MonthSpec(2019, 1, "a", n_funds=5))
    feb = generate_month(MonthSpec(2019, 2, "a", n_funds=5))
    with zipfile.ZipFile(io.BytesIO(monthly_zip(2024, 3, jan))) as z:
        assert z.namelist() == ["inf_diario_fi_202403.csv"]
        assert z.read("inf_diario_fi_202403.csv") == jan
        assert z.infolist()[0].compress_type == zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(io.BytesIO(yearly_zip(2019, {2: feb, 1: jan}))) as z:
        assert z.namelist() == ["inf_diario_fi_201901.csv", "inf_diario_fi_201902.csv"]
        assert z.read("inf_diario_fi_201902.csv") == feb
    with zipfile.ZipFile(io.BytesIO(yearly_single_member_zip(2003, jan + feb))) as z:
        assert z.namelist() == ["inf_diario_fi_2003.csv"]
    assert monthly_zip(2024, 3, jan) == monthly_zip(2024, 3, jan)  # stable bytes, stable ETag


def test_real_rows_are_packaged_and_merged() -> None:
    for name, digest in REAL_SHA256.items():  # byte-exact copies of CVM's own rows
        assert hashlib.sha256(real_csv(name)).hexdigest() == digest
    real = real_csv("inf_diario_fi_201901.csv")
    assert b"00.068.305/0001-35;2019-01-02;61866843.53;25.972280000000;" in real
    csv = generate_month(MonthSpec(2019, 1, "a", n_funds=20))
    merged = with_real_rows(csv, real)
    _, rows = rows_of(merged)
    assert len(rows) == len(rows_of(csv)[1]) + 5
    assert rows[:5] == rows_of(real)[1]
    crlf = generate_month(MonthSpec(2019, 1, "a", n_funds=20, line_ending="\r\n"))
    assert with_real_rows(crlf, real).count(b"\n") == with_real_rows(crlf, real).count(b"\r\n")
    with pytest.raises(ValueError, match="headers differ"):
        with_real_rows(csv, real_csv("inf_diario_fi_202403.csv"))
    c = generate_month(MonthSpec(2025, 1, "c", n_funds=20))
    assert b"FI;00.017.024/0001-53;;2025-01-02;" in with_real_rows(
        c, real_csv("inf_diario_fi_202501.csv")
    )


# Server ----------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeCvm]:
    with FakeCvm() as server:
        yield server


def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, without urllib turning 304/404 into exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def connection(fake: FakeCvm, path: str, method: str = "GET") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request(method, f"{DADOS_PATH}/{path}")
    return conn.getresponse()


MONTH = "inf_diario_fi_202401.zip"


def test_get_head_404_and_headers(fake: FakeCvm) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/dados/FI/DOC/INF_DIARIO/DADOS"
    csv = generate_month(MonthSpec(2024, 1, "b", n_funds=400))
    modified = datetime(2024, 2, 1, 11, 0, tzinfo=timezone.utc)
    assert fake.publish_month(2024, 1, csv, modified) == MONTH
    body = monthly_zip(2024, 1, csv)
    assert len(body) > 64 * 1024  # several chunks

    status, headers, got = get(f"{fake.base_url}/{MONTH}")
    assert (status, got) == (200, body)
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Length"] == str(len(body))
    assert headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert parsedate_to_datetime(headers["Last-Modified"]) == modified

    status, head_headers, got = get(f"{fake.base_url}/{MONTH}", method="HEAD")
    assert (status, got) == (200, b"")
    assert head_headers["Content-Length"] == str(len(body))
    assert head_headers["ETag"] == headers["ETag"]

    assert get(f"{fake.base_url}/inf_diario_fi_209901.zip")[0] == 404
    assert get(f"{fake.base_url}/HIST/inf_diario_fi_2019.zip")[0] == 404
    assert fake.url(MONTH) == f"{fake.base_url}/{MONTH}"


def test_conditional_requests(fake: FakeCvm) -> None:
    fake.put(MONTH, b"v1", datetime(2024, 2, 1, 11, 0, tzinfo=timezone.utc))
    _, headers, _ = get(fake.url(MONTH))
    etag, modified = headers["ETag"], headers["Last-Modified"]
    status, h, body = get(fake.url(MONTH), {"If-None-Match": etag})
    assert (status, body, h["ETag"]) == (304, b"", etag)
    assert get(fake.url(MONTH), {"If-None-Match": '"other", ' + etag})[0] == 304
    assert get(fake.url(MONTH), {"If-Modified-Since": modified})[0] == 304
    earlier = format_datetime(datetime(2024, 1, 31, tzinfo=timezone.utc), usegmt=True)
    assert get(fake.url(MONTH), {"If-Modified-Since": earlier})[0] == 200
    # If-None-Match wins over If-Modified-Since.
    assert (
        get(fake.url(MONTH), {"If-None-Match": '"other"', "If-Modified-Since": modified})[0] == 200
    )
    assert get(fake.url(MONTH), {"If-None-Match": etag}, method="HEAD")[0] == 304


def test_republish_and_remove(fake: FakeCvm) -> None:
    fake.put(MONTH, b"v1")
    _, first, _ = get(fake.url(MONTH))
    fake.put(MONTH, b"v2")  # a restatement within the same second still looks newer
    status, second, body = get(fake.url(MONTH), {"If-None-Match": first["ETag"]})
    assert (status, body) == (200, b"v2")
    assert second["ETag"] != first["ETag"]
    later = parsedate_to_datetime(second["Last-Modified"])
    assert later > parsedate_to_datetime(first["Last-Modified"])
    fake.remove(MONTH)
    assert get(fake.url(MONTH))[0] == 404


def test_directory_listing(fake: FakeCvm) -> None:
    fake.put(MONTH, b"x" * 2000)
    fake.publish_year(2019, {1: b"a", 2: b"b"})
    fake.publish_year_single_member(2004, b"c")
    status, headers, page = get(f"{fake.base_url}/")
    text = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f"Index of {DADOS_PATH}" in text
    assert '<a href="HIST/">HIST/</a>' in text
    assert re.search(rf'<a href="{MONTH}">{MONTH}</a>\s+\d{{4}}-\d\d-\d\d \d\d:\d\d\s+2\.0K', text)
    assert "inf_diario_fi_2019.zip" not in text
    hist = get(f"{fake.base_url}/HIST/")[2].decode()
    assert "inf_diario_fi_2019.zip" in hist and "inf_diario_fi_2004.zip" in hist
    assert MONTH not in hist
    status, headers, _ = get(f"{fake.base_url}/HIST", method="HEAD")
    assert status == 200  # urllib followed Apache's 301 to HIST/
    assert fake.requests[-2].status == 301
    assert get(f"http://127.0.0.1:{fake.port}/dados/nada/")[0] == 404


def test_fail_next_in_order_then_recovers(fake: FakeCvm) -> None:
    fake.put(MONTH, b"zip")
    fake.fail_next(MONTH, 503, 500)
    assert [get(fake.url(MONTH))[0] for _ in range(3)] == [503, 500, 200]
    fake.fail_next("inf_diario_fi_209901.zip", 503)
    assert get(fake.url("inf_diario_fi_209901.zip"))[0] == 503
    assert get(fake.url("inf_diario_fi_209901.zip"))[0] == 404


def test_truncate_next(fake: FakeCvm) -> None:
    body = bytes(range(256)) * 1000
    fake.put(MONTH, body)
    fake.truncate_next(MONTH)
    assert get(fake.url(MONTH), method="HEAD")[0] == 200  # a HEAD does not use up the fault
    response = connection(fake, MONTH)
    assert response.status == 200 and response.getheader("Content-Length") == str(len(body))
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert len(caught.value.partial) == len(body) // 2
    assert get(fake.url(MONTH))[2] == body


def test_reset_next(fake: FakeCvm) -> None:
    body = bytes(range(256)) * 1000
    fake.put(MONTH, body)
    fake.reset_next(MONTH)
    response = connection(fake, MONTH)
    assert response.status == 200
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        response.read()
    assert get(fake.url(MONTH))[2] == body


def test_delay_next(fake: FakeCvm) -> None:
    fake.put(MONTH, b"late")
    fake.delay_next(MONTH, 1.0)
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=0.3)
    conn.request("GET", f"{DADOS_PATH}/{MONTH}")
    response = conn.getresponse()  # headers come at once, the body waits
    assert response.status == 200
    with pytest.raises(TimeoutError):
        response.read()
    conn.close()
    start = time.monotonic()
    assert get(fake.url(MONTH))[2] == b"late"
    assert time.monotonic() - start < 0.9  # the delay (1 s) was used up


def test_delayed_response_does_not_hold_up_stop() -> None:
    server = FakeCvm()
    server.start()
    server.put(MONTH, b"late")
    server.delay_next(MONTH, 30)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"{DADOS_PATH}/{MONTH}")
    assert conn.getresponse().status == 200
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2
    conn.close()


def test_html_error_next(fake: FakeCvm) -> None:
    fake.put(MONTH, b"PK-zip")
    fake.html_error_next(MONTH)
    status, headers, body = get(fake.url(MONTH))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<!DOCTYPE html>") and not zipfile.is_zipfile(io.BytesIO(body))
    assert get(fake.url(MONTH))[2] == b"PK-zip"


def test_redirect_next(fake: FakeCvm) -> None:
    fake.put(MONTH, b"old")
    fake.put("HIST/inf_diario_fi_2024.zip", b"moved")
    fake.redirect_next(MONTH, fake.url("HIST/inf_diario_fi_2024.zip"))
    response = connection(fake, MONTH)
    assert response.status == 302
    assert response.getheader("Location") == fake.url("HIST/inf_diario_fi_2024.zip")
    fake.redirect_next(MONTH, fake.url("HIST/inf_diario_fi_2024.zip"))
    assert get(fake.url(MONTH))[2] == b"moved"  # urllib follows it
    assert get(fake.url(MONTH))[2] == b"old"


def test_request_log_counts(fake: FakeCvm) -> None:
    fake.put(MONTH, b"z")
    get(fake.url(MONTH))
    get(fake.url(MONTH), method="HEAD")
    get(fake.url(MONTH))
    get(fake.url("inf_diario_fi_202402.zip"))
    assert fake.count("GET", MONTH) == 2
    assert fake.count("head", MONTH) == 1
    assert fake.count("GET", ".zip") == 3
    assert [(r.method, r.status) for r in fake.requests] == [
        ("GET", 200),
        ("HEAD", 200),
        ("GET", 200),
        ("GET", 404),
    ]
    assert fake.requests[0].path == f"{DADOS_PATH}/{MONTH}"
    fake.reset_log()
    assert fake.requests == [] and fake.count("GET", MONTH) == 0


def test_put_outside_dados_and_fixed_port() -> None:
    with FakeCvm() as first:
        port = first.port
    with FakeCvm(port=port) as server:
        assert server.port == port
        server.put("/dados/FI/CAD/DADOS/registro_fundo_classe.zip", b"cad")
        url = f"http://127.0.0.1:{port}/dados/FI/CAD/DADOS/registro_fundo_classe.zip"
        assert get(url)[2] == b"cad"


# Demo site -------------------------------------------------------------------------------------


def test_publish_demo(fake: FakeCvm) -> None:
    published = publish_demo(fake, n_funds=40)
    assert sorted(published) == [f"2019-{m:02d}" for m in range(1, 13)] + ["2024-03", "2025-01"]
    assert published["2019-05"]["path"] == "HIST/inf_diario_fi_2019.zip"
    assert published["2025-01"] == {
        "path": "inf_diario_fi_202501.zip",
        "member": "inf_diario_fi_202501.csv",
        "layout": "c",
        "dirt": True,
        "rows": published["2025-01"]["rows"],
    }
    status, _, body = get(fake.url("HIST/inf_diario_fi_2019.zip"))
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.namelist() == [f"inf_diario_fi_2019{m:02d}.csv" for m in range(1, 13)]
        nov = z.read("inf_diario_fi_201911.csv")
        assert nov.decode().splitlines()[0] == LAYOUT_HEADERS["a"]
        assert real_csv("inf_diario_fi_201911.csv").split(b"\n", 1)[1] in nov
        assert len(rows_of(nov)[1]) == published["2019-11"]["rows"]
    with zipfile.ZipFile(io.BytesIO(get(fake.url("inf_diario_fi_202403.zip"))[2])) as z:
        march = z.read("inf_diario_fi_202403.csv")
        assert rows_of(march)[0] == LAYOUT_HEADERS["b"]
        assert b"FI;00.017.024/0001-53;2024-03-01;1104983.25;34.795001;" in march
        assert b"FUNDA\xc7\xc3O" in march
    with zipfile.ZipFile(io.BytesIO(get(fake.url("inf_diario_fi_202501.zip"))[2])) as z:
        jan = z.read("inf_diario_fi_202501.csv")
        assert rows_of(jan)[0] == LAYOUT_HEADERS["c"]
        assert any(r[2] for r in rows_of(jan)[1] if len(r) == 10)
        assert b"FI;00.017.024/0001-53;;2025-01-02;" in jan
    assert get(fake.url("inf_diario_fi_202402.zip"))[0] == 404


def test_demo_site_serves_the_registry_where_the_registry_asset_looks(fake: FakeCvm) -> None:
    """The README's offline CVM serves what fund_registry reads: the URL derived from
    CVM210_SOURCE_URL (the default of the UI's instructions) answers the registry's zip."""
    from cvm210_assets.settings import Settings
    from cvm210_assets.source.registry import cad_fi_url, registry_url

    publish_demo(fake, n_funds=20)
    settings = Settings.from_env({"CVM210_SOURCE_URL": fake.base_url})
    zip_url = registry_url(settings.source_url, settings.registry_url)
    assert zip_url == fake.url(REGISTRY_PATH)
    status, _, body = get(zip_url)
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert sorted(z.namelist()) == [
            "registro_classe.csv",
            "registro_fundo.csv",
            "registro_subclasse.csv",
        ]
        assert len(rows_of(z.read("registro_classe.csv"))[1]) > 10
    status, _, cad_fi = get(cad_fi_url(zip_url))
    assert status == 200 and cad_fi.startswith(b"TP_FUNDO;CNPJ_FUNDO;")


def test_module_entry_point_serves_demo() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cvm210_assets.fake_cvm", "--port", "0", "--funds", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = ""
        deadline = time.monotonic() + 30
        while not base_url and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("export CVM210_SOURCE_URL="):
                base_url = line.strip().partition("=")[2]
        assert base_url.endswith(DADOS_PATH)
        assert get(f"{base_url}/inf_diario_fi_202501.zip")[0] == 200
        assert get(base_url.replace(DADOS_PATH, REGISTRY_PATH))[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

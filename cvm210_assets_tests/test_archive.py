"""Finding the month's member in CVM's zips and extracting it: exact bytes, filters and refusals."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import zipfile
from pathlib import Path

import pytest

from cvm210_assets.fake_cvm.generator import (
    LAYOUT_HEADERS,
    MonthSpec,
    generate_month,
    monthly_zip,
    yearly_single_member_zip,
    yearly_zip,
)
from cvm210_assets.partitions import Month
from cvm210_assets.source import archive
from cvm210_assets.source.archive import (
    ArchiveError,
    MonthMember,
    extract_month,
    find_month_member,
)
from cvm210_assets.source.layouts import UnknownLayoutError
from cvm210_assets_tests.real_files import REAL_FILES_DIR

REAL_DIR = REAL_FILES_DIR
JAN_2024 = Month(2024, 1)


def write(tmp_path: Path, data: bytes, name: str = "file.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compression)
    return buffer.getvalue()


def data_rows(csv: bytes) -> int:
    """Non-empty lines after the header, counted independently of the code under test."""
    return sum(1 for line in csv.splitlines()[1:] if line)


def month_csv(ano: int, mes: int, layout: str = "a") -> bytes:
    return generate_month(MonthSpec(ano, mes, layout, n_funds=3, seed=mes))


# find_month_member ---------------------------------------------------------------------------


def test_monthly_zip_member(tmp_path: Path) -> None:
    path = write(tmp_path, monthly_zip(2024, 1, month_csv(2024, 1, "c")))

    member = find_month_member(path, JAN_2024, "inf_diario_fi_202401.zip")

    assert member == MonthMember(name="inf_diario_fi_202401.csv", whole_year=False)


def test_yearly_zip_picks_the_months_member_not_the_first(tmp_path: Path) -> None:
    months = {mes: month_csv(2019, mes) for mes in range(1, 13)}
    path = write(tmp_path, yearly_zip(2019, months))

    for mes in (1, 7, 12):
        member = find_month_member(path, Month(2019, mes), "HIST/inf_diario_fi_2019.zip")
        assert member == MonthMember(name=f"inf_diario_fi_2019{mes:02d}.csv", whole_year=False)


def test_yearly_single_member_is_whole_year(tmp_path: Path) -> None:
    path = write(tmp_path, yearly_single_member_zip(2004, month_csv(2004, 3)))

    member = find_month_member(path, Month(2004, 3), "HIST/inf_diario_fi_2004.zip")

    assert member == MonthMember(name="inf_diario_fi_2004.csv", whole_year=True)


def test_monthly_member_wins_over_a_yearly_one(tmp_path: Path) -> None:
    csv = month_csv(2019, 5)
    path = write(tmp_path, zip_of({"inf_diario_fi_2019.csv": csv, "inf_diario_fi_201905.csv": csv}))

    assert find_month_member(path, Month(2019, 5), "x.zip") == MonthMember(
        "inf_diario_fi_201905.csv", whole_year=False
    )


def test_member_name_case_is_ignored_and_kept(tmp_path: Path) -> None:
    path = write(tmp_path, zip_of({"INF_DIARIO_FI_202401.CSV": month_csv(2024, 1)}))

    member = find_month_member(path, JAN_2024, "x.zip")

    assert member.name == "INF_DIARIO_FI_202401.CSV"


def test_no_member_for_the_month_lists_the_members(tmp_path: Path) -> None:
    path = write(tmp_path, yearly_zip(2019, {1: month_csv(2019, 1), 2: month_csv(2019, 2)}))

    with pytest.raises(ArchiveError) as caught:
        find_month_member(path, Month(2019, 3), "HIST/inf_diario_fi_2019.zip")

    message = str(caught.value)
    assert message.startswith("HIST/inf_diario_fi_2019.zip: no member for 2019-03")
    assert "inf_diario_fi_201903.csv or inf_diario_fi_2019.csv" in message
    assert message.endswith("members: inf_diario_fi_201901.csv, inf_diario_fi_201902.csv")


@pytest.mark.parametrize(
    "name", ["../x.csv", "/abs.csv", "../inf_diario_fi_202401.csv", "/inf_diario_fi_202401.csv"]
)
def test_path_traversal_members_are_never_picked(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, zip_of({name: month_csv(2024, 1)}))
    assert zipfile.ZipFile(path).namelist() == [name]  # the zip really holds that name

    with pytest.raises(ArchiveError) as caught:
        find_month_member(path, JAN_2024, "evil.zip")

    assert str(caught.value).endswith(f"members: {name}")


def test_html_page_is_not_a_zip(tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><body><h1>Servico indisponivel</h1></body></html>"
    path = write(tmp_path, page, "inf_diario_fi_202401.zip")

    with pytest.raises(ArchiveError, match=r"^inf_diario_fi_202401\.zip: not a zip"):
        find_month_member(path, JAN_2024, "inf_diario_fi_202401.zip")
    with pytest.raises(ArchiveError, match=r"not a zip"):
        extract_month(
            path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o", "s"
        )


def test_zip_signature_with_garbage_after_it_is_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, b"PK\x03\x04" + b"\x00" * 200)

    with pytest.raises(ArchiveError, match=r"^g\.zip: not a readable zip"):
        find_month_member(path, JAN_2024, "g.zip")


# Corruption ----------------------------------------------------------------------------------


def _data_offset(data: bytes, member: str) -> int:
    """Where the member's (compressed) data starts, from its local file header."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_length + extra_length


def test_flipped_byte_in_stored_member_fails_its_crc(tmp_path: Path) -> None:
    csv = month_csv(2024, 1)
    name = "inf_diario_fi_202401.csv"
    data = bytearray(zip_of({name: csv}, zipfile.ZIP_STORED))
    start = _data_offset(bytes(data), name)
    assert data[start : start + len(csv)] == csv
    data[start + len(csv) - 10] ^= 0x01  # a digit in the last row: the header still parses
    path = write(tmp_path, bytes(data))

    with pytest.raises(ArchiveError) as caught:
        extract_month(path, MonthMember(name, False), JAN_2024, tmp_path / "out.csv", "src.zip")

    message = str(caught.value)
    assert message.startswith(f"src.zip!{name}: corrupt member")
    assert "CRC" in message


def test_wrong_crc_of_deflated_member_is_refused(tmp_path: Path) -> None:
    csv = month_csv(2024, 1)
    name = "inf_diario_fi_202401.csv"
    data = bytearray(monthly_zip(2024, 1, csv))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    # The CRC-32 field of the local header (offset 14) and of the central directory (16).
    central = bytes(data).index(b"PK\x01\x02")
    data[info.header_offset + 14] ^= 0xFF
    data[central + 16] ^= 0xFF
    path = write(tmp_path, bytes(data))

    with pytest.raises(ArchiveError, match=r"CRC") as caught:
        extract_month(path, MonthMember(name, False), JAN_2024, tmp_path / "out.csv", "src.zip")

    assert f"src.zip!{name}" in str(caught.value)


def test_corrupt_deflate_stream_is_an_archive_error(tmp_path: Path) -> None:
    csv = month_csv(2024, 1)
    name = "inf_diario_fi_202401.csv"
    data = bytearray(monthly_zip(2024, 1, csv))
    start = _data_offset(bytes(data), name)
    data[start] |= 0b110  # first block's BTYPE bits set to 11: a reserved, invalid block type
    path = write(tmp_path, bytes(data))

    with pytest.raises(ArchiveError, match=r"src\.zip!inf_diario_fi_202401\.csv"):
        extract_month(path, MonthMember(name, False), JAN_2024, tmp_path / "out.csv", "src.zip")


# extract_month: monthly members --------------------------------------------------------------


@pytest.mark.parametrize("line_ending", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_monthly_member_is_copied_byte_for_byte(
    tmp_path: Path, layout: str, line_ending: str
) -> None:
    csv = generate_month(MonthSpec(2024, 1, layout, n_funds=4, dirt=True, line_ending=line_ending))
    path = write(tmp_path, monthly_zip(2024, 1, csv))
    member = find_month_member(path, JAN_2024, "m.zip")
    dest = tmp_path / "out.csv"

    extracted = extract_month(path, member, JAN_2024, dest, "m.zip")

    assert dest.read_bytes() == csv
    assert extracted.path == dest
    assert extracted.member == "inf_diario_fi_202401.csv"
    assert extracted.sha256 == hashlib.sha256(csv).hexdigest()
    assert extracted.bytes == len(csv)
    assert extracted.rows == data_rows(csv)
    assert extracted.rows == csv.count(line_ending.encode()) - 1
    assert extracted.layout.name == layout


def test_rows_ignore_blank_lines_and_count_a_last_line_without_newline(tmp_path: Path) -> None:
    header = LAYOUT_HEADERS["a"].encode()
    row = b"00.017.024/0001-53;2024-01-02;1.00;1.000000000000;1.00;0.00;0.00;1"
    csv = header + b"\r\n" + row + b"\r\n\r\n" + row + b"\r\n" + row  # 3 rows, 1 blank line
    path = write(tmp_path, monthly_zip(2024, 1, csv))

    extracted = extract_month(
        path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o.csv", "m"
    )

    assert extracted.rows == 3
    assert (tmp_path / "o.csv").read_bytes() == csv


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("last", [b"", b"\r", b"\r\n", b"ROW", b"ROW\r", b"\r\r"])
def test_rows_are_counted_alike_across_every_chunk_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, last: bytes
) -> None:
    """Blank lines (LF, CRLF) first, in a run and last, a line of two CRs, a CR inside a line:
    the data lines are the same wherever the member's chunks end."""
    monkeypatch.setattr(archive, "CHUNK_BYTES", chunk)
    header = LAYOUT_HEADERS["a"].encode()
    row = b"00.017.024/0001-53;2024-01-02;1.00;1.000000000000;1.00;0.00;0.00;1"
    body = b"\n\r\n" + row + b"\n\n\n\r\n\r\n" + row + b"\r\r\n" + row[:9] + b"\r" + row + b"\n"
    csv = header + b"\r\n" + body + last.replace(b"ROW", row)
    path = write(tmp_path, monthly_zip(2024, 1, csv))

    extracted = extract_month(
        path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o.csv", "m"
    )

    # row, row + two CRs, the line with a CR inside; and the last line unless it is blank.
    assert extracted.rows == 3 + (last not in (b"", b"\r", b"\r\n"))
    assert (tmp_path / "o.csv").read_bytes() == csv


@pytest.mark.parametrize("whole_year", [False, True])
@pytest.mark.parametrize("where", ["header", "row"])
def test_a_line_without_end_is_refused_not_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, whole_year: bool
) -> None:
    """A member with no line break for megabytes (a bomb of one line) stops with the member's
    name once a line passes MAX_LINE_BYTES, instead of growing in memory: a month's member or
    a whole year's."""
    monkeypatch.setattr(archive, "MAX_LINE_BYTES", 1 << 20)
    header = LAYOUT_HEADERS["a"].encode() + b"\n"
    digits = bytes(48 + i % 10 for i in range(256))  # incompressible, so no zip-bomb ratio
    line = random.Random(1).randbytes(3 << 20).translate(digits)
    csv = (b"" if where == "header" else header) + line
    name = "inf_diario_fi_2024.csv" if whole_year else "inf_diario_fi_202401.csv"
    zipped = yearly_single_member_zip(2024, csv) if whole_year else monthly_zip(2024, 1, csv)
    path = write(tmp_path, zipped)

    with pytest.raises(ArchiveError, match=rf"{name}: a line longer than 1048576"):
        extract_month(path, MonthMember(name, whole_year), JAN_2024, tmp_path / "o.csv", "m")


def test_measuring_into_devnull_gives_the_same_facts(tmp_path: Path) -> None:
    csv = month_csv(2024, 1, "b")
    path = write(tmp_path, monthly_zip(2024, 1, csv))
    member = MonthMember("inf_diario_fi_202401.csv", False)

    measured = extract_month(path, member, JAN_2024, Path(os.devnull), "m")

    assert (measured.sha256, measured.bytes, measured.rows, measured.layout.name) == (
        hashlib.sha256(csv).hexdigest(),
        len(csv),
        data_rows(csv),
        "b",
    )


@pytest.mark.parametrize(
    ("file_name", "layout", "rows"),
    [
        ("inf_diario_fi_201901.csv", "a", 5),
        ("inf_diario_fi_201911.csv", "a", 9),
        ("inf_diario_fi_202403.csv", "b", 4),
        ("inf_diario_fi_202501.csv", "c", 3),
    ],
)
def test_real_cvm_files_extract_unchanged(
    tmp_path: Path, file_name: str, layout: str, rows: int
) -> None:
    csv = (REAL_DIR / file_name).read_bytes()
    month = Month(int(file_name[14:18]), int(file_name[18:20]))
    path = write(tmp_path, monthly_zip(month.ano, month.mes, csv))
    dest = tmp_path / "out.csv"

    extracted = extract_month(path, find_month_member(path, month, "r"), month, dest, "r")

    assert (extracted.layout.name, extracted.rows) == (layout, rows)
    assert dest.read_bytes() == csv


def test_month_member_of_a_twelve_member_archive_is_copied_whole(tmp_path: Path) -> None:
    months = {mes: month_csv(2019, mes) for mes in range(1, 13)}
    path = write(tmp_path, yearly_zip(2019, months))
    july = Month(2019, 7)
    dest = tmp_path / "out.csv"

    extracted = extract_month(path, find_month_member(path, july, "y"), july, dest, "y")

    assert dest.read_bytes() == months[7]
    assert extracted.sha256 == hashlib.sha256(months[7]).hexdigest()
    assert extracted.rows == data_rows(months[7])


# extract_month: whole-year members -----------------------------------------------------------

HEADER_A = LAYOUT_HEADERS["a"]
UNREADABLE_DATE_ROWS = [
    "00.017.024/0001-53;;1.00;1.000000000000;1.00;0.00;0.00;1",
    "00.017.024/0001-53;02/03/2004;1.00;1.000000000000;1.00;0.00;0.00;1",
    "00.017.024/0001-53;2003-12-31;1.00;1.000000000000;1.00;0.00;0.00;1",
    "00.017.024/0001-53",
]


def _year_csv(line_ending: str) -> tuple[bytes, dict[int, list[str]]]:
    """A 2004 yearly CSV (Jan–Mar rows interleaved with rows without a readable date)."""
    by_month: dict[int, list[str]] = {}
    for mes in (1, 2, 3):
        text = generate_month(MonthSpec(2004, mes, "a", n_funds=2, seed=4)).decode("latin-1")
        by_month[mes] = text.splitlines()[1:]
    lines = [*by_month[1][:3], UNREADABLE_DATE_ROWS[0], *by_month[2], UNREADABLE_DATE_ROWS[1]]
    lines += [*by_month[3], *UNREADABLE_DATE_ROWS[2:], *by_month[1][3:]]
    body = line_ending.join([HEADER_A, *lines]) + line_ending
    return body.encode("latin-1"), by_month


@pytest.mark.parametrize("line_ending", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_whole_year_member_keeps_only_the_months_rows(tmp_path: Path, line_ending: str) -> None:
    csv, by_month = _year_csv(line_ending)
    path = write(tmp_path, yearly_single_member_zip(2004, csv))
    february = Month(2004, 2)
    member = find_month_member(path, february, "y")
    dest = tmp_path / "out.csv"

    extracted = extract_month(path, member, february, dest, "y")

    expected = (line_ending.join([HEADER_A, *by_month[2]]) + line_ending).encode("latin-1")
    assert dest.read_bytes() == expected
    assert extracted.rows == len(by_month[2])
    assert extracted.sha256 == hashlib.sha256(expected).hexdigest()
    assert extracted.bytes == len(expected)


def test_january_also_gets_the_rows_without_a_readable_date(tmp_path: Path) -> None:
    csv, by_month = _year_csv("\n")
    path = write(tmp_path, yearly_single_member_zip(2004, csv))
    january = Month(2004, 1)
    dest = tmp_path / "out.csv"

    extracted = extract_month(path, find_month_member(path, january, "y"), january, dest, "y")

    kept = dest.read_bytes().decode("latin-1").splitlines()
    assert kept[0] == HEADER_A
    assert sorted(kept[1:]) == sorted(by_month[1] + UNREADABLE_DATE_ROWS)
    # File order is kept.
    assert kept[1:5] == [*by_month[1][:3], UNREADABLE_DATE_ROWS[0]]
    assert extracted.rows == len(by_month[1]) + len(UNREADABLE_DATE_ROWS)


def test_every_row_of_a_clean_year_lands_in_exactly_one_month(tmp_path: Path) -> None:
    csv, by_month = _year_csv("\n")
    path = write(tmp_path, yearly_single_member_zip(2004, csv))

    member = MonthMember("inf_diario_fi_2004.csv", True)

    rows = [
        extract_month(path, member, Month(2004, mes), Path(os.devnull), "y").rows
        for mes in (1, 2, 3)
    ]

    assert rows == [
        len(by_month[1]) + len(UNREADABLE_DATE_ROWS),
        *map(len, (by_month[2], by_month[3])),
    ]
    assert sum(rows) == data_rows(csv)


def test_row_with_an_impossible_month_is_not_lost(tmp_path: Path) -> None:
    rows = [
        "00.017.024/0001-53;2004-01-05;1.00;1.000000000000;1.00;0.00;0.00;1",
        "00.017.024/0001-53;2004-13-01;1.00;1.000000000000;1.00;0.00;0.00;1",
        "00.017.024/0001-53;2004-00-10;1.00;1.000000000000;1.00;0.00;0.00;1",
    ]
    csv = ("\n".join([HEADER_A, *rows]) + "\n").encode()
    path = write(tmp_path, yearly_single_member_zip(2004, csv))
    member = MonthMember("inf_diario_fi_2004.csv", True)

    january = extract_month(path, member, Month(2004, 1), tmp_path / "01.csv", "y")

    assert january.rows == 3
    assert (tmp_path / "01.csv").read_bytes() == csv


# extract_month: refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail", ["", "\n", "\r\n", "\n\n\r\n"], ids=["bare", "LF", "CRLF", "blank"]
)
def test_header_only_member_is_refused(tmp_path: Path, tail: str) -> None:
    csv = (LAYOUT_HEADERS["c"] + tail).encode()
    path = write(tmp_path, monthly_zip(2024, 1, csv))

    with pytest.raises(ArchiveError) as caught:
        extract_month(
            path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o", "m.zip"
        )

    assert str(caught.value) == (
        "m.zip!inf_diario_fi_202401.csv: header only, no data rows for 2024-01"
    )


def test_month_missing_from_a_whole_year_member_is_header_only(tmp_path: Path) -> None:
    csv, _ = _year_csv("\n")
    path = write(tmp_path, yearly_single_member_zip(2004, csv))

    with pytest.raises(ArchiveError, match=r"header only, no data rows for 2004-06"):
        extract_month(
            path, MonthMember("inf_diario_fi_2004.csv", True), Month(2004, 6), tmp_path / "o", "y"
        )


@pytest.mark.parametrize("content", [b"", b"\r\n", b"   \n"], ids=["empty", "newline", "spaces"])
def test_empty_member_is_refused(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, monthly_zip(2024, 1, content))

    with pytest.raises(ArchiveError, match=r"^m\.zip!inf_diario_fi_202401\.csv: empty"):
        extract_month(
            path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o", "m.zip"
        )


def test_unknown_header_is_refused_naming_member_and_columns(tmp_path: Path) -> None:
    csv = b"CNPJ;DATA;VALOR\n00.017.024/0001-53;2024-01-02;1.00\n"
    path = write(tmp_path, monthly_zip(2024, 1, csv))

    with pytest.raises(UnknownLayoutError) as caught:
        extract_month(
            path, MonthMember("inf_diario_fi_202401.csv", False), JAN_2024, tmp_path / "o", "m.zip"
        )

    message = str(caught.value)
    assert message.startswith("m.zip!inf_diario_fi_202401.csv: unknown header layout")
    assert "columns seen: CNPJ;DATA;VALOR." in message


def test_zip_bomb_is_refused_before_unzipping(tmp_path: Path) -> None:
    header = (LAYOUT_HEADERS["a"] + "\n").encode()
    row = b"00.017.024/0001-53;2024-01-02;1134502.30;26.653279500000;1130684.21;0.00;0.00;1\n"
    csv = header + row * (60_000_000 // len(row))  # ~60 MB of one repeated line
    name = "inf_diario_fi_202401.csv"
    path = write(tmp_path, zip_of({name: csv}))
    info = zipfile.ZipFile(path).getinfo(name)
    assert info.file_size / info.compress_size > 200  # really a bomb by the module's measure
    dest = tmp_path / "out.csv"

    with pytest.raises(ArchiveError, match=r"bomb") as caught:
        extract_month(path, MonthMember(name, False), JAN_2024, dest, "bomb.zip")

    assert str(caught.value).startswith(f"bomb.zip!{name}: compression ratio")
    assert not dest.exists()

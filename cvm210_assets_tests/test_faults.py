"""Faults at the source, end to end: each fails the run with a message naming what was wrong,
leaves every byte of the lake as it was, and a rerun once CVM is fixed finishes the job."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Callable

from cvm210_assets.fake_cvm.generator import LAYOUT_HEADERS, MonthSpec, generate_month, restate
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.resources import CvmSource
from cvm210_assets_tests.conftest import Pipeline
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month

ZIP = "inf_diario_fi_202501.zip"
MEMBER = "inf_diario_fi_202501.csv"


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def bad_crc(csv: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MEMBER, csv)
    body = bytearray(buffer.getvalue())
    body[body.index(csv[-60:-40]) + 5] ^= 0x01  # one flipped bit inside the stored member
    return bytes(body)


def bomb() -> bytes:
    row = b"00.017.024/0001-53;2025-01-02;1.00;1.000000000000;1.00;0.00;0.00;1\n"
    return zip_of({MEMBER: (LAYOUT_HEADERS["a"] + "\n").encode() + row * 900_000})


# fault name -> (how the fake CVM misbehaves, what the failed run must say)
FAULTS: dict[str, tuple[Callable[[FakeCvm, bytes], None], list[str]]] = {
    "503_every_time": (
        lambda cvm, csv: cvm.fail_next(ZIP, *[503] * 3),
        [ZIP, "503", "3 attempts"],
    ),
    "cut_mid_body_every_time": (
        lambda cvm, csv: cvm.truncate_next(ZIP, times=3),
        [ZIP, "3 attempts"],
    ),
    "html_page_with_200": (
        lambda cvm, csv: cvm.put(ZIP, b"<html><body>Manutencao</body></html>", None, "text/html"),
        [ZIP, "not a zip"],
    ),
    "bad_crc": (lambda cvm, csv: cvm.put(ZIP, bad_crc(csv)), [ZIP, MEMBER, "CRC"]),
    "no_csv_member": (
        lambda cvm, csv: cvm.put(ZIP, zip_of({"leiame.txt": b"x"})),
        [ZIP, "leiame.txt"],
    ),
    "member_escaping_the_folder": (
        lambda cvm, csv: cvm.put(ZIP, zip_of({f"../{MEMBER}": csv})),
        [ZIP, f"../{MEMBER}"],
    ),
    "decompression_bomb": (lambda cvm, csv: cvm.put(ZIP, bomb()), [ZIP, "bomb"]),
    "empty_csv": (lambda cvm, csv: cvm.put(ZIP, zip_of({MEMBER: b""})), [MEMBER, "empty"]),
    "header_only_csv": (
        lambda cvm, csv: cvm.put(ZIP, zip_of({MEMBER: csv.split(b"\n")[0] + b"\n"})),
        [MEMBER, "header only"],
    ),
    "unknown_header": (
        lambda cvm, csv: cvm.put(ZIP, zip_of({MEMBER: b"CNPJ;DATA;VALOR\n1;2;3\n"})),
        [MEMBER, "columns seen: CNPJ;DATA;VALOR"],
    ),
}


def lake_snapshot(pipeline: Pipeline) -> dict[str, str]:
    """Every object of the lake by key, with the sha256 of its bytes."""
    storage = pipeline.resources["lake"].storage
    return {key: hashlib.sha256(storage.read_bytes(key)).hexdigest() for key in storage.list("")}


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.event_specific_data.error.to_string()


def test_source_faults_fail_clearly_lose_nothing_and_a_rerun_finishes(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    # Retries without the production waits: three attempts, 10 ms apart.
    cvm = CvmSource(base_url=fake_cvm.base_url, attempts=3, backoff_seconds=0.01)
    pipeline = dataclasses.replace(pipeline, resources={**pipeline.resources, "cvm": cvm})
    first = generate_month(MonthSpec(2025, 1, "c", n_funds=30, seed=21))
    fake_cvm.publish_month(2025, 1, first)
    pipeline.run("2025-01")
    good = lake_snapshot(pipeline)
    second = restate(first, seed=3, change_share=0.2, n_add=2, n_remove=2)

    for name, (misbehave, wanted) in FAULTS.items():
        fake_cvm.publish_month(2025, 1, second)  # a restatement CVM then garbles
        misbehave(fake_cvm, second)
        result = pipeline.run("2025-01", raise_on_error=False)

        assert not result.success, name
        message = failure_message(result)
        for fragment in wanted:
            assert fragment in message, (name, fragment, message)
        assert lake_snapshot(pipeline) == good, name  # not a byte changed, no lock left

    fake_cvm.publish_month(2025, 1, second)
    pipeline.run("2025-01")
    expected = expected_month(second, 2025, 1)
    assert_silver(pipeline.rows("silver", "2025-01"), expected.silver, with_line=False)
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), expected.gold)


def test_a_file_with_bom_crlf_blank_tail_and_bad_rows_loses_no_row(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    lines = generate_month(MonthSpec(2025, 1, "b", n_funds=20, seed=5)).split(b"\n")
    fields = lines[3].split(b";")
    lines[3] = b";".join([*fields[:2], b"2025-02-30", *fields[3:]])  # no such day
    fields = lines[7].split(b";")
    fields[-4] = b"9" * 40 + b".00"  # VL_PATRIM_LIQ: too many digits for DECIMAL(27,2)
    lines[7] = b";".join(fields)
    csv = b"\xef\xbb\xbf" + b"\r\n".join(lines).rstrip(b"\r\n") + b"\r\n\r\n\r\n"
    fake_cvm.publish_month(2025, 1, csv)

    pipeline.run("2025-01")

    expected = expected_month(csv, 2025, 1)
    assert {(r.numero_linha, r.motivo) for r in expected.rejects} >= {
        (4, "data_invalida"),
        (8, "valor_invalido"),
    }
    assert_rejects(pipeline.rows("silver_rejects", "2025-01"), expected)
    assert_silver(pipeline.rows("silver", "2025-01"), expected.silver)
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), expected.gold)

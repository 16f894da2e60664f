"""End to end through Dagster: a fake CVM on 127.0.0.1, local Spark, a Delta lake in a folder.

Every table is compared with the independent oracle computed from the very CSV that was served.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from cvm210_assets.fake_cvm.generator import (
    MonthSpec,
    generate_month,
    real_csv,
    restate,
    with_real_rows,
)
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets_tests.conftest import (
    Pipeline,
    assert_month_matches_oracle,
    check_results,
    materialization_metadata,
)
from cvm210_assets_tests.expectations import (
    assert_gold,
    assert_lineage,
    assert_rejects,
    assert_silver,
    over_tolerance,
)
from cvm210_assets_tests.reference import expected_month

SKIPPED = "cvm210/unchanged"


def publish_months(fake: FakeCvm) -> dict[str, bytes]:
    """2019 as a yearly archive (layout a), 2024-03 (b) and 2025-01 (c, subclasses), with dirt."""
    year = {
        mes: generate_month(MonthSpec(2019, mes, "a", n_funds=40, seed=7)) for mes in range(1, 13)
    }
    year[11] = with_real_rows(year[11], real_csv("inf_diario_fi_201911.csv"))
    fake.publish_year(2019, year)
    march = with_real_rows(
        generate_month(MonthSpec(2024, 3, "b", n_funds=60, seed=7, dirt=True)),
        real_csv("inf_diario_fi_202403.csv"),
    )
    fake.publish_month(2024, 3, march)
    january = with_real_rows(
        generate_month(
            MonthSpec(
                2025, 1, "c", n_funds=80, seed=7, subclass_share=0.2, dirt=True, line_ending="\r\n"
            )
        ),
        real_csv("inf_diario_fi_202501.csv"),
    )
    fake.publish_month(2025, 1, january)
    return {"2019-07": year[7], "2019-11": year[11], "2024-03": march, "2025-01": january}


def zip_versions(pipeline: Pipeline, stem: str) -> list[str]:
    keys = pipeline.resources["lake"].storage.list(f"raw/zip/{stem}")
    return [k for k in keys if k.endswith(".zip")]


@pytest.mark.parametrize("key", ["2019-07", "2019-11", "2024-03", "2025-01"])
def test_month_of_each_layout_matches_the_oracle(
    pipeline: Pipeline, fake_cvm: FakeCvm, key: str
) -> None:
    csvs = publish_months(fake_cvm)
    result = pipeline.run(key)

    assert_month_matches_oracle(pipeline, key, csvs[key])
    checks = check_results(result)
    assert len(checks) == 10
    warnings = ("cnpj_check_digits", "flows_reconcile")
    blocking_and_passed = {k: v for k, v in checks.items() if not any(w in k for w in warnings)}
    assert all(blocking_and_passed.values()), checks
    # Generated funds reconcile; the dirt (an absurd quota, a restated row, rejected days)
    # does not, and the check counts what the oracle counts.
    gold = expected_month(csvs[key], int(key[:4]), int(key[5:])).gold
    (reconcile,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "flows_reconcile"
    ]
    over = len(over_tolerance(gold))
    assert reconcile.passed is (over == 0) is ("2019" in key)
    assert reconcile.metadata["fund_months_over_tolerance"].value == over
    assert reconcile.metadata["fund_months_checked"].value == sum(
        g.residuo_conciliacao is not None for g in gold
    )
    raw = materialization_metadata(result, "raw_zip")
    assert raw["csv_sha256"] == hashlib.sha256(csvs[key]).hexdigest()
    assert raw["layout"] == {"2019": "a", "2024": "b", "2025": "c"}[key[:4]]
    assert raw["url"].endswith(
        "HIST/inf_diario_fi_2019.zip" if key < "2021" else f"{key.replace('-', '')}.zip"
    )
    assert raw["etag"] and raw["last_modified"]


def test_rejects_carry_reasons_and_real_rows_are_kept(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    csvs = publish_months(fake_cvm)
    result = pipeline.run("2024-03")

    expected = expected_month(csvs["2024-03"], 2024, 3)
    rejects = materialization_metadata(result, "silver")
    for reason, count in expected.rejects_by_reason.items():
        assert rejects[f"rejected_{reason}"] == count
    assert rejects["rejected_rows"] == len(expected.rejects) > 10
    real = {
        r["dt_comptc"].isoformat(): r
        for r in pipeline.rows("silver", "2024-03")
        if r["cnpj_fundo"] == "00017024000153"
    }
    assert str(real["2024-03-06"]["vl_quota"]) == "34.830692000000"
    assert str(real["2024-03-06"]["vl_patrim_liq"]) == "1107633.56"


def test_unchanged_month_is_not_stored_or_processed_again(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    publish_months(fake_cvm)
    pipeline.run("2024-03")
    versions = {t: pipeline.tables.version(t) for t in ("bronze", "silver", "gold_kpis")}
    fake_cvm.reset_log()

    again = pipeline.run("2024-03")

    assert [r.status for r in fake_cvm.requests if r.method == "GET"] == [304]
    for asset in ("raw_zip", "s3_csv_partition", "bronze", "silver", "gold_kpis"):
        assert materialization_metadata(again, asset)[SKIPPED] is True, asset
    assert {t: pipeline.tables.version(t) for t in versions} == versions
    assert len(zip_versions(pipeline, "inf_diario_fi_202403")) == 1
    assert all(check_results(again).values()) is False  # the WARN check keeps its verdict
    assert check_results(again)["silver:key_unique"] is True


def test_restated_month_merges_and_keeps_history(pipeline: Pipeline, fake_cvm: FakeCvm) -> None:
    first = generate_month(MonthSpec(2025, 1, "c", n_funds=60, seed=3, subclass_share=0.2))
    fake_cvm.publish_month(2025, 1, first)
    pipeline.run("2025-01")
    before = pipeline.tables.version("silver")

    second = restate(first, seed=5, change_share=0.05, n_add=7, n_remove=4)
    fake_cvm.publish_month(2025, 1, second)
    result = pipeline.run("2025-01")

    old, new = expected_month(first, 2025, 1), expected_month(second, 2025, 1)
    silver_rows = pipeline.rows("silver", "2025-01")
    assert_silver(silver_rows, new.silver, with_line=False)
    assert_lineage(silver_rows, {old.sha256: old.silver, new.sha256: new.silver})
    assert {r["arquivo_sha256"] for r in silver_rows} == {old.sha256, new.sha256}
    assert_rejects(pipeline.rows("silver_rejects", "2025-01"), new)
    assert_gold(pipeline.rows("gold_kpis", "2025-01"), new.gold)
    inserted, updated, deleted = _diff(old.silver, new.silver)
    silver = materialization_metadata(result, "silver")
    assert (silver["rows_inserted"], silver["rows_updated"], silver["rows_deleted"]) == (
        inserted,
        updated,
        deleted,
    )
    assert inserted >= 7 and deleted >= 4 and updated > 0
    assert len(zip_versions(pipeline, "inf_diario_fi_202501")) == 2
    # Time travel: the version before the restatement still holds the first file's rows.
    dataset = pipeline.tables.dataset("silver", version=before)
    assert_silver(dataset.to_table().to_pylist(), old.silver)


def _diff(old, new) -> tuple[int, int, int]:
    from cvm210_assets_tests.reference import diff_silver

    return diff_silver(old, new)


def test_month_not_published_fails_clearly_and_writes_nothing(
    pipeline: Pipeline, fake_cvm: FakeCvm
) -> None:
    result = pipeline.run("2026-02", raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "CVM has not published 2026-02" in message
    assert "inf_diario_fi_202602.zip" in message and "HIST/inf_diario_fi_2026.zip" in message
    assert pipeline.resources["lake"].storage.list("") == []


def test_unknown_header_fails_naming_the_columns(pipeline: Pipeline, fake_cvm: FakeCvm) -> None:
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        archive.writestr("inf_diario_fi_202403.csv", "CNPJ;DATA;VALOR\n1;2;3\n")
    fake_cvm.put("inf_diario_fi_202403.zip", body.getvalue())

    result = pipeline.run("2024-03", raise_on_error=False)

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "unknown header layout, columns seen: CNPJ;DATA;VALOR" in message
    assert "inf_diario_fi_202403.csv" in message
    assert pipeline.tables.version("silver") is None


def test_failed_blocking_check_commits_nothing_and_a_rerun_finishes(
    pipeline: Pipeline, fake_cvm: FakeCvm, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from cvm210_assets.assets import silver as silver_asset

    first = generate_month(MonthSpec(2024, 3, "b", n_funds=30, seed=9))
    fake_cvm.publish_month(2024, 3, first)
    pipeline.run("2024-03")
    versions = {t: pipeline.tables.version(t) for t in ("silver", "silver_rejects", "gold_kpis")}
    second = restate(first, seed=1, change_share=0.1, n_add=3, n_remove=3)
    fake_cvm.publish_month(2024, 3, second)
    real_quality = silver_asset.silver_quality

    def broken_quality(*args):
        return {m: dataclasses.replace(q, duplicate_keys=2) for m, q in real_quality(*args).items()}

    monkeypatch.setattr(silver_asset, "silver_quality", broken_quality)
    failed = pipeline.run("2024-03", raise_on_error=False)

    assert not failed.success
    assert check_results(failed)["silver:key_unique"] is False
    assert {t: pipeline.tables.version(t) for t in versions} == versions
    assert_silver(pipeline.rows("silver", "2024-03"), expected_month(first, 2024, 3).silver)
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in failed.get_asset_materialization_events()
    }
    assert materialized == {"raw_zip", "s3_csv_partition", "bronze"}  # gold did not run

    monkeypatch.setattr(silver_asset, "silver_quality", real_quality)
    pipeline.run("2024-03")
    expected = expected_month(second, 2024, 3)
    assert_silver(pipeline.rows("silver", "2024-03"), expected.silver, with_line=False)
    assert_gold(pipeline.rows("gold_kpis", "2024-03"), expected.gold)

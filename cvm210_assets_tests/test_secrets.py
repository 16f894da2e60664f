"""Credentials never leave the environment: not in logs, metadata, lake records or errors."""

from __future__ import annotations

import io
import os
import zipfile

import boto3
import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets_tests.conftest import S3_BUCKET, S3_SECRET_PLANTED, make_pipeline

# The S3 secret the test run's Spark and boto3 sign with (conftest), and a Databricks token.
PLANTED = S3_SECRET_PLANTED


def test_planted_credentials_appear_nowhere(
    spark, s3_lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto accepts any key pair: the planted secret is really used to sign every S3 request,
    # by boto3, delta-rs, Arrow and Spark's s3a alike.
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == f"aws-{PLANTED}"
    monkeypatch.setenv("DATABRICKS_TOKEN", f"dapi-{PLANTED}")
    with FakeCvm() as fake:
        fake.publish_month(2025, 1, generate_month(MonthSpec(2025, 1, "c", n_funds=20, seed=2)))
        bad = io.BytesIO()
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("inf_diario_fi_202402.csv", "X;Y\n1;2\n")
        fake.put("inf_diario_fi_202402.zip", bad.getvalue())
        pipeline = make_pipeline(f"s3://{S3_BUCKET}/lake", fake.base_url)
        results = [
            pipeline.run("2025-01"),
            pipeline.run("2025-01"),  # the unchanged path
            pipeline.run("2024-02", raise_on_error=False),  # an unknown header
            pipeline.run("2023-05", raise_on_error=False),  # not published
        ]

    assert [r.success for r in results] == [True, True, False, False]
    seen: list[str] = []
    for result in results:
        for record in pipeline.instance.all_logs(result.run_id):
            seen.append(repr(record))  # messages, metadata, errors with their stack traces
    s3 = boto3.client("s3")
    for item in s3.list_objects_v2(Bucket=S3_BUCKET)["Contents"]:
        if item["Key"].endswith(".json"):
            seen.append(s3.get_object(Bucket=S3_BUCKET, Key=item["Key"])["Body"].read().decode())
    seen.append(repr(pipeline.resources))
    # The scan does reach what it claims to: metadata, check results, errors, lake records.
    everything = "\n".join(seen)
    for sample in (
        "csv_sha256",
        "key_unique",
        "has not published",
        "unknown header layout",
        '"source_sha256"',
    ):
        assert sample in everything, sample
    leaks = [text for text in seen if PLANTED in text]
    assert leaks == []


def test_settings_and_resources_hold_no_credential(tmp_path) -> None:
    """Credentials in the environment stay there: the settings and the resources built from
    them (what Dagster shows, logs and ships to a cluster) hold none of them."""
    from cvm210_assets.resources import build_resources
    from cvm210_assets.settings import Settings

    env = {
        "CVM210_LAKE_URI": str(tmp_path / "lake"),
        "CVM210_SMTP_HOST": "smtp.example",
        "CVM210_SMTP_USER": "alerts",
        "CVM210_SMTP_PASSWORD": f"smtp-{PLANTED}",
        "CVM210_SPARK_TOKEN": f"spark-{PLANTED}",
        "AWS_SECRET_ACCESS_KEY": f"aws-{PLANTED}",
        "DATABRICKS_TOKEN": f"dapi-{PLANTED}",
    }
    settings = Settings.from_env(env)
    resources = build_resources(settings)
    assert PLANTED not in repr(settings) + repr(resources)
    assert resources["alert_delivery"].smtp_user == "alerts"  # the settings did arrive

"""The lake on S3: moto's S3 server on 127.0.0.1, reached by boto3, Spark's s3a and delta-rs."""

from __future__ import annotations

import boto3
import pytest

from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.storage import S3Storage, StorageError
from cvm210_assets_tests.conftest import S3_BUCKET as BUCKET
from cvm210_assets_tests.conftest import make_pipeline, spark_reaches
from cvm210_assets_tests.expectations import assert_gold, assert_rejects, assert_silver
from cvm210_assets_tests.reference import expected_month


def test_month_on_an_s3_lake_matches_the_oracle(spark, s3_lake: str) -> None:
    csv = generate_month(
        MonthSpec(2025, 1, "c", n_funds=40, seed=11, subclass_share=0.2, dirt=True)
    )
    with FakeCvm() as fake:
        fake.publish_month(2025, 1, csv)
        pipeline = make_pipeline(f"s3://{BUCKET}/lake", fake.base_url)
        pipeline.run("2025-01")

        expected = expected_month(csv, 2025, 1)
        assert len(pipeline.rows("bronze", "2025-01")) == len(expected.bronze)
        assert_silver(pipeline.rows("silver", "2025-01"), expected.silver)
        assert_rejects(pipeline.rows("silver_rejects", "2025-01"), expected)
        assert_gold(pipeline.rows("gold_kpis", "2025-01"), expected.gold)

        # Everything landed in the bucket, under the prefix: raw zone, state and Delta logs.
        keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert "lake/raw/csv/ano=2025/mes=01/inf_diario_fi_202501.csv" in keys
        assert "lake/_state/gold_kpis/2025-01.json" in keys
        for table in ("bronze", "silver", "silver_rejects", "gold_kpis"):
            assert f"lake/{table}/_delta_log/00000000000000000000.json" in keys

        # A rerun of the unchanged month reads its state from S3 and skips every step.
        again = pipeline.run("2025-01")
        assert all(
            e.event_specific_data.materialization.metadata["cvm210/unchanged"].value
            for e in again.get_asset_materialization_events()
        )


def test_access_denied_names_bucket_key_and_permission(s3_endpoint: str) -> None:
    class Denying:
        def get_object(self, **kwargs):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")

    storage = S3Storage(BUCKET, "lake", Denying())
    with pytest.raises(StorageError) as error:
        storage.read_bytes("_state/raw_zip/2025-01.json")
    message = str(error.value)
    assert f"s3://{BUCKET}/lake/_state/raw_zip/2025-01.json" in message
    assert "s3:GetObject" in message and repr(BUCKET) in message


def test_month_lock_on_s3_is_exclusive(s3_endpoint: str) -> None:
    from cvm210_assets.lake.lock import MonthBusyError, month_lock
    from cvm210_assets.partitions import Month

    storage = S3Storage(BUCKET, "lake", boto3.client("s3"))
    with (
        month_lock(storage, Month(2025, 1), "run A"),
        pytest.raises(MonthBusyError, match="being processed by run A"),
        month_lock(storage, Month(2025, 1), "run B"),
    ):
        pass
    with month_lock(storage, Month(2025, 1), "run B"):
        assert storage.exists("_locks/2025-01.lock")
    assert not storage.exists("_locks/2025-01.lock")


def test_transient_s3_errors_are_retried_by_every_client(
    spark, s3_lake: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = tmp_path / "refused.log"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "cvm210_assets_tests.flaky_s3", s3_lake, str(port), "4",
         str(refused)]
    )  # fmt: skip
    try:
        wait_for_port(port)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        spark_reaches(spark, f"http://127.0.0.1:{port}")
        csv = generate_month(MonthSpec(2025, 1, "c", n_funds=40, seed=12, dirt=True))
        with FakeCvm() as fake:
            fake.publish_month(2025, 1, csv)
            pipeline = make_pipeline(f"s3://{BUCKET}/lake", fake.base_url)
            pipeline.run("2025-01")

            expected = expected_month(csv, 2025, 1)
            assert_silver(pipeline.rows("silver", "2025-01"), expected.silver)
            assert_rejects(pipeline.rows("silver_rejects", "2025-01"), expected)
            assert_gold(pipeline.rows("gold_kpis", "2025-01"), expected.gold)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
    agents = refused.read_text()
    assert "Botocore" in agents  # raw zone and state records (boto3)
    assert "PUT Hadoop" in agents  # Spark's s3a: the steps' Delta commits and files
    assert "object_store" in agents  # delta-rs: the tests' reads of the tables
    assert "aws-sdk-cpp" in agents  # Arrow reading the tables' Parquet


def wait_for_port(port: int) -> None:
    import socket
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}"
            time.sleep(0.05)

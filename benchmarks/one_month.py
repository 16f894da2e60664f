"""Time one month, raw_zip → gold_kpis through Dagster, at a given size (default 1.5 M rows).

    .venv/bin/python benchmarks/one_month.py --rows 1500000

Generates the month in CVM's format, serves it from the fake CVM on 127.0.0.1, materializes the
five assets into a fresh lake and prints per-step durations from Dagster's own events.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace

from dagster import DagsterEventType, DagsterInstance, materialize

from cvm210_assets.definitions import ASSETS
from cvm210_assets.fake_cvm.generator import MonthSpec, business_days, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.resources import build_resources
from cvm210_assets.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--month", default="2025-01")
    args = parser.parse_args()
    ano, mes = map(int, args.month.split("-"))
    funds = max(1, args.rows // len(business_days(ano, mes)))
    started = time.perf_counter()
    csv = generate_month(MonthSpec(ano, mes, "c", n_funds=funds, seed=1))
    generated = time.perf_counter() - started
    with FakeCvm() as fake, tempfile.TemporaryDirectory() as lake:
        fake.publish_month(ano, mes, csv)
        settings = replace(Settings.from_env(), lake_uri=lake, source_url=fake.base_url)
        instance = DagsterInstance.ephemeral()
        begin = time.perf_counter()
        result = materialize(
            ASSETS, partition_key=args.month, resources=build_resources(settings), instance=instance
        )
        total = time.perf_counter() - begin
    steps = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_SUCCESS:
            steps[event.step_key] = round(event.event_specific_data.duration_ms / 1000, 2)
    report = {
        "rows": csv.count(b"\n") - 1,
        "csv_mb": round(len(csv) / 1e6, 1),
        "generate_s": round(generated, 1),
        "steps_s": steps,
        "materialize_s": round(total, 1),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

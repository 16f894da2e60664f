"""The benchmark (benchmarks/README.md): one command, figures written to benchmarks/results/.

    .venv/bin/python benchmarks/run.py          # 0.5 M, 1.5 M, 3 M rows; a 12-month backfill;
                                                # the two table engines side by side
    .venv/bin/python benchmarks/run.py --sizes 1500000 --backfill-rows 200000   # quicker
    .venv/bin/python benchmarks/run.py --sizes --backfill-rows 0 --out engines   # the engines

Months are generated in CVM's exact format (layout c, valid CNPJ check digits, the month's
business days, 1 % subclass rows) and served by the fake CVM on 127.0.0.1. Every scenario runs
in a fresh Python process, as a user's run would, through Dagster: times are the run's own
duration from Dagster's events (first to last event) and per step; the process's and the JVM's
peak resident memory come from /proc (VmHWM). A DuckDB reference does the same work on the same
CSV (read, clean, deduplicate, aggregate) in the parent process, to show how far local Spark is
from what the machine can do.

The engines: the same 1.5 M-row month on the code of HYBRID_REF, the last commit whose Spark
steps handed their rows to Python as Arrow for delta-rs to write, and on this checkout's, where
Delta Lake's Spark engine writes them (issue 13). The old code is taken from git history into
the work folder and imported by its run's process instead of this checkout's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MONTH = (2025, 1)
# The last commit with the Arrow + delta-rs hybrid: what the engines comparison runs as "before".
HYBRID_REF = "31259ad"
BACKFILL_YEAR = 2024
TARGETS = {
    "month_1_5m_s": 25,
    "duckdb_ratio": 15,
    "ingestion_peak_mb": 64,
    "unchanged_s": 5,
    "restated_silver_s": 5,
    "backfill_12_s": 240,
    "linearity_3m_over_1_5m": 2.2,
}


# --- the child: one scenario in a fresh process ----------------------------------------------


def _peak_mb(pid: int | str = "self") -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _jvm_pids(parent: int | None = None) -> list[int]:
    parent = os.getpid() if parent is None else parent
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[3]) == parent and b"java" in cmdline:
            pids.append(int(proc.name))
    return pids


def _data_files(lake: str) -> int:
    return sum(1 for _ in Path(lake).rglob("*.parquet"))


def _run(assets, resources, **kwargs) -> dict:
    """Materialize through Dagster; the run's duration from its own event log."""
    from dagster import DagsterEventType, DagsterInstance, materialize

    instance = DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = materialize(assets, resources=resources, instance=instance, **kwargs)
    wall = time.perf_counter() - started
    logs = instance.all_logs(result.run_id)
    steps = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_SUCCESS
    }
    return {
        "run_s": round(logs[-1].timestamp - logs[0].timestamp, 2),
        "materialize_call_s": round(wall, 2),
        "steps_s": steps,
    }


def child(args: argparse.Namespace) -> dict:
    from dataclasses import replace

    from cvm210_assets.definitions import ASSETS
    from cvm210_assets.resources import build_resources
    from cvm210_assets.settings import Settings

    settings = replace(Settings.from_env(), lake_uri=args.lake, source_url=args.source)
    resources = build_resources(settings)
    partition = f"{MONTH[0]:04d}-{MONTH[1]:02d}"
    out: dict = {}
    if args.scenario == "ingest":
        import tracemalloc

        from cvm210_assets.assets.ingestion import raw_zip, s3_csv_partition

        baseline = _peak_mb()
        tracemalloc.start()
        out = _run([raw_zip, s3_csv_partition], resources, partition_key=partition)
        out["python_heap_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        out["rss_growth_mb"] = round(_peak_mb() - baseline, 1)
        return out
    if args.scenario == "fixed":
        from pyspark.sql import SparkSession

        from cvm210_assets.resources import jar_groups, session_jars, spark_config

        started = time.perf_counter()
        builder = SparkSession.builder
        conf = spark_config(settings) | session_jars(settings.jar_cache, jar_groups(settings))
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        session = time.perf_counter() - started
        started = time.perf_counter()
        spark.range(10).toArrow()
        first_job = time.perf_counter() - started
        return {"spark_session_s": round(session, 2), "first_job_s": round(first_job, 2)}
    files_before = _data_files(args.lake)
    if args.scenario == "backfill":
        tags = {
            "dagster/asset_partition_range_start": f"{BACKFILL_YEAR}-01",
            "dagster/asset_partition_range_end": f"{BACKFILL_YEAR}-12",
        }
        out = _run(ASSETS, resources, tags=tags)
    else:  # month, unchanged, restated
        out = _run(ASSETS, resources, partition_key=partition)
    from pyspark import SparkContext

    out["spark_started"] = SparkContext._active_spark_context is not None
    out["new_data_files"] = _data_files(args.lake) - files_before
    out["python_peak_mb"] = _peak_mb()
    out["jvm_peak_mb"] = max((_peak_mb(p) or 0 for p in _jvm_pids()), default=None)
    if args.scenario == "restated":
        from cvm210_assets.lake.maintenance import history
        from cvm210_assets.lake.table_catalog import CHANGES_TABLE, SILVER_TABLE
        from cvm210_assets.lake.tables import DeltaRsTables

        tables = DeltaRsTables(resources["lake"].storage)
        commit = history(tables, SILVER_TABLE.name, 1)[0]
        merge = json.loads(commit["operationMetrics"] or "{}")
        # The MERGE alone: silver's commit after silver_changes', which is written right
        # before it (reading the month, merging, writing), by Delta's own commit times.
        recorded = history(tables, CHANGES_TABLE.name, 1)[0]
        out["silver_merge"] = {
            "seconds": round((commit["timestamp"] - recorded["timestamp"]).total_seconds(), 2),
            "rows_updated": merge.get("numTargetRowsUpdated"),
            "rows_copied": merge.get("numTargetRowsCopied"),
            "files_added": merge.get("numTargetFilesAdded"),
            "files_removed": merge.get("numTargetFilesRemoved"),
        }
    return out


# --- the parent: data, scenarios, reference, report -------------------------------------------


def _scenario(
    name: str, lake: Path, source: str, remote: str | None = None, code: Path | None = None
) -> dict:
    """The scenario in a fresh process; `code`: a checkout whose package that process imports."""
    command = [sys.executable, __file__, "--child", name, "--lake", str(lake), "--source", source]
    env = dict(os.environ)
    if remote:
        env["CVM210_SPARK_REMOTE"] = remote
    if code:
        env |= _old_code_env(code)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=code or ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"scenario {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 1)
    return result


def _with_server(fake, csv: bytes, restated: bytes, work: Path, duckdb_s: float) -> dict:
    """The month and its restatement in runs attached to a Spark Connect server that has done
    one month already (`cvm210 spark-server`, kept up between runs)."""
    import secrets
    import socket

    from cvm210_assets.resources import session_jars, spark_config
    from cvm210_assets.settings import SPARK_TOKEN_VAR, Settings
    from cvm210_assets.spark_server import SparkServer

    os.environ[SPARK_TOKEN_VAR] = secrets.token_hex(16)
    settings = Settings.from_env()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work.mkdir(parents=True)
    with (
        (work / "server.log").open("wb") as log,
        SparkServer(
            spark_config(settings) | session_jars(settings.jar_cache, ["delta"]), port, output=log
        ) as server,
    ):
        fake.publish_month(*MONTH, csv)
        out = {"warm_up": _scenario("month", work / "warm-up", fake.base_url, server.remote)}
        out["month"] = _scenario("month", work / "lake", fake.base_url, server.remote)
        fake.publish_month(*MONTH, restated)
        out["restated"] = _scenario("restated", work / "lake", fake.base_url, server.remote)
        out["server_jvm_peak_mb"] = max(
            (_peak_mb(p) or 0 for p in [server.pid, *_jvm_pids(server.pid)]), default=None
        )
    out["ratio_to_duckdb"] = round(out["month"]["run_s"] / duckdb_s, 1)
    return out


def old_checkout(ref: str, into: Path) -> Path | None:
    """The package as it was at `ref`, from git history; None without git or that commit."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        return None
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _old_code_env(code: Path) -> dict[str, str]:
    """Import the package from `code`, ahead of this checkout's editable install, with a class
    archive of its own (its JVM's class path is not this checkout's)."""
    return {"PYTHONPATH": str(code), "XDG_CACHE_HOME": str(code.parent / "hybrid-cache")}


def engines(fake, rows: int, work: Path, ref: str) -> dict:
    """One month of `rows` rows on the hybrid (`ref`) and on Delta Lake's Spark engine, each in
    a fresh process on a fresh lake, the hybrid first."""
    from cvm210_assets.fake_cvm.generator import MonthSpec, business_days, generate_month

    days = len(business_days(*MONTH))
    csv = generate_month(MonthSpec(*MONTH, "c", n_funds=max(1, rows // days), seed=1,
                                   subclass_share=0.01))  # fmt: skip
    fake.publish_month(*MONTH, csv)
    out: dict = {"rows": csv.count(b"\n") - 1, "hybrid_ref": ref}
    code = old_checkout(ref, work / "hybrid-code")
    if code is None:
        out["hybrid"] = None  # no git history here: nothing to compare with
    else:
        archive = [sys.executable, "-m", "cvm210_assets.jvm_archive"]
        subprocess.run(archive, cwd=code, env={**os.environ, **_old_code_env(code)}, check=True)
        out["hybrid"] = _scenario("month", work / "hybrid-lake", fake.base_url, code=code)
    out["delta_spark"] = _scenario("month", work / "delta-spark-lake", fake.base_url)
    return out


def duckdb_reference(csv_path: Path, out: Path) -> float:
    """The same work in DuckDB: read every line as text, type and validate, keep the last row
    of a key, aggregate the month per fund, write Parquet. Seconds, best of two."""
    import duckdb

    money = "DECIMAL(17,2)"
    sql = f"""
    CREATE TABLE raw AS SELECT *, row_number() OVER () + 1 AS numero_linha
      FROM read_csv('{csv_path}', delim=';', header=true, all_varchar=true, encoding='latin-1');
    CREATE TABLE typed AS SELECT
      TP_FUNDO_CLASSE AS tp_fundo, replace(replace(replace(CNPJ_FUNDO_CLASSE,'.',''),'/',''),'-','')
        AS cnpj_fundo, nullif(trim(ID_SUBCLASSE), '') AS id_subclasse,
      try_cast(DT_COMPTC AS DATE) AS dt_comptc, try_cast(VL_TOTAL AS {money}) AS vl_total,
      try_cast(VL_QUOTA AS DECIMAL(27,12)) AS vl_quota,
      try_cast(VL_PATRIM_LIQ AS {money}) AS vl_patrim_liq,
      try_cast(CAPTC_DIA AS {money}) AS captc_dia, try_cast(RESG_DIA AS {money}) AS resg_dia,
      try_cast(NR_COTST AS INTEGER) AS nr_cotst, numero_linha
      FROM raw;
    CREATE TABLE silver AS SELECT * FROM typed
      WHERE length(cnpj_fundo) = 14 AND dt_comptc IS NOT NULL AND vl_patrim_liq > 0
      QUALIFY row_number() OVER (PARTITION BY cnpj_fundo, id_subclasse, dt_comptc
                                 ORDER BY numero_linha DESC) = 1;
    COPY (SELECT cnpj_fundo, id_subclasse, count(*) AS dias_com_informe,
            sum(coalesce(captc_dia, 0)) AS total_captacao,
            sum(coalesce(resg_dia, 0)) AS total_resgate,
            sum(coalesce(captc_dia, 0)) - sum(coalesce(resg_dia, 0)) AS fluxo_liquido,
            avg(vl_patrim_liq) AS patrimonio_medio,
            arg_min(vl_patrim_liq, dt_comptc) AS patrimonio_inicial,
            arg_max(vl_patrim_liq, dt_comptc) AS patrimonio_final,
            arg_min(vl_quota, dt_comptc) AS cota_inicial,
            arg_max(vl_quota, dt_comptc) AS cota_final,
            max(vl_quota) AS cota_maxima, min(vl_quota) AS cota_minima,
            count_if(coalesce(captc_dia,0) - coalesce(resg_dia,0) < 0) AS dias_fluxo_negativo
          FROM silver GROUP BY ALL) TO '{out}' (FORMAT parquet);
    """
    best = float("inf")
    for _ in range(2):
        con = duckdb.connect()
        started = time.perf_counter()
        con.execute(sql)
        best = min(best, time.perf_counter() - started)
        con.close()
    return round(best, 2)


def write_results(name: str, report: dict, text: str) -> None:
    """The figures as results/<name>.json and the table as results/<name>.md, shown too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(int(meminfo[1]) / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.split(
            "\n"
        )[0],
        "versions": {
            p: version(p) for p in ("dagster", "pyspark", "deltalake", "pyarrow", "duckdb")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[500_000, 1_500_000, 3_000_000])
    parser.add_argument(
        "--backfill-rows", type=int, default=1_500_000, help="rows per month (0: no backfill)"
    )
    parser.add_argument(
        "--engine-rows", type=int, default=1_500_000, help="the engines' month (0: not compared)"
    )
    parser.add_argument("--hybrid-ref", default=HYBRID_REF, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="latest", help="results/<OUT>.json and .md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.scenario = args.child
        print(json.dumps(child(args)))
        return

    from cvm210_assets.fake_cvm.generator import MonthSpec, business_days, generate_month, restate
    from cvm210_assets.fake_cvm.server import FakeCvm

    started = time.perf_counter()
    report: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "targets": TARGETS}
    days = len(business_days(*MONTH))
    report["sizes"] = {}
    with FakeCvm() as fake, tempfile.TemporaryDirectory(prefix="cvm210-bench-") as tmp:
        work = Path(tmp)
        report["spark_fixed_cost"] = _scenario("fixed", work / "unused", fake.base_url)
        for rows in args.sizes:
            spec = MonthSpec(*MONTH, "c", n_funds=max(1, rows // days), seed=1, subclass_share=0.01)
            csv = generate_month(spec)
            fake.publish_month(*MONTH, csv)
            lake = work / f"lake-{rows}"
            entry: dict = {"rows": csv.count(b"\n") - 1, "csv_mb": round(len(csv) / 1e6, 1)}
            entry["month"] = _scenario("month", lake, fake.base_url)
            entry["unchanged"] = _scenario("unchanged", lake, fake.base_url)
            restated = restate(csv, seed=2, change_share=0.01, n_add=0, n_remove=0)
            fake.publish_month(*MONTH, restated)
            entry["restated"] = _scenario("restated", lake, fake.base_url)
            entry["ingest"] = _scenario("ingest", work / f"ingest-{rows}", fake.base_url)
            csv_path = work / f"month-{rows}.csv"
            csv_path.write_bytes(csv)
            entry["duckdb_s"] = duckdb_reference(csv_path, work / f"gold-{rows}.parquet")
            entry["ratio_to_duckdb"] = round(entry["month"]["run_s"] / entry["duckdb_s"], 1)
            entry["server"] = _with_server(
                fake, csv, restated, work / f"server-{rows}", entry["duckdb_s"]
            )
            report["sizes"][str(rows)] = entry
            print(json.dumps({str(rows): entry}), flush=True)
            del csv, restated
        if args.engine_rows:
            report["engines"] = engines(fake, args.engine_rows, work / "engines", args.hybrid_ref)
            print(json.dumps({"engines": report["engines"]}), flush=True)
        if args.backfill_rows:
            per_month = max(1, args.backfill_rows // days)
            for mes in range(1, 13):
                spec = MonthSpec(
                    BACKFILL_YEAR, mes, "c", n_funds=per_month, seed=mes, subclass_share=0.01
                )
                fake.publish_month(BACKFILL_YEAR, mes, generate_month(spec))
            report["backfill"] = {
                "months": 12,
                "rows_per_month": args.backfill_rows,
                **_scenario("backfill", work / "lake-backfill", fake.base_url),
            }
    report["benchmark_s"] = round(time.perf_counter() - started, 1)
    write_results(args.out, report, markdown(report))


def markdown(report: dict) -> str:
    m = report["machine"]
    fixed = report["spark_fixed_cost"]
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB,"
        f" {m['os']}; Python {m['python']}, {m['java']};"
        f" {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        "",
        f"Spark's fixed cost in a fresh process: session {fixed['spark_session_s']} s,"
        f" first job {fixed['first_job_s']} s.",
    ]
    if report.get("engines"):
        lines += _engine_table(report["engines"])
    if report["sizes"]:
        lines += _size_tables(report["sizes"])
    b = report.get("backfill")
    if b:
        lines += [
            "",
            f"12-month backfill in one run ({b['rows_per_month']:,} rows a month): {b['run_s']} s"
            f" (steps: {', '.join(f'{k} {v}' for k, v in b['steps_s'].items())}).",
        ]
    sizes = report["sizes"]
    if "1500000" in sizes and "3000000" in sizes:
        ratio = sizes["3000000"]["month"]["run_s"] / sizes["1500000"]["month"]["run_s"]
        lines.append(f"3 M rows ÷ 1.5 M rows: {ratio:.2f}×.")
    lines += ["", f"The whole benchmark took {report['benchmark_s']} s."]
    return "\n".join(lines) + "\n"


def _size_tables(sizes: dict) -> list[str]:
    lines = [
        "",
        "| rows | CSV MB | run s (raw_zip → gold) | raw_zip | s3_csv | bronze | silver | gold"
        " | DuckDB s | ratio | Python / JVM peak MB | unchanged rerun s (Spark? new files)"
        " | restated: silver s (MERGE s), files rewritten | ingestion heap / RSS growth MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sizes.values():
        merge = e["restated"].get("silver_merge", {})
        lines.append(
            f"| {e['rows']:,} | {e['csv_mb']} | {e['month']['run_s']} | {_steps(e['month'])} |"
            f" {e['duckdb_s']} | {e['ratio_to_duckdb']}× |"
            f" {e['month']['python_peak_mb']} / {e['month']['jvm_peak_mb']} |"
            f" {e['unchanged']['run_s']} ({'yes' if e['unchanged']['spark_started'] else 'no'},"
            f" {e['unchanged']['new_data_files']}) |"
            f" {e['restated']['steps_s'].get(_silver())} ({merge.get('seconds')}),"
            f" {merge.get('files_removed')} file(s)"
            f" replaced ({merge.get('rows_updated')} rows updated) |"
            f" {e['ingest']['python_heap_peak_mb']} / {e['ingest']['rss_growth_mb']} |"
        )
    lines += [
        "",
        "Runs attached to a warm Spark server (`cvm210 spark-server`, after one month):",
        "",
        "| rows | run s (raw_zip → gold) | raw_zip | s3_csv | bronze | silver | gold | ratio"
        " | restated: silver s (MERGE s) | Python / server JVM peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sizes.values():
        w = e["server"]
        merge = w["restated"].get("silver_merge", {})
        lines.append(
            f"| {e['rows']:,} | {w['month']['run_s']} | {_steps(w['month'])} |"
            f" {w['ratio_to_duckdb']}× |"
            f" {w['restated']['steps_s'].get(_silver())} ({merge.get('seconds')}) |"
            f" {w['month']['python_peak_mb']} / {w['server_jvm_peak_mb']} |"
        )
    return lines


def _engine_table(e: dict) -> list[str]:
    lines = [
        "",
        f"The table engines, one {e['rows']:,}-row month each, fresh process, fresh lake:",
        "",
        "| engine | run s (raw_zip → gold) | raw_zip | s3_csv | bronze | silver | gold"
        " | Python peak MB | JVM peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in (
        (f"Arrow + delta-rs (the hybrid, {e['hybrid_ref']})", e["hybrid"]),
        ("Delta Lake's Spark engine (now)", e["delta_spark"]),
    ):
        if run is None:
            lines.append(f"| {name} | not run: no git history of {e['hybrid_ref']} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {run['run_s']} | {_steps(run)} | {run['python_peak_mb']}"
            f" | {run['jvm_peak_mb']} |"
        )
    return lines


# The report's names come from the package, imported where they are used: the engines
# comparison's child runs this file on an old checkout, which has no table catalog.


def _silver() -> str:
    """The step that writes silver (and MERGEs a restatement into it)."""
    from cvm210_assets.lake.table_catalog import SILVER_TABLE

    return SILVER_TABLE.asset


def _steps(run: dict) -> str:
    from cvm210_assets.assets.ingestion import S3_CSV
    from cvm210_assets.lake.table_catalog import BRONZE_TABLE, GOLD_TABLE, SILVER_TABLE
    from cvm210_assets.source.capture import RAW_ZIP

    steps = (RAW_ZIP, S3_CSV, BRONZE_TABLE.asset, SILVER_TABLE.asset, GOLD_TABLE.asset)
    return " | ".join(str(run["steps_s"].get(step)) for step in steps)


if __name__ == "__main__":
    main()

"""The whole history as a new user's first day runs it (issue 14; benchmarks/README.md).

    .venv/bin/python benchmarks/history.py               # every month, CVM's sizes (~20 GB free)
    .venv/bin/python benchmarks/history.py --scale 0.1   # the same months at a tenth of the rows

Every month from 2005-01 to the last complete month, sized like CVM's: rows a month grow
geometrically from 100,000 in 2005-01 to 560,000 in 2025-01 (×5.6 in 20 years, 0.72 % a month,
and on at that rate: 78 M rows to 2026-11), layout a before 2018, b until 2024-09, c (1 % of the
rows subclasses) from 2024-10; published as CVM publishes them, yearly HIST/ archives up to
2020 and monthly zips after, by the fake CVM on 127.0.0.1.

Each scenario is the CLI a user types, `dagster asset materialize ... --partition-range`, in a
fresh process with a fresh DAGSTER_HOME, timed by its wall clock; peak memory is sampled from
/proc every 0.2 s over the CLI's process tree (Python, and the JVM it starts), and the time of
each stage comes from the run's Dagster events. Then the month-sized targets: a 1.5 M-row
month cold beside a DuckDB pass over the same CSV, a month of a few rows cold, 263 such months
in one run, and an unchanged month again. Figures go to benchmarks/results/history.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import duckdb_reference, machine, write_results

from cvm210_assets.assets.ingestion import S3_CSV
from cvm210_assets.fake_cvm.generator import MonthSpec, business_days, generate_month
from cvm210_assets.fake_cvm.server import FakeCvm
from cvm210_assets.lake.table_catalog import BRONZE_TABLE, GOLD_TABLE, SILVER_TABLE
from cvm210_assets.partitions import Month
from cvm210_assets.source.capture import RAW_ZIP

# The chain from CVM's zip to gold_kpis, as `dagster asset materialize --select` takes it.
ASSETS = ",".join((RAW_ZIP, S3_CSV, BRONZE_TABLE.asset, SILVER_TABLE.asset, GOLD_TABLE.asset))
FIRST = Month(2005, 1)
ROWS_2005, ROWS_2025 = 100_000, 560_000
LAST_HIST_YEAR = 2020
TARGETS = {
    "history_s": 1200,
    "history_peak_gb": 4,
    "month_1_5m_s": 30,
    "month_1_5m_duckdb_ratio": 10,
    "tiny_month_s": 10,
    "tiny_history_s": 300,
    "unchanged_s": 3,
}


def last_complete_month(today: dt.date) -> Month:
    return Month(today.year, today.month).shift(-1)


def months_until(last: Month) -> list[Month]:
    months = [FIRST]
    while months[-1] < last:
        months.append(months[-1].shift(1))
    return months


def rows_of(month: Month, scale: float) -> int:
    """CVM's growth curve: 100 k rows in 2005-01, 560 k in 2025-01, geometric in between."""
    index = (month.ano - FIRST.ano) * 12 + month.mes - FIRST.mes
    return max(1, round(scale * ROWS_2005 * (ROWS_2025 / ROWS_2005) ** (index / 240)))


def layout_of(month: Month) -> str:
    if month < Month(2018, 1):
        return "a"
    return "b" if month < Month(2024, 10) else "c"


def publish(fake: FakeCvm, months: list[Month], rows: dict[Month, int]) -> dict[Month, int]:
    """Every month on the fake CVM as CVM publishes it; the data lines of each CSV."""
    lines: dict[Month, int] = {}
    years: dict[int, dict[int, bytes]] = {}
    for month in months:
        n_funds = max(1, rows[month] // len(business_days(month.ano, month.mes)))
        spec = MonthSpec(month.ano, month.mes, layout_of(month), n_funds=n_funds, seed=1)
        csv = generate_month(spec)
        lines[month] = csv.count(b"\n") - 1
        if month.ano <= LAST_HIST_YEAR:
            years.setdefault(month.ano, {})[month.mes] = csv
            if month.mes == 12 or month == months[-1]:
                fake.publish_year(month.ano, years.pop(month.ano))
        else:
            fake.publish_month(month.ano, month.mes, csv)
    return lines


class PeakMemory:
    """The peak resident memory of a process tree, Python and JVM apart and summed, sampled."""

    def __init__(self, pid: int) -> None:
        self.pid, self.python_mb, self.jvm_mb, self.total_mb = pid, 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            python = jvm = 0.0
            for pid, name in _tree(self.pid):
                if name == "java":
                    jvm += _rss_mb(pid)
                elif name.startswith("python"):
                    python += _rss_mb(pid)
            self.python_mb = max(self.python_mb, python)
            self.jvm_mb = max(self.jvm_mb, jvm)
            self.total_mb = max(self.total_mb, python + jvm)


def _tree(root: int) -> list[tuple[int, str]]:
    """The processes under `root`, but none under a JVM other than Python workers: the JVM
    starts helpers (jspawnhelper, Hadoop's shell commands) that, caught between fork and exec,
    show the JVM's whole resident memory as their own."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(proc.name))
        names[int(proc.name)] = name
    found, todo = [], [(root, False)]
    while todo:
        pid, under_jvm = todo.pop()
        name = names.get(pid, "")
        if not under_jvm or name.startswith("python"):
            found.append((pid, name))
        todo += [(child, under_jvm or name == "java") for child in children.get(pid, [])]
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_cli(first: Month, last: Month, lake: Path, home: Path, source: str) -> dict:
    """`dagster asset materialize` of the range, as a user types it: wall time, peak memory,
    and each stage's time from the run's events."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CVM210_SOURCE_URL": source,
        "CVM210_LAKE_URI": str(lake),
        "DAGSTER_HOME": str(home),
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cvm210_assets.definitions",
        "--select", ASSETS, "--partition-range", f"{first.key}...{last.key}",
    ]  # fmt: skip
    started = time.perf_counter()
    with (home / "cli.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        with PeakMemory(process.pid) as peak:
            code = process.wait()
    wall = round(time.perf_counter() - started, 1)
    if code != 0:
        tail = (home / "cli.log").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the CLI failed ({code}) on {first}...{last}:\n{tail}")
    return {
        "wall_s": wall,
        "python_peak_mb": round(peak.python_mb),
        "jvm_peak_mb": round(peak.jvm_mb),
        "peak_mb": round(peak.total_mb),
        "steps_s": _steps(home),
    }


def _steps(home: Path) -> dict[str, float]:
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs(limit=1)
        return {
            e.step_key: round(e.dagster_event.event_specific_data.duration_ms / 1000, 1)
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
        }


def _lines_accounted(lake: Path, lines: dict[Month, int]) -> list[str]:
    """The months whose bronze, silver and rejects do not add up to the CSV's lines."""
    from cvm210_assets.lake.raw_zone import StateStore
    from cvm210_assets.lake.storage import LocalStorage

    state = StateStore(LocalStorage(lake))
    wrong = []
    for month, n in lines.items():
        bronze, silver = state.get(BRONZE_TABLE.asset, month), state.get(SILVER_TABLE.asset, month)
        gold = state.get(GOLD_TABLE.asset, month)
        if not (bronze and silver and gold) or not (
            bronze["rows"] == n == silver["rows"] + silver["rejected"]
        ):
            wrong.append(month.key)
    return wrong


def history(scale: float, last: Month, work: Path) -> dict:
    months = months_until(last)
    rows = {m: rows_of(m, scale) for m in months}
    with FakeCvm() as fake:
        started = time.perf_counter()
        lines = publish(fake, months, rows)
        generated_s = round(time.perf_counter() - started, 1)
        result = run_cli(months[0], months[-1], work / "lake", work / "home", fake.base_url)
    total = sum(lines.values())
    return {
        "scale": scale,
        "months": len(months),
        "range": f"{months[0]}...{months[-1]}",
        "rows": total,
        "rows_first_month": lines[months[0]],
        "rows_last_month": lines[months[-1]],
        "generated_s": generated_s,
        **result,
        "rows_per_s": round(total / result["wall_s"]),
        "months_not_accounted": _lines_accounted(work / "lake", lines),
    }


def month_targets(last: Month, work: Path, big_rows: int) -> dict:
    """A 1.5 M-row month cold and DuckDB on it; a few-row month cold and unchanged; the whole
    range of few-row months in one run."""
    out: dict = {}
    work.mkdir(parents=True, exist_ok=True)
    with FakeCvm() as fake:
        days = len(business_days(last.ano, last.mes))
        big = generate_month(MonthSpec(last.ano, last.mes, "c", n_funds=big_rows // days, seed=1))
        fake.publish_month(last.ano, last.mes, big)
        (work / "big.csv").write_bytes(big)
        run = run_cli(last, last, work / "big-lake", work / "big-home", fake.base_url)
        duckdb_s = duckdb_reference(work / "big.csv", work / "big.parquet")
        out["month"] = {
            "rows": big.count(b"\n") - 1,
            **run,
            "duckdb_s": duckdb_s,
            "ratio_to_duckdb": round(run["wall_s"] / duckdb_s, 1),
        }
        del big
    with FakeCvm() as fake:
        tiny = generate_month(MonthSpec(last.ano, last.mes, "c", n_funds=1, seed=1))
        fake.publish_month(last.ano, last.mes, tiny)
        out["tiny_month"] = {
            "rows": tiny.count(b"\n") - 1,
            **run_cli(last, last, work / "tiny-lake", work / "tiny-home", fake.base_url),
        }
        # Rerun as a user reruns it: in the Dagster instance that ran the month, not in a fresh
        # DAGSTER_HOME, which would add creating Dagster's SQLite storage to the figure.
        out["unchanged"] = run_cli(
            last, last, work / "tiny-lake", work / "tiny-home", fake.base_url
        )
    months = months_until(last)
    with FakeCvm() as fake:
        lines = publish(fake, months, dict.fromkeys(months, 250))
        run = run_cli(months[0], months[-1], work / "tinies", work / "tinies-home", fake.base_url)
        out["tiny_history"] = {
            "months": len(months),
            "rows": sum(lines.values()),
            **run,
            "months_not_accounted": _lines_accounted(work / "tinies", lines),
        }
    return out


def markdown(report: dict) -> str:
    m, h, t = report["machine"], report.get("history"), report["targets"]
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB,"
        f" {m['os']}; Python {m['python']}, {m['java']};"
        f" {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        "",
    ]
    if h:
        lines += [
            f"The whole history, `dagster asset materialize --partition-range {h['range']}`"
            f" (scale {h['scale']}): {h['months']} months, {h['rows']:,} rows"
            f" ({h['rows_first_month']:,} in the first month, {h['rows_last_month']:,} in the"
            f" last); generating and serving them took {h['generated_s']} s before the run."
            " Months whose bronze ≠ silver + rejects = CSV lines:"
            f" {', '.join(h['months_not_accounted']) or 'none'}.",
            "",
        ]
    lines += [
        "| scenario | wall s | target s | rows/s | Python / JVM / total peak MB | stages s |",
        "|---|---|---|---|---|---|",
    ]
    if h:
        lines.append(
            _row("whole history", h, t["history_s"] if h["scale"] == 1 else None, h["rows"])
        )
    if "month" in report:
        for name, key, target in (
            (f"one month, {report['month']['rows']:,} rows, cold", "month", "month_1_5m_s"),
            (f"one month, {report['tiny_month']['rows']} rows, cold", "tiny_month", "tiny_month_s"),
            ("that month again, unchanged", "unchanged", "unchanged_s"),
            (f"{report['tiny_history']['months']} months of ~250 rows, one run", "tiny_history",
             "tiny_history_s"),
        ):  # fmt: skip
            lines.append(_row(name, report[key], t[target], report[key].get("rows")))
        month = report["month"]
        lines += [
            "",
            f"DuckDB on the {month['rows']:,}-row CSV (read, clean, deduplicate, aggregate):"
            f" {month['duckdb_s']} s; the CLI's month is {month['ratio_to_duckdb']}× that"
            f" (target ≤ {t['month_1_5m_duckdb_ratio']}×).",
        ]
    lines += [
        "",
        f"Peak memory target of the whole history: {t['history_peak_gb']} GB (Python + JVM).",
    ]
    return "\n".join(lines) + "\n"


def _row(name: str, run: dict, target: float | None, rows: int | None) -> str:
    rate = f"{round(rows / run['wall_s']):,}" if rows else ""
    stages = ", ".join(f"{k} {v}" for k, v in run["steps_s"].items())
    return (
        f"| {name} | {run['wall_s']} | {target or ''} | {rate} |"
        f" {run['python_peak_mb']} / {run['jvm_peak_mb']} / {run['peak_mb']} | {stages} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="rows a month × this (0: none)")
    parser.add_argument("--month-rows", type=int, default=1_500_000, help="0: no month targets")
    parser.add_argument("--out", default="history", help="results/<OUT>.json and .md")
    args = parser.parse_args()
    last = last_complete_month(dt.date.today())
    report: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="cvm210-history-") as tmp:
        if args.scale:
            report["history"] = history(args.scale, last, Path(tmp) / "history")
            print(json.dumps({"history": report["history"]}), flush=True)
        if args.month_rows:
            report |= month_targets(last, Path(tmp) / "months", args.month_rows)
    write_results(args.out, report, markdown(report))


if __name__ == "__main__":
    main()

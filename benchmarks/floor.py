"""The engine's floor: the least work a month needs on Delta Lake's Spark engine, timed as the
targets are timed (issue 14; benchmarks/README.md).

    .venv/bin/python benchmarks/floor.py            # about 6 minutes

The DuckDB reference's work (read every line as text, type it, keep the last row of a key, sum
each fund's month) in Spark, each run a fresh process started as a run starts its Spark: the
project's session settings, jars, JVM options and class archive. Two ways:

- `query`: CSV to Parquet in one chain of jobs, no table between: what Spark itself costs;
- `lake`: the lake's three Delta tables written one after the other (bronze's text lines,
  silver's typed rows, gold's sums), with none of the pipeline's rules, rejects, checks,
  statistics, sorting, metadata, reconciliation or events, and no Dagster. Each with the JIT
  as a large run has it and as a small run has it (the first compiler alone), the faster kept.

Whatever the pipeline does beyond this costs more, so a target below the floor cannot be met
on this engine and machine by any change to the pipeline. Sizes: a month of 20 rows, the
month-sized target's 1.38-1.44 M rows, and three such months in one process (the history's
batches are of up to 8 M rows), whose difference from one month is the floor's rate per row.
Figures go to benchmarks/results/floor.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import duckdb_reference, machine, write_results

from cvm210_assets.fake_cvm.generator import MonthSpec, business_days, generate_month

# A run's JVM has both of the JIT's compilers, or the first alone for small runs
# (resources.SMALL_RUN_ROWS): the floor is the faster of the two at every size.
JITS = ("tiered", "c1")

# The child: one cold process, as `dagster asset materialize` starts its Spark.
_FLOOR = """
import sys
from pyspark.sql import SparkSession, functions as F
from cvm210_assets.resources import SMALL_RUN_JVM_OPTIONS, jar_groups, session_jars, spark_config
from cvm210_assets.settings import Settings
from cvm210_assets.source.layouts import LAYOUTS

mode, jit, out, csvs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
settings = Settings.from_env()
conf = spark_config(settings) | session_jars(settings.jar_cache, jar_groups(settings))
if jit == "c1":  # the JIT's first compiler alone, as runs of < SMALL_RUN_ROWS have it
    conf["spark.driver.extraJavaOptions"] += " " + SMALL_RUN_JVM_OPTIONS
builder = SparkSession.builder
for key, value in conf.items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
columns = LAYOUTS["c"].columns
money = "decimal(17,2)"


def write(frame, name):
    if mode == "lake":
        frame.write.format("delta").partitionBy("ano", "mes").option(
            "delta.dataSkippingNumIndexedCols", "0"
        ).save(f"{out}/{name}")
        return spark.read.format("delta").load(f"{out}/{name}")
    return frame


lines = spark.read.text(csvs).where(~F.col("value").startswith("TP_FUNDO"))
fields = F.split("value", ";")
bronze = lines.select(
    *(fields[i].alias(name) for i, name in enumerate(columns)),
    F.monotonically_increasing_id().alias("numero_linha"),
    F.col("_metadata.file_name").alias("arquivo_origem"),
)
bronze = bronze.withColumns(
    {
        "ano": F.substring("DT_COMPTC", 1, 4).cast("int"),
        "mes": F.substring("DT_COMPTC", 6, 2).cast("int"),
    }
)
bronze = write(bronze, "bronze")
typed = bronze.select(
    F.col("TP_FUNDO_CLASSE").alias("tp_fundo"),
    F.regexp_replace("CNPJ_FUNDO_CLASSE", r"[./-]", "").alias("cnpj_fundo"),
    F.when(F.btrim("ID_SUBCLASSE") != "", F.btrim("ID_SUBCLASSE")).alias("id_subclasse"),
    F.col("DT_COMPTC").try_cast("date").alias("dt_comptc"),
    F.col("VL_TOTAL").try_cast(money).alias("vl_total"),
    F.col("VL_QUOTA").try_cast("decimal(27,12)").alias("vl_quota"),
    F.col("VL_PATRIM_LIQ").try_cast(money).alias("vl_patrim_liq"),
    F.col("CAPTC_DIA").try_cast(money).alias("captc_dia"),
    F.col("RESG_DIA").try_cast(money).alias("resg_dia"),
    F.col("NR_COTST").try_cast("int").alias("nr_cotst"),
    "numero_linha", "ano", "mes",
).where(
    (F.length("cnpj_fundo") == 14) & F.col("dt_comptc").isNotNull() & (F.col("vl_patrim_liq") > 0)
)
key = ["cnpj_fundo", "id_subclasse", "dt_comptc", "ano", "mes"]
repeated = (
    typed.groupBy(*key)
    .agg(F.max("numero_linha").alias("_last"), F.count("*").alias("_n"))
    .where("_n > 1")
    .select(*(F.col(c).alias(f"_r_{c}") for c in key), "_last")
)
on = [F.col(c).eqNullSafe(F.col(f"_r_{c}")) for c in key]
silver = typed.join(F.broadcast(repeated), on, "left").where(
    F.col("_last").isNull() | (F.col("numero_linha") == F.col("_last"))
).select(*typed.columns)
silver = write(silver, "silver")
zero = F.lit(0).cast(money)
gold = silver.groupBy("cnpj_fundo", "id_subclasse", "ano", "mes").agg(
    F.count("*").alias("dias_com_informe"),
    F.sum(F.coalesce("captc_dia", zero)).alias("total_captacao"),
    F.sum(F.coalesce("resg_dia", zero)).alias("total_resgate"),
    F.avg("vl_patrim_liq").alias("patrimonio_medio"),
    F.min_by("vl_patrim_liq", "dt_comptc").alias("patrimonio_inicial"),
    F.max_by("vl_patrim_liq", "dt_comptc").alias("patrimonio_final"),
    F.min_by("vl_quota", "dt_comptc").alias("cota_inicial"),
    F.max_by("vl_quota", "dt_comptc").alias("cota_final"),
    F.max("vl_quota").alias("cota_maxima"),
    F.min("vl_quota").alias("cota_minima"),
    F.count_if(F.coalesce("captc_dia", zero) < F.coalesce("resg_dia", zero)).alias(
        "dias_fluxo_negativo"
    ),
)
if mode == "lake":
    write(gold, "gold_kpis")
else:
    gold.write.parquet(f"{out}/gold.parquet")
"""


def cold_run(mode: str, jit: str, csvs: list[Path], work: Path) -> float:
    """The child's wall time, from the interpreter's start to its exit."""
    out = Path(tempfile.mkdtemp(dir=work))
    command = [sys.executable, "-c", _FLOOR, mode, jit, str(out), *map(str, csvs)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the floor's {mode} run failed:\n{done.stderr[-3000:]}")
    return round(wall, 1)


def month_csv(work: Path, ano: int, mes: int, funds: int) -> tuple[Path, int]:
    csv = generate_month(MonthSpec(ano, mes, "c", n_funds=funds, seed=mes))
    path = work / f"{funds}-funds" / f"inf_diario_fi_{ano}{mes:02d}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(csv)
    return path, csv.count(b"\n") - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--month-rows", type=int, default=1_440_303)
    parser.add_argument("--runs", type=int, default=2, help="cold runs of each, the best kept")
    parser.add_argument("--out", default="floor", help="results/<OUT>.json and .md")
    args = parser.parse_args()
    report: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="cvm210-floor-") as tmp:
        work = Path(tmp)
        funds = args.month_rows // len(business_days(2026, 10))
        tiny = [month_csv(work, 2026, 10, 1)]
        one = [month_csv(work, 2026, 10, funds)]
        three = one + [month_csv(work, 2026, m, funds) for m in (8, 9)]
        for name, months in (("20-row month", tiny), ("one month", one), ("three months", three)):
            csvs, rows = [p for p, _ in months], sum(n for _, n in months)
            size = {"size": name, "rows": rows}
            for mode in ("query", "lake"):
                for jit in JITS:
                    runs = [cold_run(mode, jit, csvs, work) for _ in range(args.runs)]
                    size[f"{mode}_{jit}"] = min(runs)
                size[mode] = min(size[f"{mode}_{jit}"] for jit in JITS)
            if name == "one month":
                size["duckdb"] = round(duckdb_reference(csvs[0], work / "duck.parquet"), 2)
            report["sizes"].append(size)
            print(json.dumps(size), flush=True)
    write_results(args.out, report, markdown(report))


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB;"
        f" Python {m['python']}, {m['java']}; pyspark {m['versions']['pyspark']}.",
        "",
        "| size | rows | query (CSV → Parquet) | lake (three Delta tables) | DuckDB |",
        "|---|---|---|---|---|",
    ]
    for s in report["sizes"]:
        duck = f"{s['duckdb']} s" if "duckdb" in s else ""
        query, lake = (
            f"{s[m]} s (both compilers {s[m + '_tiered']}, C1 {s[m + '_c1']})"
            for m in ("query", "lake")
        )
        lines.append(f"| {s['size']} | {s['rows']:,} | {query} | {lake} | {duck} |")
    one, three = report["sizes"][1], report["sizes"][2]
    rate = (three["rows"] - one["rows"]) / (three["lake"] - one["lake"])
    lines += [
        "",
        f"The lake's floor per row, from one month to three: {rate:,.0f} rows/s;"
        f" 78 M rows at that rate: {78e6 / rate / 60:.1f} min after the first month's"
        f" {one['lake']} s.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

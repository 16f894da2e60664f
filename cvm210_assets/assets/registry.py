"""fund_registry: who each fund is (name, class, manager, administrator), from CVM's registry.

Not partitioned: CVM republishes the whole registry every day, and the table is replaced as a
whole in one commit. No Spark: the files are small, and the step runs where Dagster runs
(through delta-rs in every deployment, as the lake's maintenance does).
"""

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    asset,
)

from cvm210_assets import PIPELINE_VERSION
from cvm210_assets.assets.common import (
    SKIPPED,
    BlockingCheckFailed,
    Check,
    Outcome,
    blocking_failure,
    is_current,
    markdown_table,
    now_utc,
    outcomes_from_record,
    table_schema,
)
from cvm210_assets.assets.gold import GOLD_ASSET
from cvm210_assets.lake.raw_zone import StateStore
from cvm210_assets.lake.schemas import FUND_REGISTRY, FUND_REGISTRY_KEY
from cvm210_assets.lake.table_catalog import GOLD_TABLE, REGISTRY_TABLE
from cvm210_assets.lake.tables import DeltaRsTables
from cvm210_assets.partitions import Month
from cvm210_assets.resources import CvmSource, Lake
from cvm210_assets.settings import Settings
from cvm210_assets.source.registry import (
    CAD_FI,
    cad_fi_url,
    capture,
    registry_members,
    registry_url,
)
from cvm210_assets.transforms.registry import (
    CAD_FI_COLUMNS,
    CAD_FI_OPTIONAL,
    CLASSE_COLUMNS,
    FUNDO_COLUMNS,
    FUNDO_OPTIONAL,
    SUBCLASSE_COLUMNS,
    build_registry,
    read_csv,
)

if TYPE_CHECKING:
    import pyarrow as pa

REGISTRY_ASSET = REGISTRY_TABLE.asset
# Below this share of gold's funds with a registry entry, names are missing where users look.
MIN_GOLD_COVERAGE = 0.9

ONE_ROW_PER_KEY = Check("one_registry_row_per_key", "One row per (cnpj_fundo, id_subclasse).")
CNPJ_14_DIGITS = Check("cnpj_fundo_14_digits", "Every cnpj_fundo is 14 digits.")
GOLD_COVERAGE = Check(
    "gold_funds_registered",
    f"At least {MIN_GOLD_COVERAGE:.0%} of the funds of gold_kpis' latest month have a registry"
    " entry (their subclass's, or their class's). A warning: the registry is still written.",
    blocking=False,
    severity=AssetCheckSeverity.WARN,
)
CHECKS = (ONE_ROW_PER_KEY, CNPJ_14_DIGITS, GOLD_COVERAGE)


class CvmRegistry(ConfigurableResource):
    """Where CVM publishes the fund registry: the zip's URL; cad_fi.csv sits beside it."""

    zip_url: str

    @property
    def cad_fi_url(self) -> str:
        return cad_fi_url(self.zip_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> "CvmRegistry":
        return cls(zip_url=registry_url(settings.source_url, settings.registry_url))


def evaluate(
    registry: "pa.Table", gold: "pa.Table | None", gold_month: Month | None
) -> list[Outcome]:
    """The three checks, on the rows about to be written and gold's latest month."""
    import pyarrow.compute as pc  # not with the code location: only this step needs it

    keys = list(zip(*(registry.column(c).to_pylist() for c in FUND_REGISTRY_KEY), strict=True))
    duplicates = len(keys) - len(set(keys))
    cnpjs = registry.column("cnpj_fundo")
    bad = registry.num_rows - (pc.sum(pc.match_substring_regex(cnpjs, r"^\d{14}$")).as_py() or 0)
    outcomes = [
        Outcome(ONE_ROW_PER_KEY, duplicates == 0, {"duplicate_keys": duplicates}),
        Outcome(CNPJ_14_DIGITS, bad == 0, {"cnpj_not_14_digits": bad}),
    ]
    if gold is None or gold.num_rows == 0 or gold_month is None:
        return [*outcomes, Outcome(GOLD_COVERAGE, True, {"note": "gold_kpis has no month yet"})]
    known = set(keys)
    gold_keys = list(
        zip(
            gold.column("cnpj_fundo").to_pylist(),
            gold.column("id_subclasse").to_pylist(),
            strict=True,
        )
    )
    missing = sorted(
        {(c, s) for c, s in gold_keys if (c, s) not in known and (c, None) not in known},
        key=lambda k: (k[0], k[1] or ""),
    )
    share = 1 - len(missing) / len(gold_keys)
    return [
        *outcomes,
        Outcome(
            GOLD_COVERAGE,
            share >= MIN_GOLD_COVERAGE,
            {
                "gold_month": gold_month.key,
                "gold_funds": len(gold_keys),
                "registered_share": round(share, 6),
                "unregistered": len(missing),
                "unregistered_sample": ", ".join(
                    c + (f"/{s}" if s else "") for c, s in missing[:10]
                ),
            },
        ),
    ]


def _latest_gold(
    state: StateStore, tables: DeltaRsTables
) -> "tuple[Month | None, pa.Table | None]":
    """gold_kpis' latest month (from its state records) and that month's keys."""
    months = state.months(GOLD_ASSET)
    if not months:
        return None, None
    return months[-1], tables.read_month_arrow(GOLD_TABLE.name, months[-1])


@asset(
    group_name="registry",
    kinds={"delta", "csv"},
    code_version=PIPELINE_VERSION,
    check_specs=[
        AssetCheckSpec(c.name, asset=REGISTRY_ASSET, description=c.description, blocking=c.blocking)
        for c in CHECKS
    ],
    metadata={
        "dagster/column_schema": table_schema(FUND_REGISTRY),
        "dagster/table_name": REGISTRY_TABLE.sql_name,
    },
    description=(
        "Who each fund is: name, type, CVM and ANBIMA class, manager, administrator, status and"
        " whether it is a fund of funds; one row per class CNPJ (or pre-CVM 175 fund CNPJ) and"
        " subclass, from CVM's registro_fundo_classe.zip and cad_fi.csv (every version kept in"
        " raw/cad/ by sha256). Replaced as a whole when CVM's files change."
    ),
)
def fund_registry(
    context: AssetExecutionContext, cvm: CvmSource, cvm_registry: CvmRegistry, lake: Lake
):
    storage, state, tables = lake.storage, lake.state, lake.tables
    with tempfile.TemporaryDirectory(prefix="cvm210-cad-") as tmp:
        workdir = Path(tmp)
        zipped = capture(cvm_registry.zip_url, cvm.fetch, storage, workdir)
        cad = capture(cvm_registry.cad_fi_url, cvm.fetch, storage, workdir)
        wanted = {
            "registry_sha256": zipped.sha256,
            "cad_fi_sha256": cad.sha256,
            "versao_pipeline": PIPELINE_VERSION,
            # A table written before a column was added is rewritten from the kept files on
            # the next run, even when CVM's files are unchanged.
            "colunas": ",".join(FUND_REGISTRY.fieldNames()),
        }
        sources = {
            "registry_url": MetadataValue.url(zipped.url),
            "registry_sha256": zipped.sha256,
            "registry_last_modified": zipped.last_modified or "",
            "cad_fi_url": MetadataValue.url(cad.url),
            "cad_fi_sha256": cad.sha256,
            "cad_fi_last_modified": cad.last_modified or "",
        }
        previous = state.get(REGISTRY_ASSET)
        if is_current(previous, wanted) and tables.version(REGISTRY_TABLE.name) is not None:
            context.log.info("CVM's registry files are unchanged; nothing to do")
            note = "unchanged input: verdict of the run that processed it"
            yield MaterializeResult(
                metadata={SKIPPED: True, "dagster/row_count": previous["rows"], **sources}
            )
            # After the materialization: Dagster counts a verdict only on the latest one.
            yield from (
                o.result(REGISTRY_ASSET, note) for o in outcomes_from_record(CHECKS, previous)
            )
            return
        members = registry_members(zipped.path)
        cad_bytes = cad.path.read_bytes()
    registry = build_registry(
        read_csv(
            "registro_fundo.csv", members["registro_fundo.csv"], FUNDO_COLUMNS, FUNDO_OPTIONAL
        ),
        read_csv("registro_classe.csv", members["registro_classe.csv"], CLASSE_COLUMNS),
        read_csv("registro_subclasse.csv", members["registro_subclasse.csv"], SUBCLASSE_COLUMNS),
        read_csv(CAD_FI, cad_bytes, CAD_FI_COLUMNS, CAD_FI_OPTIONAL),
        now_utc(),
    )
    outcomes = evaluate(registry.table, *reversed(_latest_gold(state, tables)))
    if blocking_failure(outcomes):
        yield from (o.result(REGISTRY_ASSET) for o in outcomes)  # on the version kept
        failed = [f"{o.check.name} failed {o.metadata}" for o in outcomes if not o.passed]
        raise BlockingCheckFailed(
            f"{REGISTRY_ASSET} not written (the table keeps its previous version): "
            + "; ".join(failed)
        )
    write = tables.replace_table(REGISTRY_TABLE.name, registry.table, wanted)
    record = {
        **wanted,
        "rows": registry.table.num_rows,
        "delta_version": write.version,
        "checks": [o.record() for o in outcomes],
    }
    state.put(REGISTRY_ASSET, None, record)
    yield MaterializeResult(
        metadata=_metadata(registry.table, registry.ignored, write.version, tables) | sources
    )
    yield from (o.result(REGISTRY_ASSET) for o in outcomes)


def _metadata(
    table: "pa.Table", ignored: Mapping[str, int], version: int, tables: DeltaRsTables
) -> dict[str, Any]:
    import pyarrow.compute as pc

    by_source = pc.value_counts(table.column("fonte")).to_pylist()
    return {
        "dagster/row_count": table.num_rows,
        **{f"rows_{item['values']}": item["counts"] for item in by_source},
        "subclasses": table.num_rows - table.column("id_subclasse").null_count,
        "funds_of_funds": pc.sum(pc.fill_null(table.column("fundo_de_cotas"), False)).as_py() or 0,
        **{f"ignored_{name}": count for name, count in ignored.items()},
        "delta_version": version,
        "table": MetadataValue.path(tables.uri(REGISTRY_TABLE.name)),
        "preview": markdown_table(
            table.slice(0, 10).to_pylist(),
            ["cnpj_fundo", "id_subclasse", "nome", "classe", "gestor", "administrador", "fonte"],
        ),
        SKIPPED: False,
    }

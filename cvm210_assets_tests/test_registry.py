"""fund_registry: CVM's registry files into one row per (cnpj_fundo, id_subclasse).

The transform is tested on small files written here (every dedup rule, by hand), then the
asset end to end on the fake CVM: the table must say what the fake registry meant to say
(its `expected`, never read back from the files), and CVM's real 2018 rows must come out as
read here by eye.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.request
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import materialize

from cvm210_assets.assets.registry import (
    CHECKS,
    CNPJ_14_DIGITS,
    GOLD_COVERAGE,
    ONE_ROW_PER_KEY,
    CvmRegistry,
    evaluate,
    fund_registry,
)
from cvm210_assets.fake_cvm.generator import MonthSpec, generate_month
from cvm210_assets.fake_cvm.registry import (
    CAD_FI_HEADER,
    CLASSE_HEADER,
    FUNDO_HEADER,
    SUBCLASSE_HEADER,
    registry_files,
)
from cvm210_assets.fake_cvm.server import CAD_PATH, FakeCvm
from cvm210_assets.partitions import Month
from cvm210_assets.settings import Settings
from cvm210_assets.transforms.registry import (
    CAD_FI_COLUMNS,
    CAD_FI_OPTIONAL,
    CLASSE_COLUMNS,
    FUNDO_COLUMNS,
    FUNDO_OPTIONAL,
    SUBCLASSE_COLUMNS,
    RegistryFileError,
    build_registry,
    cancelled,
    read_csv,
)
from cvm210_assets_tests.conftest import (
    check_results,
    check_status,
    make_pipeline,
    materialization_metadata,
)

WHEN = dt.datetime(2025, 2, 3, 11, 0, tzinfo=dt.timezone.utc)
# CVM's own registry: where fund_registry looks when no setting says otherwise.
REGISTRY_URL = "https://dados.cvm.gov.br/dados/FI/CAD/DADOS/registro_fundo_classe.zip"
COLUMNS = [
    "nome", "tipo", "classe", "classe_anbima", "gestor", "cnpj_gestor", "administrador",
    "cnpj_administrador", "situacao", "data_situacao", "data_cancelamento", "fundo_de_cotas",
    "fonte",
]  # fmt: skip


def _csv(header: str, *rows: str) -> bytes:
    return "\r\n".join([header, *rows, ""]).encode("latin-1")


def _build(fundos: list[str], classes: list[str], subs: list[str], cad: list[str]):
    return build_registry(
        read_csv("registro_fundo.csv", _csv(FUNDO_HEADER, *fundos), FUNDO_COLUMNS, FUNDO_OPTIONAL),
        read_csv("registro_classe.csv", _csv(CLASSE_HEADER, *classes), CLASSE_COLUMNS),
        read_csv("registro_subclasse.csv", _csv(SUBCLASSE_HEADER, *subs), SUBCLASSE_COLUMNS),
        read_csv("cad_fi.csv", _csv(CAD_FI_HEADER, *cad), CAD_FI_COLUMNS, CAD_FI_OPTIONAL),
        WHEN,
    )


def _fundo(fund_id: int, cnpj: str, nome: str, gestor: str, cnpj_gestor: str, sit="2024-01-02"):
    return (
        f"{fund_id};{cnpj};1;2020-01-01;2020-01-01;FIF;{nome};;Em Funcionamento Normal;{sit};"
        f";;;;;;191;BANCO X S.A.;PJ;{cnpj_gestor};{gestor}"
    )


def _classe(fund_id: int, class_id: int, cnpj: str, nome: str, sit: str, situacao: str, **kw):
    return (
        f"{fund_id};{class_id};{cnpj};1;2020-01-01;2020-01-01;2024-01-02;Classe de Cotas;{nome};"
        f"{situacao};{sit};{kw.get('classe', 'Ações')};;{kw.get('cotas', 'N')};Ações Livre;"
        ";;;;;;;;;;;;;;"
    )


def _cad(cnpj: str, nome: str, sit: str, dt_sit: str, gestor: str, cnpj_gestor: str, **kw) -> str:
    values = dict.fromkeys(CAD_FI_HEADER.split(";"), "")
    values |= {
        "TP_FUNDO": "FI",
        "CNPJ_FUNDO": cnpj,
        "DENOM_SOCIAL": nome,
        "SIT": sit,
        "DT_INI_SIT": dt_sit,
        "CLASSE": kw.get("classe", "Fundo de Renda Fixa"),
        "FUNDO_COTAS": kw.get("cotas", "N"),
        "CNPJ_ADMIN": "00.000.000/0001-91",
        "ADMIN": "BANCO DO BRASIL S.A.",
        "PF_PJ_GESTOR": kw.get("pf_pj", "PJ"),
        "CPF_CNPJ_GESTOR": cnpj_gestor,
        "GESTOR": gestor,
        "CLASSE_ANBIMA": "Renda Fixa Simples",
    }
    return ";".join(values.values())


def test_the_rules_resolve_every_duplicate_the_same_way() -> None:
    registry = _build(
        fundos=[
            # fund 1, co-managed: two rows, its managers joined sorted by name
            _fundo(1, "1234567000189", "FUNDO UM", "ZETA GESTORA", "3444555000136"),
            _fundo(1, "1234567000189", "FUNDO UM", "ALFA GESTORA", "11222333000181"),
            _fundo(2, "2222222000100", "FUNDO DOIS", "BETA", "22333444000172"),
            # fund 3 has no class: its own row, under its CNPJ
            _fundo(3, "33333333000133", "FII TRES", "BETA", "22333444000172"),
            "4;44;1;;;FIF;FUNDO TORTO;;Em Funcionamento Normal;;;;;;;;1;X;PJ;1;X;extra",
        ],
        classes=[
            # class 10 of fund 1: listed twice under its id, the last row wins
            _classe(1, 10, "1234567000189", "CLASSE UM VELHA", "2024-01-02", "X", cotas="S"),
            _classe(
                1,
                10,
                "1234567000189",
                "CLASSE UM",
                "2024-01-02",
                "Em Funcionamento Normal",
                cotas="S",
            ),
            # one CNPJ under two class ids: the most recent status wins
            _classe(2, 20, "5555555000155", "CLASSE ANTIGA", "2024-01-02", "Cancelada"),
            _classe(
                2,
                21,
                "5555555000155",
                "CLASSE NOVA",
                "2024-06-03",
                "Em Funcionamento Normal",
                classe="Multimercado",
            ),
        ],
        subs=[
            "10;SUB001;1;;;SUBCLASSE A;Em Funcionamento Normal;2024-01-02;;;;;;",
            "99;SUB009;1;;;ORFA;Em Funcionamento Normal;2024-01-02;;;;;;",
        ],
        cad=[
            # also a class of the new registry: the new registry wins
            _cad("01.234.567/0001-89", "NOME DO CAD", "CANCELADA", "2023-01-01", "G", "1"),
            # three managers at the current status, one row of an older status
            _cad("06.666.666/0001-66", "VELHO", "FASE PRÉ-OPERACIONAL", "2010-01-04", "OLD", "9"),
            _cad("06.666.666/0001-66", "SEIS", "EM FUNCIONAMENTO NORMAL", "2015-02-02", "B G", "2"),
            _cad("06.666.666/0001-66", "SEIS", "EM FUNCIONAMENTO NORMAL", "2015-02-02", "A G", "1"),
            _cad(
                "06.666.666/0001-66",
                "SEIS",
                "EM FUNCIONAMENTO NORMAL",
                "2015-02-02",
                "C P",
                "123.456.789-01",
                pf_pj="PF",
                classe="Fundo de Ações",
                cotas="S",
            ),
            _cad("ABC", "SEM CNPJ", "CANCELADA", "2015-02-02", "G", "1"),
        ],
    )
    rows = {(r["cnpj_fundo"], r["id_subclasse"]): r for r in registry.table.to_pylist()}
    assert set(rows) == {
        ("01234567000189", None),
        ("01234567000189", "SUB001"),
        ("05555555000155", None),
        ("33333333000133", None),
        ("06666666000166", None),
    }
    um = rows[("01234567000189", None)]
    assert {c: um[c] for c in COLUMNS} == {
        "nome": "CLASSE UM",
        "tipo": "Classe de Cotas",
        "classe": "Ações",
        "classe_anbima": "Ações Livre",
        "gestor": "ALFA GESTORA / ZETA GESTORA",
        "cnpj_gestor": "11222333000181 / 03444555000136",
        "administrador": "BANCO X S.A.",
        "cnpj_administrador": "00000000000191",
        "situacao": "Em Funcionamento Normal",
        "data_situacao": dt.date(2024, 1, 2),
        "data_cancelamento": None,
        "fundo_de_cotas": True,
        "fonte": "registro_fundo_classe",
    }
    assert um["dh_atualizacao"] == WHEN
    sub = rows[("01234567000189", "SUB001")]
    assert {c: sub[c] for c in COLUMNS} == {**{c: um[c] for c in COLUMNS}, "nome": "SUBCLASSE A"}
    nova = rows[("05555555000155", None)]
    assert (nova["nome"], nova["classe"], nova["gestor"]) == ("CLASSE NOVA", "Multimercado", "BETA")
    fii = rows[("33333333000133", None)]
    assert (fii["nome"], fii["tipo"], fii["classe"], fii["fonte"]) == (
        "FII TRES",
        "FIF",
        None,
        "registro_fundo_classe",
    )
    seis = rows[("06666666000166", None)]
    assert {c: seis[c] for c in COLUMNS} == {
        "nome": "SEIS",
        "tipo": "FI",
        "classe": "Ações",  # cad_fi's "Fundo de Ações", as CVM 175 names it
        "classe_anbima": "Renda Fixa Simples",
        "gestor": "A G / B G / C P",
        "cnpj_gestor": "00000000000001 / 00000000000002 / 12345678901",
        "administrador": "BANCO DO BRASIL S.A.",
        "cnpj_administrador": "00000000000191",
        "situacao": "EM FUNCIONAMENTO NORMAL",
        "data_situacao": dt.date(2015, 2, 2),
        "data_cancelamento": None,
        "fundo_de_cotas": True,
        "fonte": "cad_fi",
    }
    assert registry.ignored == {
        "registro_fundo.csv:linhas_ilegiveis": 1,
        "registro_classe.csv:linhas_ilegiveis": 0,
        "registro_subclasse.csv:linhas_ilegiveis": 0,
        "cad_fi.csv:linhas_ilegiveis": 0,
        "cnpj_invalido": 1,
        "subclasse_sem_classe": 1,
    }
    # The older class 20 of 05555555000155 was Cancelada: the newer class's status won.
    assert (nova["situacao"], nova["data_cancelamento"]) == ("Em Funcionamento Normal", None)
    # Sorted by key, the class before its subclasses.
    keys = [(r["cnpj_fundo"], r["id_subclasse"] or "") for r in registry.table.to_pylist()]
    assert keys == sorted(keys)


def test_a_cancelled_key_keeps_its_cancellation_date() -> None:
    """The `encerramento` event reads data_cancelamento (docs/events.md): the file's own date
    of the cancellation, else the status's; NULL unless the status, accents and case aside,
    says cancelled."""
    registry = _build(
        fundos=[
            # a fund without classes, cancelled: registro_fundo's Data_Cancelamento wins
            "7;77777777000177;1;2020-01-01;2020-01-01;FIF;FUNDO SETE;2024-05-10;Cancelado;"
            "2024-05-13;;;;;;;191;BANCO X S.A.;PJ;1;G",
            _fundo(8, "8888888000188", "FUNDO OITO", "G", "1"),
        ],
        classes=[_classe(8, 80, "8888888000188", "CLASSE OITO", "2024-03-01", "CANCELADA")],
        subs=[
            "80;S1;1;;;SUB UM;;;;;;;;",  # no status of its own: its class's
            "80;S2;1;;;SUB DOIS;Em Funcionamento Normal;2024-01-02;;;;;;",
        ],
        cad=[_cad("09.999.999/0001-99", "NOVE", "Cancelada", "2019-07-01", "G", "1")],
    )
    rows = {(r["cnpj_fundo"], r["id_subclasse"]): r for r in registry.table.to_pylist()}
    dates = {k: (r["data_situacao"], r["data_cancelamento"]) for k, r in rows.items()}
    assert dates == {
        ("77777777000177", None): (dt.date(2024, 5, 13), dt.date(2024, 5, 10)),
        ("08888888000188", None): (dt.date(2024, 3, 1), dt.date(2024, 3, 1)),
        ("08888888000188", "S1"): (dt.date(2024, 3, 1), dt.date(2024, 3, 1)),
        ("08888888000188", "S2"): (dt.date(2024, 1, 2), None),
        ("09999999000199", None): (dt.date(2019, 7, 1), dt.date(2019, 7, 1)),
    }
    assert [cancelled(s) for s in ("CANCELADA", "cancelado", " Cancelada ", "CANCELADÁ")] == [
        True
    ] * 4
    assert not any(cancelled(s) for s in (None, "", "EM FUNCIONAMENTO NORMAL", "LIQUIDAÇÃO"))


def test_a_file_without_a_needed_column_is_an_error_naming_what_it_saw() -> None:
    header = FUNDO_HEADER.removesuffix(";Gestor") + ";Nome_Gestor"
    with pytest.raises(RegistryFileError, match=r"registro_fundo.csv: columns \['Gestor'\]"):
        read_csv("registro_fundo.csv", _csv(header), FUNDO_COLUMNS)


def registry_url(env: dict[str, str]) -> str:
    """The registry's URL the code location gets from these settings."""
    return CvmRegistry.from_settings(Settings.from_env(env)).zip_url


def test_the_registry_url_follows_the_source_url_unless_set() -> None:
    assert registry_url({}) == REGISTRY_URL
    source = "http://127.0.0.1:8765/dados/FI/DOC/INF_DIARIO/DADOS"
    assert registry_url({"CVM210_SOURCE_URL": source}) == (
        "http://127.0.0.1:8765/dados/FI/CAD/DADOS/registro_fundo_classe.zip"
    )
    assert registry_url({"CVM210_SOURCE_URL": source + "/"}) == registry_url(
        {"CVM210_SOURCE_URL": source}
    )
    own = "https://mirror.example/cad/registro_fundo_classe.zip"
    assert registry_url({"CVM210_SOURCE_URL": source, "CVM210_REGISTRY_URL": own}) == own
    assert CvmRegistry(zip_url=own).cad_fi_url == "https://mirror.example/cad/cad_fi.csv"


def test_checks_catch_duplicate_keys_bad_cnpjs_and_unregistered_gold_funds() -> None:
    schema = pa.schema([("cnpj_fundo", pa.string()), ("id_subclasse", pa.string())])
    good = pa.table(
        {"cnpj_fundo": ["01234567000189", "01234567000189"], "id_subclasse": [None, "A"]},
        schema=schema,
    )
    bad = pa.table(
        {
            "cnpj_fundo": ["1234567000189", "01234567000189", "01234567000189"],
            "id_subclasse": [None, "A", "A"],
        },
        schema=schema,
    )
    gold = pa.table(
        {
            "cnpj_fundo": ["01234567000189", "01234567000189", "09999999000199"],
            "id_subclasse": [None, "B", None],  # B: no subclass entry, its class's counts
        },
        schema=schema,
    )
    month = Month(2025, 1)
    verdicts = {o.check: (o.passed, o.metadata) for o in evaluate(good, gold, month)}
    assert verdicts[ONE_ROW_PER_KEY][0] and verdicts[CNPJ_14_DIGITS][0]
    assert verdicts[GOLD_COVERAGE] == (
        False,
        {
            "gold_month": "2025-01",
            "gold_funds": 3,
            "registered_share": round(2 / 3, 6),
            "unregistered": 1,
            "unregistered_sample": "09999999000199",
        },
    )
    verdicts = {o.check: (o.passed, o.metadata) for o in evaluate(bad, None, None)}
    assert verdicts[ONE_ROW_PER_KEY] == (False, {"duplicate_keys": 1})
    assert verdicts[CNPJ_14_DIGITS] == (False, {"cnpj_not_14_digits": 1})
    assert verdicts[GOLD_COVERAGE][0]


# CVM's real 2018 rows (fake_cvm/real/inf_cadastral_fi_2018_*.csv), as read by eye.
REAL = {
    "10705335000169": {
        "nome": "CLARITAS INSTITUCIONAL FUNDO DE INVESTIMENTO MULTIMERCADO",
        "tipo": None,
        "classe": "Multimercado",
        "classe_anbima": None,
        "gestor": "CLARITAS ADMINISTRAÇÃO DE RECURSOS LTDA",
        "cnpj_gestor": "03987891000100",
        "administrador": "BNY MELLON SERVICOS FINANCEIROS DTVM S.A.",
        "cnpj_administrador": "02201501000161",
        "situacao": "EM FUNCIONAMENTO NORMAL",
        "data_situacao": dt.date(2009, 6, 22),
        "data_cancelamento": None,
        "fundo_de_cotas": False,
        "fonte": "cad_fi",
    },
    "05526548000193": {
        "nome": "OPPORTUNITY SOP FUNDO DE INVESTIMENTO EM COTAS DE FUNDOS DE INVESTIMENTO EM AÇÕES",
        "tipo": None,
        "classe": "Ações",
        "classe_anbima": None,
        "gestor": "OPPORTUNITY ASSET ADMINISTRADORA DE RECURSOS DE TERCEIROS LTDA"
        " / OPPORTUNITY GESTORA DE RECURSOS LTDA"
        " / OPPORTUNITY GESTÃO DE INVESTIMENTOS E RECURSOS LTDA",
        "cnpj_gestor": "05395883000108 / 01608570000121 / 09647907000111",
        "administrador": "BNY MELLON SERVICOS FINANCEIROS DTVM S.A.",
        "cnpj_administrador": "02201501000161",
        "situacao": "CANCELADA",
        "data_situacao": dt.date(2013, 11, 18),
        "data_cancelamento": dt.date(2013, 11, 18),
        "fundo_de_cotas": True,
        "fonte": "cad_fi",
    },
    "19959754000100": {  # listed twice: EM FUNCIONAMENTO NORMAL (2014), CANCELADA (2017)
        "nome": "AB CAPITAL II FUNDO DE INVESTIMENTO IMOBILIÁRIO",
        "tipo": None,
        "classe": "Multimercado",
        "classe_anbima": None,
        "gestor": None,
        "cnpj_gestor": None,
        "administrador": None,
        "cnpj_administrador": None,
        "situacao": "CANCELADA",
        # DT_CANCEL is 2017-12-29 on both rows, the older status's too
        "data_situacao": dt.date(2017, 12, 29),
        "data_cancelamento": dt.date(2017, 12, 29),
        "fundo_de_cotas": False,
        "fonte": "cad_fi",
    },
}


def _registry_rows(pipeline) -> dict:
    table = pipeline.tables.dataset("fund_registry").to_table()
    return {(r["cnpj_fundo"], r["id_subclasse"]): r for r in table.to_pylist()}


def test_fund_registry_from_the_fake_cvm_kept_by_version_and_skipped_when_unchanged(
    fake_cvm: FakeCvm, tmp_path: Path
) -> None:
    csv = generate_month(MonthSpec(2025, 1, "c", n_funds=150, seed=3, subclass_share=0.05))
    files = registry_files([csv], seed=3)
    fake_cvm.publish_registry(files)
    pipeline = make_pipeline(str(tmp_path / "lake"), fake_cvm.base_url)
    resources = {
        **pipeline.resources,
        "cvm_registry": CvmRegistry(zip_url=fake_cvm.url(f"{CAD_PATH}/registro_fundo_classe.zip")),
    }

    def run():
        return materialize([fund_registry], resources=resources, instance=pipeline.instance)

    result = run()
    rows = _registry_rows(pipeline)
    assert set(rows) == set(files.expected) | {(c, None) for c in REAL}
    for key, expected in files.expected.items():
        assert {c: rows[key][c] for c in expected} == expected, key
    for cnpj, expected in REAL.items():
        assert {c: rows[(cnpj, None)][c] for c in COLUMNS} == expected, cnpj
    assert any(sub for _, sub in files.expected)  # subclasses were exercised
    assert check_results(result) == {
        "fund_registry:one_registry_row_per_key": True,
        "fund_registry:cnpj_fundo_14_digits": True,
        "fund_registry:gold_funds_registered": True,
    }
    shown = {c.name: check_status(pipeline.instance, "fund_registry", c.name) for c in CHECKS}
    assert shown == dict.fromkeys(shown, "SUCCEEDED")  # as the UI shows them
    metadata = materialization_metadata(result, "fund_registry")
    assert metadata["dagster/row_count"] == len(rows)
    assert metadata["rows_cad_fi"] == sum(1 for r in rows.values() if r["fonte"] == "cad_fi")
    assert metadata["cvm210/unchanged"] is False

    # Every version kept by sha256, with its record; the table is one commit.
    storage = pipeline.resources["lake"].storage
    zip_keys = storage.list("raw/cad/registro_fundo_classe/")
    # Where lakes have kept it since the registry began: StateStore reads it there.
    state = json.loads(storage.read_bytes("_state/fund_registry/latest.json"))
    assert f"raw/cad/registro_fundo_classe/{state['registry_sha256']}.zip" in zip_keys
    assert f"raw/cad/cad_fi/{state['cad_fi_sha256']}.csv" in storage.list("raw/cad/cad_fi/")
    version = pipeline.tables.version("fund_registry")

    # Unchanged at CVM: HTTP 304 for both files, no commit, the checks' verdicts repeated.
    fake_cvm.reset_log()
    again = run()
    assert fake_cvm.count("GET", "registro_fundo_classe.zip") == 1
    assert [r.status for r in fake_cvm.requests] == [304, 304]
    assert materialization_metadata(again, "fund_registry")["cvm210/unchanged"] is True
    assert pipeline.tables.version("fund_registry") == version
    assert all(check_results(again).values())
    assert {
        c.name: check_status(pipeline.instance, "fund_registry", c.name) for c in CHECKS
    } == shown

    # A table written before its newest columns (its record does not name them) is rewritten
    # from the kept files, though CVM's are unchanged.
    record = json.loads(storage.read_bytes("_state/fund_registry/latest.json"))
    del record["colunas"]
    storage.write_bytes("_state/fund_registry/latest.json", json.dumps(record).encode())
    assert materialization_metadata(run(), "fund_registry")["cvm210/unchanged"] is False
    assert pipeline.tables.version("fund_registry") == version + 1
    version += 1

    # CVM changes its registry: a new version is kept and the table replaced in one commit.
    changed = registry_files([csv], seed=4)
    fake_cvm.publish_registry(changed)
    run()
    assert pipeline.tables.version("fund_registry") == version + 1
    assert len(storage.list("raw/cad/registro_fundo_classe/")) == len(zip_keys) + 2
    rows = _registry_rows(pipeline)
    for key, expected in changed.expected.items():
        assert {c: rows[key][c] for c in expected} == expected, key


def test_fund_registry_names_the_demo_sites_funds(tmp_path: Path) -> None:
    """Offline, as the README's UI instructions run it: the demo site's registry fills names
    for the funds of its months (the registry URL is the default one, derived from the
    source URL)."""
    from cvm210_assets.fake_cvm.demo_site import publish_demo
    from cvm210_assets.fake_cvm.registry import _series

    with FakeCvm() as fake:
        publish_demo(fake, n_funds=20)
        pipeline = make_pipeline(str(tmp_path / "lake"), fake.base_url)
        registry = CvmRegistry.from_settings(pipeline.settings)
        result = materialize(
            [fund_registry],
            resources={**pipeline.resources, "cvm_registry": registry},
            instance=pipeline.instance,
        )
        with urllib.request.urlopen(fake.url("inf_diario_fi_202403.zip"), timeout=5) as answer:
            march = answer.read()
        with zipfile.ZipFile(io.BytesIO(march)) as z:
            cnpjs = set(_series([z.read("inf_diario_fi_202403.csv")]))
    assert result.success and all(check_results(result).values())
    rows = _registry_rows(pipeline)
    named = {c for (c, _), r in rows.items() if r["nome"]}
    # Every fund of the month has a name, but the ~3 % the fake registry leaves out on purpose.
    assert len(cnpjs & named) >= 0.9 * len(cnpjs)

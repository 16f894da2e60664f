"""A fake fund registry for the funds of generated months, in CVM's files and layouts.

`registro_fundo_classe.zip` (registro_fundo.csv, registro_classe.csv, registro_subclasse.csv:
CNPJs printed as numbers, so leading zeros are lost as in CVM's files) and `cad_fi.csv`
(punctuated CNPJs, plus CVM's real 2018 rows re-laid under today's header). Every CNPJ of the
given inf_diario CSVs is registered, except about 3 % left out on purpose, and the files hold
the cases the registry's rules resolve: a co-managed fund on two rows, a class whose CNPJ is
also in cad_fi, a cad_fi fund whose older status is still listed, subclasses, funds of funds.

`expected` is what the registry table must say for each key, from the choices made here,
never from reading the files back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from cvm210_assets.fake_cvm.generator import _zip, format_cnpj, make_cnpj

FUNDO_HEADER = (
    "ID_Registro_Fundo;CNPJ_Fundo;Codigo_CVM;Data_Registro;Data_Constituicao;Tipo_Fundo;"
    "Denominacao_Social;Data_Cancelamento;Situacao;Data_Inicio_Situacao;Data_Adaptacao_RCVM175;"
    "Data_Inicio_Exercicio_Social;Data_Fim_Exercicio_Social;Patrimonio_Liquido;"
    "Data_Patrimonio_Liquido;Diretor;CNPJ_Administrador;Administrador;Tipo_Pessoa_Gestor;"
    "CPF_CNPJ_Gestor;Gestor"
)
CLASSE_HEADER = (
    "ID_Registro_Fundo;ID_Registro_Classe;CNPJ_Classe;Codigo_CVM;Data_Registro;"
    "Data_Constituicao;Data_Inicio;Tipo_Classe;Denominacao_Social;Situacao;Data_Inicio_Situacao;"
    "Classificacao;Indicador_Desempenho;Classe_Cotas;Classificacao_Anbima;Tributacao_Longo_Prazo;"
    "Entidade_Investimento;Permitido_Aplicacao_CemPorCento_Exterior;Classe_ESG;Forma_Condominio;"
    "Exclusivo;Publico_Alvo;Patrimonio_Liquido;Data_Patrimonio_Liquido;CNPJ_Auditor;Auditor;"
    "CNPJ_Custodiante;Custodiante;CNPJ_Controlador;Controlador"
)
SUBCLASSE_HEADER = (
    "ID_Registro_Classe;ID_Subclasse;Codigo_CVM;Data_Constituicao;Data_Inicio;"
    "Denominacao_Social;Situacao;Data_Inicio_Situacao;Forma_Condominio;Exclusivo;Publico_Alvo;"
    "Previdenciario;Exclusivo_INR;Exclusivo_Previdencia_Complementar"
)
CAD_FI_HEADER = (
    "TP_FUNDO;CNPJ_FUNDO;DENOM_SOCIAL;DT_REG;DT_CONST;CD_CVM;DT_CANCEL;SIT;DT_INI_SIT;"
    "DT_INI_ATIV;DT_INI_EXERC;DT_FIM_EXERC;CLASSE;DT_INI_CLASSE;RENTAB_FUNDO;CONDOM;FUNDO_COTAS;"
    "FUNDO_EXCLUSIVO;TRIB_LPRAZO;PUBLICO_ALVO;ENTID_INVEST;TAXA_PERFM;INF_TAXA_PERFM;TAXA_ADM;"
    "INF_TAXA_ADM;VL_PATRIM_LIQ;DT_PATRIM_LIQ;DIRETOR;CNPJ_ADMIN;ADMIN;PF_PJ_GESTOR;"
    "CPF_CNPJ_GESTOR;GESTOR;CNPJ_AUDITOR;AUDITOR;CNPJ_CUSTODIANTE;CUSTODIANTE;CNPJ_CONTROLADOR;"
    "CONTROLADOR;INVEST_CEMPR_EXTER;CLASSE_ANBIMA"
)
REAL_CAD_FILES = (
    "inf_cadastral_fi_2018_fundo_com_admin_auditor.csv",
    "inf_cadastral_fi_2018_fundo_multiplos_gestores.csv",
    "inf_cadastral_fi_2018_fundo_registros_cancelados.csv",
)

GESTORES = (
    ("ALFA GESTÃO DE RECURSOS LTDA", "11222333000181"),
    ("BETA INVESTIMENTOS S.A.", "22333444000172"),
    ("GAMA ASSET MANAGEMENT LTDA", "03444555000136"),
    ("DELTA CAPITAL GESTORA LTDA", "44555666000100"),
)
ADMINISTRADORES = (
    ("BANCO ÔMEGA S.A.", "55666777000169"),
    ("SIGMA DTVM LTDA", "06777888000125"),
    ("KAPPA SERVIÇOS FIDUCIÁRIOS S.A.", "77888999000103"),
)
CLASSES = (
    ("Renda Fixa", "Renda Fixa Duração Livre Crédito Livre", "Fundo de Renda Fixa"),
    ("Ações", "Ações Livre", "Fundo de Ações"),
    ("Multimercado", "Multimercados Livre", "Fundo Multimercado"),
    ("Cambial", "Cambial", "Fundo Cambial"),
)
SITUACAO = "Em Funcionamento Normal"
SITUACAO_CAD = "EM FUNCIONAMENTO NORMAL"


@dataclass(frozen=True)
class RegistryFiles:
    zip: bytes  # registro_fundo_classe.zip
    cad_fi: bytes  # cad_fi.csv
    expected: dict[tuple[str, str | None], dict[str, object]]
    """(cnpj_fundo, id_subclasse) -> the registry's columns (dh_atualizacao aside)."""


def _draw(seed: int, cnpj: str, salt: str) -> int:
    digest = hashlib.sha256(f"{seed}:{cnpj}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _series(csvs: Iterable[bytes]) -> dict[str, set[str]]:
    """CNPJ (14 digits) -> its subclass ids, from inf_diario CSVs of any layout."""
    found: dict[str, set[str]] = {}
    for csv in csvs:
        lines = csv.decode("latin-1").replace("\r", "").split("\n")
        header = lines[0].split(";")
        cnpj_at = header.index("CNPJ_FUNDO_CLASSE" if "ID_SUBCLASSE" in header else "CNPJ_FUNDO")
        sub_at = header.index("ID_SUBCLASSE") if "ID_SUBCLASSE" in header else None
        for line in lines[1:]:
            fields = line.split(";")
            if len(fields) != len(header):
                continue
            digits = "".join(c for c in fields[cnpj_at] if c.isdigit())
            if len(digits) != 14:
                continue
            subs = found.setdefault(digits, set())
            if sub_at is not None and fields[sub_at].strip():
                subs.add(fields[sub_at].strip())
    return found


def registry_files(csvs: Iterable[bytes], seed: int = 0) -> RegistryFiles:
    """The registry of the funds in `csvs` (and a few more), with what the table must hold."""
    fundos: list[str] = []
    classes: list[str] = []
    subclasses: list[str] = []
    cad: list[str] = []
    expected: dict[tuple[str, str | None], dict[str, object]] = {}
    series = _series(csvs)
    co_managed = cad_history = in_both = False
    for n, (cnpj, subs) in enumerate(sorted(series.items()), start=1):
        draw = _draw(seed, cnpj, "kind") % 100
        if draw < 3 and not subs:
            continue  # not registered: the share check's denominator sees it
        classe, anbima, classe_cad = CLASSES[_draw(seed, cnpj, "classe") % len(CLASSES)]
        gestor = GESTORES[_draw(seed, cnpj, "gestor") % len(GESTORES)]
        admin = ADMINISTRADORES[_draw(seed, cnpj, "admin") % len(ADMINISTRADORES)]
        fof = _draw(seed, cnpj, "fof") % 5 == 0
        nome = f"FUNDO {cnpj[:8]} {classe.upper()}"
        row = {
            "cnpj_fundo": cnpj,
            "id_subclasse": None,
            "nome": nome,
            "classe": classe,
            "gestor": gestor[0],
            "cnpj_gestor": gestor[1],
            "administrador": admin[0],
            "cnpj_administrador": admin[1],
            "fundo_de_cotas": fof,
        }
        if subs or draw < 65:  # a CVM 175 class
            fund_cnpj = cnpj if n % 2 else make_cnpj(f"{90_000_000 + n:08d}0001")
            managers = [gestor]
            if not co_managed:  # the first class's fund has two managers, on two rows
                co_managed = True
                managers = sorted({gestor, GESTORES[(GESTORES.index(gestor) + 1) % 4]})
            for manager in managers:
                fundos.append(
                    f"{n};{int(fund_cnpj)};{n};2020-01-02;2020-01-02;FIF;{nome} FUNDO;;{SITUACAO};"
                    f"2024-01-02;2024-01-02;2025-01-01;2025-12-31;1000.00;2025-01-31;DIRETOR;"
                    f"{int(admin[1])};{admin[0]};PJ;{int(manager[1])};{manager[0]}"
                )
            classes.append(
                f"{n};{10 * n};{int(cnpj)};{n};2020-01-02;2020-01-02;2024-01-02;"
                f"Classe de Cotas;{nome};{SITUACAO};2024-01-02;{classe};CDI;"
                f"{'S' if fof else 'N'};{anbima};N;N;N;N;Aberto;N;Geral;1000.00;2025-01-31;"
                ";;;;;"
            )
            row |= {
                "tipo": "Classe de Cotas",
                "classe_anbima": anbima,
                "gestor": " / ".join(m[0] for m in managers),
                "cnpj_gestor": " / ".join(m[1] for m in managers),
                "situacao": SITUACAO,
                "fonte": "registro_fundo_classe",
            }
            for sub in sorted(subs):
                subclasses.append(
                    f"{10 * n};{sub};{n};2020-01-02;2024-01-02;{nome} SUBCLASSE {sub};"
                    f"{SITUACAO};2024-01-02;Aberto;N;Geral;N;N;N"
                )
                expected[(cnpj, sub)] = {
                    **row,
                    "id_subclasse": sub,
                    "nome": f"{nome} SUBCLASSE {sub}",
                }
            if not in_both:  # also in cad_fi, under an old name: the new registry wins
                in_both = True
                cad.append(_cad_row(format_cnpj(cnpj), "NOME ANTIGO", classe_cad, admin, gestor))
        else:  # a fund that predates CVM 175: cad_fi only
            row |= {
                "tipo": "FI",
                "classe_anbima": anbima,
                "situacao": SITUACAO_CAD,
                "fonte": "cad_fi",
            }
            if not cad_history:  # an older status of the same fund, listed first
                cad_history = True
                cad.append(
                    _cad_row(format_cnpj(cnpj), "NOME DE 2010", classe_cad, admin, gestor).replace(
                        f";{SITUACAO_CAD};2024-01-02;", ";FASE PRÉ-OPERACIONAL;2010-05-03;"
                    )
                )
            cad.append(_cad_row(format_cnpj(cnpj), nome, classe_cad, admin, gestor, fof))
        expected[(cnpj, None)] = row
    cad.extend(_real_cad_rows())
    registry_zip = _zip(
        {
            "registro_fundo.csv": _csv(FUNDO_HEADER, fundos),
            "registro_classe.csv": _csv(CLASSE_HEADER, classes),
            "registro_subclasse.csv": _csv(SUBCLASSE_HEADER, subclasses),
        },
        {
            name: (2025, 1, 31)
            for name in ("registro_fundo.csv", "registro_classe.csv", "registro_subclasse.csv")
        },
    )
    return RegistryFiles(registry_zip, _csv(CAD_FI_HEADER, cad), expected)


def _cad_row(
    cnpj: str,
    nome: str,
    classe: str,
    admin: tuple[str, str],
    gestor: tuple[str, str],
    fof: bool = False,
) -> str:
    values = dict.fromkeys(CAD_FI_HEADER.split(";"), "")
    values |= {
        "TP_FUNDO": "FI",
        "CNPJ_FUNDO": cnpj,
        "DENOM_SOCIAL": nome,
        "DT_REG": "2010-05-03",
        "SIT": SITUACAO_CAD,
        "DT_INI_SIT": "2024-01-02",
        "CLASSE": classe,
        "FUNDO_COTAS": "S" if fof else "N",
        "CNPJ_ADMIN": format_cnpj(admin[1]),
        "ADMIN": admin[0],
        "PF_PJ_GESTOR": "PJ",
        "CPF_CNPJ_GESTOR": format_cnpj(gestor[1]),
        "GESTOR": gestor[0],
        "CLASSE_ANBIMA": dict((c[2], c[1]) for c in CLASSES)[classe],
    }
    return ";".join(values.values())


def _real_cad_rows() -> list[str]:
    """CVM's real 2018 registry rows (29 columns) under today's header, by column name."""
    columns = CAD_FI_HEADER.split(";")
    rows = []
    for name in REAL_CAD_FILES:
        text = resources.files(__package__).joinpath("real", name).read_bytes().decode("latin-1")
        lines = [line for line in text.replace("\r", "").split("\n") if line]
        header = lines[0].split(";")
        for line in lines[1:]:
            values = dict(zip(header, line.split(";"), strict=True))
            rows.append(";".join(values.get(c, "") for c in columns))
    return rows


def _csv(header: str, rows: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in [header, *rows]).encode("latin-1")

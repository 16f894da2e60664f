"""Where CVM publishes each month: a monthly file, or a member of a yearly archive under HIST/."""

from __future__ import annotations

from cvm210_assets.partitions import Month

CVM_DADOS_URL = "https://dados.cvm.gov.br/dados/FI/DOC/INF_DIARIO/DADOS"


def monthly_name(month: Month) -> str:
    return f"inf_diario_fi_{month.compact}"


def yearly_name(ano: int) -> str:
    return f"inf_diario_fi_{ano:04d}"


def monthly_url(base_url: str, month: Month) -> str:
    return f"{base_url.rstrip('/')}/{monthly_name(month)}.zip"


def yearly_url(base_url: str, ano: int) -> str:
    return f"{base_url.rstrip('/')}/HIST/{yearly_name(ano)}.zip"

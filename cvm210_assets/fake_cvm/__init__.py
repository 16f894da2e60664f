"""Offline stand-in for CVM's open-data site: a data generator and a local HTTP server."""

from cvm210_assets.fake_cvm.generator import (
    DIRT_KINDS,
    LAYOUT_HEADERS,
    GeneratedMonth,
    MonthSpec,
    business_days,
    cnpj_check_digits,
    format_cnpj,
    generate,
    generate_month,
    make_cnpj,
    monthly_zip,
    real_csv,
    restate,
    with_real_rows,
    yearly_single_member_zip,
    yearly_zip,
)
from cvm210_assets.fake_cvm.server import DADOS_PATH, FakeCvm, RequestRecord

__all__ = [
    "DADOS_PATH",
    "DIRT_KINDS",
    "LAYOUT_HEADERS",
    "FakeCvm",
    "GeneratedMonth",
    "MonthSpec",
    "RequestRecord",
    "business_days",
    "cnpj_check_digits",
    "format_cnpj",
    "generate",
    "generate_month",
    "make_cnpj",
    "monthly_zip",
    "real_csv",
    "restate",
    "with_real_rows",
    "yearly_single_member_zip",
    "yearly_zip",
]

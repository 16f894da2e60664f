"""The two files a deployment edits: the alert rules and the advisors' watchlist (YAML).

Both are read with `yaml.safe_load` and validated here, so a typo fails loudly, naming the file
and the key, instead of silently turning a rule off or an advisor deaf.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from cvm210_assets.gold_rules import PEER_GROUPS


class ConfigError(ValueError):
    """A rules or watchlist file that cannot be used as written."""


@dataclass(frozen=True)
class AlertRules:
    """When a fund's month raises an alert. A rule set to None is off; the floor always applies.

    Percentages are of the net assets on the month's first report (the start of the window);
    money is exact. `peer_percentile` (off by default: by construction it names some funds of
    every large class every month) is the worst X % of the fund's `peer_group` (classe or
    gestor) for `peer_percentile_months` months running (docs/peers.md).
    """

    min_net_assets: Decimal = Decimal("10000000.00")
    net_outflow_pct: Decimal | None = Decimal("10")
    net_outflow_amount: Decimal | None = Decimal("100000000.00")
    consecutive_outflow_days: int | None = 10
    holders_drop_pct: Decimal | None = Decimal("10")
    peer_percentile: Decimal | None = None
    peer_percentile_months: int = 2
    peer_group: str = "classe"

    def fingerprint(self) -> str:
        """Changes when a threshold changes, so the months' alerts are recomputed."""
        text = json.dumps({k: str(v) for k, v in asdict(self).items()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _decimal(path: str, key: str, value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{path}: {key}: {value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{path}: {key}: {value!r} must be a number >= 0")
    return number


# Keys that cannot be turned off, and what to write instead of null.
REQUIRED = {
    "min_net_assets": "use 0 for no floor",
    "peer_percentile_months": "turn the rule off with peer_percentile: null",
    "peer_group": "turn the rule off with peer_percentile: null",
}


def parse_rules(document: Any, path: str = "rules") -> AlertRules:
    """Rules from a parsed YAML mapping: absent keys keep their default, `null` turns a rule off."""
    if document is None:
        return AlertRules()
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a mapping of rule: threshold")
    known = {f.name for f in fields(AlertRules)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in document.items():
        if value is None:
            if key in REQUIRED:
                raise ConfigError(f"{path}: {key} cannot be null ({REQUIRED[key]})")
            values[key] = None
        elif key in ("consecutive_outflow_days", "peer_percentile_months"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{path}: {key}: {value!r} must be a whole number >= 1")
            values[key] = value
        elif key == "peer_group":
            if value not in PEER_GROUPS:
                raise ConfigError(f"{path}: {key}: {value!r} must be one of {list(PEER_GROUPS)}")
            values[key] = value
        else:
            values[key] = _decimal(path, key, value)
            if key == "peer_percentile" and values[key] > 100:
                raise ConfigError(f"{path}: {key}: {value!r} is a percentage: at most 100")
    return AlertRules(**values)


def load_rules(path: str | None) -> AlertRules:
    """The rules in `path` (YAML), or the documented defaults when no file is configured."""
    return AlertRules() if not path else parse_rules(_read(path), path)


CNPJ_PUNCTUATION = re.compile(r"[./\-\s]")


def cnpj_digits(text: str) -> str:
    """A CNPJ as the lake keys it: 14 digits, punctuation removed, left-padded."""
    return CNPJ_PUNCTUATION.sub("", str(text)).zfill(14)


@dataclass(frozen=True)
class Advisor:
    """Who is told, where, about which funds. Secrets are never here: only the names of the
    environment variables that hold them."""

    name: str
    email: str | None = None
    webhook: str | None = None
    webhook_token_env: str | None = None
    cnpjs: frozenset[str] = frozenset()
    managers: frozenset[str] = frozenset()  # names (case-insensitive) or CNPJs of managers

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, to in (("email", self.email), ("webhook", self.webhook)) if to)

    def watches(self, alert: Mapping[str, Any]) -> bool:
        """The fund is on the list, or its manager (by name or CNPJ) is, per the registry."""
        if alert["cnpj_fundo"] in self.cnpjs:
            return True
        manager = {(alert.get("gestor") or "").strip().casefold(), alert.get("cnpj_gestor") or ""}
        return bool(manager & self.managers - {""})


_ADVISOR_KEYS = {"name", "email", "webhook", "webhook_token_env", "cnpjs", "managers"}


def parse_watchlist(document: Any, path: str = "watchlist") -> list[Advisor]:
    if not isinstance(document, Mapping) or not isinstance(document.get("advisors"), list):
        raise ConfigError(f"{path}: expected `advisors:` followed by a list of advisors")
    advisors: list[Advisor] = []
    for n, entry in enumerate(document["advisors"], start=1):
        where = f"{path}: advisor {n}"
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise ConfigError(f"{where}: expected a mapping with a name")
        unknown = sorted(set(entry) - _ADVISOR_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(_ADVISOR_KEYS)}")
        if not entry.get("email") and not entry.get("webhook"):
            raise ConfigError(f"{where} ({entry['name']}): needs an email or a webhook")
        managers = entry.get("managers") or []
        advisors.append(
            Advisor(
                name=str(entry["name"]),
                email=entry.get("email"),
                webhook=entry.get("webhook"),
                webhook_token_env=entry.get("webhook_token_env"),
                cnpjs=frozenset(cnpj_digits(c) for c in entry.get("cnpjs") or []),
                managers=frozenset(
                    cnpj_digits(m)
                    if CNPJ_PUNCTUATION.sub("", str(m)).isdigit()
                    else str(m).strip().casefold()
                    for m in managers
                ),
            )
        )
    names = [a.name for a in advisors]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(
            f"{path}: advisor names must be unique (the delivery log keys by them): {duplicated}"
        )
    return advisors


def load_watchlist(path: str | None) -> list[Advisor]:
    """The advisors in `path` (YAML); none when no file is configured."""
    return [] if not path else parse_watchlist(_read(path), path)


def _read(path: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None

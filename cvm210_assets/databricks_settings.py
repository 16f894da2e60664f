"""What CVM210_COMPUTE=databricks needs from the environment and the cluster settings file,
checked when the settings are read; the launcher that uses them is databricks.py (imported only
when steps are launched onto Databricks: dagster-databricks and its SDK take a second to load).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLUSTER_FILE_VAR = "CVM210_DATABRICKS_CLUSTER_FILE"
FILE_KEYS = ("run_config", "secrets_to_env_variables", "staging_prefix", "poll_interval_sec")


@dataclass(frozen=True)
class DatabricksSettings:
    """What the launching side needs: the cluster file's content and which credentials to use."""

    cluster_file: str
    run_config: dict[str, Any]
    secrets_to_env_variables: list[dict[str, str]] = field(default_factory=list)
    staging_prefix: str = "/dagster_staging/cvm210"
    poll_interval_sec: float = 10.0
    oauth: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DatabricksSettings":
        """Fail at load time, naming the variable, on anything missing or contradictory."""
        if not env.get("DATABRICKS_HOST"):
            raise ValueError("CVM210_COMPUTE=databricks needs DATABRICKS_HOST (the workspace URL)")
        token = bool(env.get("DATABRICKS_TOKEN"))
        client = [n for n in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET") if env.get(n)]
        if token and client:
            raise ValueError(
                f"DATABRICKS_TOKEN and {' and '.join(client)} are both set: use a token or"
                " OAuth client credentials, not both"
            )
        if len(client) == 1:
            missing = {"DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"} - set(client)
            raise ValueError(f"{client[0]} is set but {missing.pop()} is not")
        if not token and not client:
            raise ValueError(
                "CVM210_COMPUTE=databricks needs DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and"
                " DATABRICKS_CLIENT_SECRET (OAuth for a service principal)"
            )
        path = env.get(CLUSTER_FILE_VAR)
        if not path:
            raise ValueError(
                f"CVM210_COMPUTE=databricks needs {CLUSTER_FILE_VAR}: the cluster settings file"
                " (see databricks-cluster.example.yaml)"
            )
        content = read_cluster_file(Path(path))
        return cls(cluster_file=path, oauth=bool(client), **content)


def read_cluster_file(path: Path) -> dict[str, Any]:
    """The cluster settings file, checked against dagster-databricks' own schema."""
    where = f"{CLUSTER_FILE_VAR}={str(path)!r}"
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{where}: cannot read it ({error.strerror})") from None
    try:
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValueError(f"{where}: not valid {kind}: {error}") from None
    if not isinstance(content, dict) or "run_config" not in content:
        raise ValueError(f"{where}: expected a mapping with a 'run_config' entry")
    unknown = sorted(set(content) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown entries {unknown}; expected {list(FILE_KEYS)}")
    cluster = content["run_config"].get("cluster") or {}
    if len(cluster) != 1:
        raise ValueError(
            f"{where}: run_config.cluster needs exactly one of 'new' (a cluster spec) or"
            f" 'existing' (a cluster id); found {sorted(cluster) or 'neither'}"
        )
    from dagster._config import validate_config
    from dagster_databricks.configs import (
        define_databricks_secrets_config,
        define_databricks_submit_run_config,
    )

    problems = [
        error.message
        for schema, value in (
            (define_databricks_submit_run_config(), content["run_config"]),
            (define_databricks_secrets_config(), content.get("secrets_to_env_variables", [])),
        )
        for error in validate_config(schema.config_type, value).errors or []
    ]
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    prefix = content.get("staging_prefix", DatabricksSettings.staging_prefix)
    if not str(prefix).startswith("/"):
        raise ValueError(f"{where}: staging_prefix must be an absolute DBFS path, got {prefix!r}")
    return content

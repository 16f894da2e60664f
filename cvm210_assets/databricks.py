"""CVM210_COMPUTE=databricks: the Spark steps run on a Databricks cluster through
dagster-databricks' PySpark step launcher; everything else runs where Dagster runs.

The launcher is configured from the environment (workspace and credentials) and a cluster
settings file (CVM210_DATABRICKS_CLUSTER_FILE, YAML or JSON, see databricks-cluster.example.yaml).
Credentials are never written into the launcher's configuration: the token is an env-var
reference resolved when a step launches, OAuth client credentials are read by databricks-sdk
from the environment, and the cluster gets its AWS keys from a Databricks secret scope.
"""

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ResourceDefinition, SupersessionWarning, resource
from dagster._core.execution.context.system import StepExecutionContext
from dagster._core.log_manager import DagsterLogManager
from dagster_databricks import databricks_pyspark_step_launcher
from dagster_databricks.databricks import DatabricksError
from dagster_databricks.databricks_pyspark_step_launcher import DatabricksPySparkStepLauncher

if TYPE_CHECKING:
    from dagster import DagsterEvent, InitResourceContext

    from cvm210_assets.settings import Settings


PACKAGE_DIR = Path(__file__).resolve().parent


def cluster_environment(settings: "Settings") -> dict[str, str]:
    """The settings the cluster's copy of the code location is loaded with, none of them a
    secret: the lake and CVM's folder, and the S3 endpoint and region under the names that
    boto3 and Settings.from_env read there."""
    env = {
        "CVM210_COMPUTE": "databricks",
        "CVM210_LAKE_URI": settings.lake_uri,
        "CVM210_SOURCE_URL": settings.source_url,
    }
    if settings.aws_region:
        env |= {"AWS_REGION": settings.aws_region, "AWS_DEFAULT_REGION": settings.aws_region}
    if settings.aws_endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
    return env


def launcher_config(settings: "Settings") -> dict[str, Any]:
    """The launcher's configuration: references to credentials, never their values."""
    databricks = settings.databricks
    assert databricks is not None
    config: dict[str, Any] = {
        "run_config": databricks.run_config,
        "databricks_host": {"env": "DATABRICKS_HOST"},
        "env_variables": cluster_environment(settings),
        "secrets_to_env_variables": databricks.secrets_to_env_variables,
        "staging_prefix": databricks.staging_prefix,
        "poll_interval_sec": databricks.poll_interval_sec,
        # Replaced at each launch by a folder that holds the package alone (PackageStepLauncher).
        "local_pipeline_package_path": str(PACKAGE_DIR.parent),
    }
    if not databricks.oauth:
        config["databricks_token"] = {"env": "DATABRICKS_TOKEN"}
    # With no token configured, databricks-sdk reads DATABRICKS_CLIENT_ID/SECRET itself.
    return config


def copy_package(folder: Path) -> None:
    """The package alone, as the cluster imports it: no virtualenv, .git, lake or caches."""
    shutil.copytree(
        PACKAGE_DIR,
        folder / PACKAGE_DIR.name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


class PackageStepLauncher(DatabricksPySparkStepLauncher):
    """The Databricks launcher, uploading only the cvm210_assets package, and saying why a
    cluster run failed.

    The launcher zips a whole folder whose top level must hold the package; the package's own
    parent (the repository, or site-packages) also holds the virtualenv, .git and the lake.
    """

    def launch_step(self, step_context: StepExecutionContext) -> Iterator["DagsterEvent"]:
        with tempfile.TemporaryDirectory(prefix="cvm210-upload-") as folder:
            copy_package(Path(folder))
            self.local_dagster_job_package_path = folder
            yield from super().launch_step(step_context)

    def step_events_iterator(
        self, step_context: StepExecutionContext, step_key: str, databricks_run_id: int
    ) -> Iterator["DagsterEvent"]:
        try:
            yield from super().step_events_iterator(step_context, step_key, databricks_run_id)
        except DatabricksError:
            self.log_run_error(step_context.log, databricks_run_id)
            raise

    def log_run_error(self, log: DagsterLogManager, databricks_run_id: int) -> None:
        """The cluster's own error (Jobs runs/get-output): when the task fails before Dagster
        starts on the cluster (libraries, secrets, imports), the step wrote no events."""
        jobs = self.databricks_runner.client.workspace_client.jobs
        for task in jobs.get_run(databricks_run_id).tasks or []:
            output = jobs.get_run_output(task.run_id)
            if output.error:
                log.error(
                    f"Databricks run {databricks_run_id} failed on the cluster: {output.error}\n"
                    f"{output.error_trace or ''}"
                )


@resource(
    config_schema=databricks_pyspark_step_launcher.config_schema,
    description="Runs the Spark steps on Databricks (CVM210_COMPUTE=databricks).",
)
def package_step_launcher(context: "InitResourceContext") -> PackageStepLauncher:
    # Dagster marks step launchers as superseded by Dagster Pipes. The users asked for the step
    # launcher, which runs the very asset code on the cluster (issue #3); the warning is
    # expected here and nowhere else, so it is silenced here only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SupersessionWarning)
        return PackageStepLauncher(**context.resource_config)


def step_launcher(settings: "Settings") -> ResourceDefinition:
    return package_step_launcher.configured(launcher_config(settings))

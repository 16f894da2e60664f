"""A Spark that stays up between runs: a Spark Connect server on this machine.

Every run otherwise starts its own JVM, about 6 s before its first job, and runs every stage
cold, 1.5-2x slower, until the JIT has compiled it. Runs that attach to a server kept up by
`cvm210 spark-server` pay neither once the server has done a month (benchmarks/README.md).
The transforms are the same: Spark Connect speaks the DataFrame API.

Only this machine can connect (the server listens on 127.0.0.1), and only with the token the
server was started with, `CVM210_SPARK_TOKEN`, read from the environment and never written to
a command line, a log or Dagster's configuration.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cvm210_assets.settings import SPARK_REMOTE_VAR, SPARK_TOKEN_VAR, remote_port, secret

if TYPE_CHECKING:  # Spark loads only where a session or a server is asked for
    from pyspark.sql import SparkSession

DEFAULT_PORT = 15002
_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkServerError(RuntimeError):
    """The server cannot be started or reached; the message says what to do."""


def _token() -> str:
    token = secret(SPARK_TOKEN_VAR)
    if not token:
        raise SparkServerError(
            f"{SPARK_TOKEN_VAR} is not set: a Spark Connect server and the runs that attach to it"
            " share a secret token (docs/running.md, Keeping Spark up between runs), e.g. export"
            f" {SPARK_TOKEN_VAR}=$(python -c 'import secrets; print(secrets.token_hex(16))')"
        )
    return token


def _answers(port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def connect_session(remote: str, conf: Mapping[str, str]) -> SparkSession:
    """A session on the server at `remote`, with the run's session settings.

    Fails at once when nothing listens there: Spark Connect's client would retry for minutes.
    """
    port = remote_port(remote)
    token = _token()
    if not _answers(port):
        raise SparkServerError(
            f"no Spark Connect server answers at {remote} ({SPARK_REMOTE_VAR}): start one with"
            f" `cvm210 spark-server`, or unset {SPARK_REMOTE_VAR} to run Spark inside each run"
        )
    from pyspark.sql import SparkSession

    # PySpark's own entry: it also switches pyspark.sql.functions to Connect for the process.
    builder = SparkSession.builder.remote(f"{remote}/;token={token}")
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def server_command(conf: Mapping[str, str], port: int) -> list[str]:
    """spark-submit for a Connect server sized like a run's own local Spark (`conf`)."""
    settings = {
        **conf,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }
    master = settings.pop("spark.master", "local[*]")
    submit = str(Path(_spark_home()) / "bin" / "spark-submit")
    options = [part for key, value in settings.items() for part in ("--conf", f"{key}={value}")]
    return [submit, "--class", _SERVER_CLASS, "--master", master, *options, "spark-internal"]


class SparkServer:
    """A Connect server in a child process, up between `with` and its end."""

    def __init__(self, conf: Mapping[str, str], port: int, output: IO[bytes] | None = None) -> None:
        self.port = port
        self._command = server_command(conf, port)
        self._output = output
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def remote(self) -> str:
        return f"sc://localhost:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        if _answers(self.port):
            raise SparkServerError(f"port {self.port} is taken: is a server up already?")
        env = {**os.environ, "SPARK_CONNECT_AUTHENTICATE_TOKEN": _token()}
        env["SPARK_HOME"] = _spark_home()
        self._process = subprocess.Popen(
            self._command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT if self._output is not None else None,
            start_new_session=True,  # stopped as a group: spark-submit's shell and its JVM
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.port, timeout=0.5):
            if self._process.poll() is not None:
                raise SparkServerError(
                    f"the Spark Connect server exited with code {self._process.returncode}"
                    " before it listened (its output says why)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise SparkServerError(f"the Spark Connect server did not listen in {timeout} s")
            time.sleep(0.2)

    def wait(self) -> int:
        assert self._process is not None
        return self._process.wait()

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def __enter__(self) -> SparkServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

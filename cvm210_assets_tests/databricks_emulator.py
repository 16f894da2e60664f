"""Databricks' REST API on 127.0.0.1, as far as dagster-databricks' PySpark step launcher (and
the databricks-sdk under it) uses it: DBFS, Jobs runs submit/get/get-output/cancel, permissions,
and OAuth machine-to-machine tokens.

A submitted `spark_python_task` runs in a child process standing in for the cluster's driver:
a clean environment (nothing of the launching side's), `/dbfs` and `dbfs:/` mapped to a folder,
the `dbutils` (secrets) and `sc` globals the task expects, Spark preconfigured from the new
cluster's `spark_conf` like a cluster's own session, and the editable install of cvm210_assets
hidden, so the package can only come from what the launcher uploaded. Nothing is installed:
the requested libraries are recorded.

Run as a script (`python databricks_emulator.py <task.json>`), this module is that driver.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CLUSTER_ID = "0101-000000-emulated"


def runtime_spark_conf() -> dict[str, str]:
    """What a Databricks runtime has built in: Delta Lake (its engine, SQL extension and
    catalog) and s3:// (through s3a here), from the set-up's jar cache."""
    from cvm210_assets.resources import DELTA_EXTENSIONS, session_jars
    from cvm210_assets.settings import jar_cache_dir

    return {
        **DELTA_EXTENSIONS,
        **session_jars(jar_cache_dir(), ["delta", "s3"]),
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }


@dataclass
class EmulatedRun:
    run_id: int
    task_run_id: int
    request: dict[str, Any]
    process: subprocess.Popen | None = None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    cancelled: bool = False
    log: Path | None = None
    error: str | None = None
    error_trace: str | None = None

    @property
    def task(self) -> dict[str, Any]:
        return self.request["tasks"][0]


@dataclass
class DatabricksEmulator:
    """Start with `with DatabricksEmulator(root, token=...) as emulator:`; `host` is its URL."""

    root: Path
    token: str | None = None
    oauth_clients: dict[str, str] = field(default_factory=dict)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    runs: dict[int, EmulatedRun] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    permissions: list[tuple[str, str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dbfs = self.root / "dbfs"
        self.dbfs.mkdir(parents=True, exist_ok=True)
        self._handles: dict[int, tuple[Path, bytearray]] = {}
        self._ids = itertools.count(1001)
        self._tokens: set[str] = {self.token} if self.token else set()
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> DatabricksEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                emulator._serve(self, "GET")

            def do_POST(self) -> None:
                emulator._serve(self, "POST")

            def do_PATCH(self) -> None:
                emulator._serve(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for run in self.runs.values():
            if run.process is not None and run.process.poll() is None:
                os.killpg(run.process.pid, signal.SIGKILL)
                run.process.wait()
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def local(self, path: str) -> Path:
        """The folder behind a DBFS path: `dbfs:/x`, `/dbfs/x` and `/x` all name DBFS's `/x`."""
        for prefix in ("dbfs:", "/dbfs/"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return self.dbfs / path.lstrip("/")

    def uploads(self) -> list[Path]:
        return sorted(p for p in self.dbfs.rglob("*") if p.is_file())

    # --- HTTP ------------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append((method, url.path))
        try:
            if url.path.startswith("/oidc/"):
                status, body = self._oauth(request, url.path, raw)
            elif not self._authorized(request.headers.get("Authorization", "")):
                status, body = 401, _error("UNAUTHENTICATED", "invalid access token")
            else:
                payload = json.loads(raw) if raw and method != "GET" else query
                status, body = self._route(method, url.path, payload)
        except _ApiError as error:
            status, body = error.status, _error(error.code, str(error))
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _authorized(self, header: str) -> bool:
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self._tokens

    def _oauth(self, request: BaseHTTPRequestHandler, path: str, raw: bytes) -> tuple[int, Any]:
        if path == "/oidc/.well-known/oauth-authorization-server":
            return 200, {
                "authorization_endpoint": f"{self.host}/oidc/v1/authorize",
                "token_endpoint": f"{self.host}/oidc/v1/token",
            }
        basic = request.headers.get("Authorization", "").removeprefix("Basic ")
        client_id, _, secret = base64.b64decode(basic).decode().partition(":")
        if path != "/oidc/v1/token" or self.oauth_clients.get(client_id) != secret:
            return 401, {"error": "invalid_client"}
        token = f"oauth-{next(self._ids)}"
        self._tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        routes = {
            ("POST", "/api/2.0/dbfs/create"): self._dbfs_create,
            ("POST", "/api/2.0/dbfs/add-block"): self._dbfs_add_block,
            ("POST", "/api/2.0/dbfs/close"): self._dbfs_close,
            ("POST", "/api/2.0/dbfs/put"): self._dbfs_put,
            ("GET", "/api/2.0/dbfs/read"): self._dbfs_read,
            ("GET", "/api/2.0/dbfs/get-status"): self._dbfs_status,
            ("POST", "/api/2.0/dbfs/mkdirs"): self._dbfs_mkdirs,
            ("POST", "/api/2.0/dbfs/delete"): self._dbfs_delete,
            ("POST", "/api/2.2/jobs/runs/submit"): self._runs_submit,
            ("GET", "/api/2.2/jobs/runs/get"): self._runs_get,
            ("GET", "/api/2.2/jobs/runs/get-output"): self._runs_output,
            ("POST", "/api/2.2/jobs/runs/cancel"): self._runs_cancel,
        }
        if method == "PATCH" and path.startswith("/api/2.0/permissions/"):
            kind, _, object_id = path.removeprefix("/api/2.0/permissions/").partition("/")
            self.permissions.append((kind, object_id, body.get("access_control_list")))
            return 200, {"object_id": object_id, "access_control_list": []}
        handler = routes.get((method, path))
        if handler is None:
            raise _ApiError(404, "ENDPOINT_NOT_FOUND", f"no emulation of {method} {path}")
        with self._lock:
            return 200, handler(body)

    # --- DBFS ------------------------------------------------------------------------------

    def _existing(self, path: str) -> Path:
        local = self.local(path)
        if not local.exists():
            message = f"No file or directory exists on path {path}."
            raise _ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)
        return local

    def _dbfs_create(self, body: dict[str, Any]) -> dict[str, Any]:
        target = self.local(body["path"])
        if target.exists() and not body.get("overwrite"):
            raise _ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{body['path']} already exists")
        handle = next(self._ids)
        self._handles[handle] = (target, bytearray())
        return {"handle": handle}

    def _dbfs_add_block(self, body: dict[str, Any]) -> dict[str, Any]:
        self._handles[int(body["handle"])][1].extend(base64.b64decode(body["data"]))
        return {}

    def _dbfs_close(self, body: dict[str, Any]) -> dict[str, Any]:
        target, data = self._handles.pop(int(body["handle"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(data))
        return {}

    def _dbfs_put(self, body: dict[str, Any]) -> dict[str, Any]:
        target = self.local(body["path"])
        if target.exists() and not body.get("overwrite"):
            raise _ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{body['path']} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(body.get("contents", "")))
        return {}

    def _dbfs_read(self, body: dict[str, Any]) -> dict[str, Any]:
        local = self._existing(body["path"])
        offset, length = int(body.get("offset", 0)), int(body.get("length", 512 * 1024))
        with local.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def _dbfs_status(self, body: dict[str, Any]) -> dict[str, Any]:
        local = self._existing(body["path"])
        return {
            "path": body["path"],
            "is_dir": local.is_dir(),
            "file_size": 0 if local.is_dir() else local.stat().st_size,
            "modification_time": int(local.stat().st_mtime * 1000),
        }

    def _dbfs_mkdirs(self, body: dict[str, Any]) -> dict[str, Any]:
        self.local(body["path"]).mkdir(parents=True, exist_ok=True)
        return {}

    def _dbfs_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        local = self.local(body["path"])
        if local.is_dir():
            for child in sorted(local.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            local.rmdir()
        elif local.exists():
            local.unlink()
        return {}

    # --- Jobs ------------------------------------------------------------------------------

    def _runs_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = body.get("tasks") or []
        if len(tasks) != 1 or "spark_python_task" not in tasks[0]:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", "expected one spark_python_task")
        task = tasks[0]
        if bool(task.get("new_cluster")) == bool(task.get("existing_cluster_id")):
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", "new_cluster xor existing_cluster_id")
        run = EmulatedRun(next(self._ids), next(self._ids), body)
        self.runs[run.run_id] = run
        self._start(run)
        return {"run_id": run.run_id}

    def _start(self, run: EmulatedRun) -> None:
        folder = self.root / "runs" / str(run.run_id)
        folder.mkdir(parents=True)
        spark_task = run.task["spark_python_task"]
        cluster = run.task.get("new_cluster") or {}
        conf = {"spark.master": "local[2]", **runtime_spark_conf(), **cluster.get("spark_conf", {})}
        (folder / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
        spec = {
            "python_file": str(self.local(spark_task["python_file"])),
            "parameters": [
                str(self.local(p)) if p.startswith(("/dbfs/", "dbfs:")) else p
                for p in spark_task.get("parameters", [])
            ],
            "secrets": [[scope, key, value] for (scope, key), value in self.secrets.items()],
            "hidden_path": str(Path(__file__).resolve().parents[1]),
        }
        (folder / "task.json").write_text(json.dumps(spec))
        env = {
            name: os.environ[name]
            for name in ("PATH", "JAVA_HOME", "LANG", "TZ")
            if name in os.environ
        }
        env.update(cluster.get("spark_env_vars", {}))
        env.update(
            # Not on EC2: no instance metadata service for AWS clients to wait for.
            AWS_EC2_METADATA_DISABLED="true",
            HOME=str(folder),
            DATABRICKS_RUNTIME_VERSION="emulated",
            SPARK_CONF_DIR=str(folder),
            PYSPARK_PYTHON=sys.executable,
        )
        run.log = folder / "driver.log"
        with run.log.open("wb") as log:
            run.process = subprocess.Popen(
                [sys.executable, __file__, str(folder / "task.json")],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.life_cycle_state = "RUNNING"

    def _refresh(self, run: EmulatedRun) -> None:
        if run.life_cycle_state != "RUNNING" or run.process is None:
            return
        code = run.process.poll()
        if code is None:
            return
        run.life_cycle_state = "TERMINATED"
        if code == 0:
            run.result_state = "SUCCESS"
            return
        run.result_state = "FAILED"
        run.state_message = "Workload failed, see run output for details"
        trace = run.log.read_text(errors="replace") if run.log else ""
        start = trace.rfind("Traceback (most recent call last)")
        run.error_trace = trace[start:] if start >= 0 else trace[-4000:]
        run.error = run.error_trace.strip().splitlines()[-1] if run.error_trace.strip() else None

    def _run(self, run_id: Any) -> EmulatedRun:
        for run in self.runs.values():
            if int(run_id) in (run.run_id, run.task_run_id):
                self._refresh(run)
                return run
        raise _ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")

    def _state(self, run: EmulatedRun) -> dict[str, Any]:
        state = {"life_cycle_state": run.life_cycle_state, "state_message": run.state_message}
        if run.result_state:
            state["result_state"] = run.result_state
        return state

    def _runs_get(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._run(body["run_id"])
        return {
            "run_id": run.run_id,
            "job_id": run.run_id + 500,
            "run_name": run.request.get("run_name"),
            "state": self._state(run),
            "run_page_url": f"{self.host}/#job/runs/{run.run_id}",
            "tasks": [
                {
                    "run_id": run.task_run_id,
                    "task_key": run.task.get("task_key"),
                    "state": self._state(run),
                    "cluster_instance": {"cluster_id": CLUSTER_ID},
                }
            ],
        }

    def _runs_output(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._run(body["run_id"])
        output: dict[str, Any] = {"metadata": {"run_id": run.task_run_id}}
        if run.error:
            output.update(error=run.error, error_trace=run.error_trace)
        return output

    def _runs_cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._run(body["run_id"])
        self.cancelled.append(run.run_id)
        if run.life_cycle_state == "RUNNING" and run.process is not None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()
            run.cancelled = True
            run.life_cycle_state, run.result_state = "TERMINATED", "CANCELED"
            run.state_message = "Run cancelled."
        return {}

    def wait_for_run(self, timeout: float = 120) -> EmulatedRun:
        """The first run, once the launcher has polled it (it is then waiting on it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.runs and ("GET", "/api/2.2/jobs/runs/get") in self.calls:
                return next(iter(self.runs.values()))
            time.sleep(0.05)
        raise TimeoutError("no Databricks run was submitted and polled")


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _error(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "message": message}


# --- the cluster's driver: runs one spark_python_task ------------------------------------------


class _Secrets:
    def __init__(self, entries: list[list[str]]) -> None:
        self._values = {(scope, key): value for scope, key, value in entries}

    def get(self, scope: str, key: str) -> str:
        if (scope, key) not in self._values:
            raise RuntimeError(f"Secret does not exist with scope: {scope} and key: {key}")
        return self._values[(scope, key)]


class _DbUtils:
    def __init__(self, entries: list[list[str]]) -> None:
        self.secrets = _Secrets(entries)


class _LazySparkContext:
    """`sc`, started on first use with the cluster's preconfigured settings."""

    def __getattr__(self, name: str) -> Any:
        from pyspark import SparkContext

        return getattr(SparkContext.getOrCreate(), name)


def _run_task(spec_path: str) -> None:
    import runpy

    spec = json.loads(Path(spec_path).read_text())
    # A cluster has no editable install of the repository: hide it, so the package can only be
    # imported from the zip the launcher uploaded.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(spec["hidden_path"])]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in f.__module__]
    sys.argv = [spec["python_file"], *spec["parameters"]]
    try:
        runpy.run_path(
            spec["python_file"],
            init_globals={"dbutils": _DbUtils(spec["secrets"]), "sc": _LazySparkContext()},
            run_name="__main__",
        )
    finally:
        package = sys.modules.get("cvm210_assets")
        print(f"cvm210_assets imported from: {getattr(package, '__file__', None)}", flush=True)


if __name__ == "__main__":
    _run_task(sys.argv[1])

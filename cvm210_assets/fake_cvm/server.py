"""A fake dados.cvm.gov.br on 127.0.0.1: CVM's folders, HTTP caching headers and failures.

The download code is tested against real HTTP (streaming, conditional requests, retries,
timeouts) without the internet: files are published in memory, served in chunks, and each kind
of failure seen from CVM can be injected for the next requests of one path.
"""

from __future__ import annotations

import hashlib
import html
import socket
import socketserver
import struct
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cvm210_assets.fake_cvm.generator import monthly_zip, yearly_single_member_zip, yearly_zip
from cvm210_assets.fake_cvm.registry import RegistryFiles

DADOS_PATH = "/dados/FI/DOC/INF_DIARIO/DADOS"
CAD_PATH = "/dados/FI/CAD/DADOS"
_CHUNK = 64 * 1024
_BRT = timezone(timedelta(hours=-3))  # CVM's listing shows São Paulo time (no DST since 2019)
_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>Portal de Dados Abertos da CVM</title></head><body>"
    "<h1>Serviço temporariamente indisponível</h1><p>Tente novamente mais tarde.</p>"
    "</body></html>"
).encode()


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, as the server log keeps it."""

    method: str
    path: str
    status: int


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    last_modified: datetime
    content_type: str


@dataclass(frozen=True)
class _Fault:
    kind: str  # status, truncate, reset, delay, html_error, redirect
    status: int = 0
    seconds: float = 0.0
    location: str = ""

    @property
    def needs_body(self) -> bool:
        """Faults that act on the body apply to GETs only: a HEAD has none."""
        return self.kind in ("truncate", "reset", "delay")


class FakeCvm:
    """In-memory CVM site served by a ThreadingHTTPServer in a daemon thread.

    Paths given to `put`, `remove` and the fault methods are relative to the DADOS folder
    (`inf_diario_fi_202401.zip`, `HIST/inf_diario_fi_2019.zip`); a path starting with `/` is
    taken from the site root (e.g. `/dados/FI/CAD/DADOS/registro_fundo_classe.zip`).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._host = host
        self._wanted_port = port
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeCvm:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind and serve in a daemon thread; returns once the port is known."""
        if self._server is not None:
            raise RuntimeError("FakeCvm is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._wanted_port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-cvm",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; delayed responses are cut short."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeCvm is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """What CVM210_SOURCE_URL should be: the DADOS folder of this server."""
        return f"http://{self._host}:{self.port}{DADOS_PATH}"

    def url(self, relative_path: str) -> str:
        """Full URL of a published (or expected) file."""
        return f"http://{self._host}:{self.port}{_full_path(relative_path)}"

    # Publishing -------------------------------------------------------------------------------

    def put(
        self,
        relative_path: str,
        body: bytes,
        last_modified: datetime | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish or replace a file (a replacement is how CVM restates a month).

        Without `last_modified` the time is now, and later than the file it replaces, so a
        restatement within the same second still looks newer. Naive datetimes are UTC.
        """
        path = _full_path(relative_path)
        if content_type is None:
            content_type = "application/zip" if path.endswith(".zip") else "text/csv"
        with self._lock:
            if last_modified is None:
                last_modified = datetime.now(timezone.utc).replace(microsecond=0)
                old = self._files.get(path)
                if old is not None and last_modified <= old.last_modified:
                    last_modified = old.last_modified + timedelta(seconds=1)
            elif last_modified.tzinfo is None:
                last_modified = last_modified.replace(tzinfo=timezone.utc)
            etag = f'"{hashlib.sha256(body).hexdigest()}"'
            self._files[path] = _File(
                body,
                etag,
                last_modified.astimezone(timezone.utc).replace(microsecond=0),
                content_type,
            )

    def remove(self, relative_path: str) -> None:
        """Unpublish a file: it answers 404 again."""
        with self._lock:
            self._files.pop(_full_path(relative_path), None)

    def publish_month(
        self, ano: int, mes: int, csv: bytes, last_modified: datetime | None = None
    ) -> str:
        """DADOS/inf_diario_fi_YYYYMM.zip; returns the relative path."""
        path = f"inf_diario_fi_{ano:04d}{mes:02d}.zip"
        self.put(path, monthly_zip(ano, mes, csv), last_modified)
        return path

    def publish_year(
        self, ano: int, months: dict[int, bytes], last_modified: datetime | None = None
    ) -> str:
        """DADOS/HIST/inf_diario_fi_YYYY.zip with one member per month; returns the path."""
        path = f"HIST/inf_diario_fi_{ano:04d}.zip"
        self.put(path, yearly_zip(ano, months), last_modified)
        return path

    def publish_year_single_member(
        self, ano: int, csv: bytes, last_modified: datetime | None = None
    ) -> str:
        """DADOS/HIST/inf_diario_fi_YYYY.zip holding one yearly CSV, as pre-2005 archives."""
        path = f"HIST/inf_diario_fi_{ano:04d}.zip"
        self.put(path, yearly_single_member_zip(ano, csv), last_modified)
        return path

    def publish_registry(self, files: RegistryFiles, last_modified: datetime | None = None) -> None:
        """FI/CAD/DADOS/registro_fundo_classe.zip and cad_fi.csv, as CVM publishes them."""
        self.put(f"{CAD_PATH}/registro_fundo_classe.zip", files.zip, last_modified)
        self.put(f"{CAD_PATH}/cad_fi.csv", files.cad_fi, last_modified)

    # Request log ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Answered requests, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def count(self, method: str, path_suffix: str) -> int:
        """How many `method` requests hit a path ending with `path_suffix`."""
        with self._lock:
            return sum(
                1 for r in self._log if r.method == method.upper() and r.path.endswith(path_suffix)
            )

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    # Fault injection: each fault answers one request of the path, in the order added; the
    # faults that act on a body (truncate, reset, delay) wait for a GET, HEADs pass them by.

    def fail_next(self, relative_path: str, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order (e.g. 503, then 500)."""
        self._add_faults(relative_path, [_Fault("status", status=s) for s in statuses])

    def truncate_next(self, relative_path: str, times: int = 1) -> None:
        """Send the full Content-Length but close the connection after half the body."""
        self._add_faults(relative_path, [_Fault("truncate")] * times)

    def reset_next(self, relative_path: str, times: int = 1) -> None:
        """Send half the body, then reset the TCP connection (RST)."""
        self._add_faults(relative_path, [_Fault("reset")] * times)

    def delay_next(self, relative_path: str, seconds: float, times: int = 1) -> None:
        """Send the headers, then wait `seconds` before the body (to exercise read timeouts)."""
        self._add_faults(relative_path, [_Fault("delay", seconds=seconds)] * times)

    def html_error_next(self, relative_path: str, times: int = 1) -> None:
        """Answer 200 with an HTML error page instead of the zip, as portals sometimes do."""
        self._add_faults(relative_path, [_Fault("html_error")] * times)

    def redirect_next(self, relative_path: str, location: str, times: int = 1) -> None:
        """Answer 302 to `location` (an absolute URL or a site path)."""
        self._add_faults(relative_path, [_Fault("redirect", location=location)] * times)

    def _add_faults(self, relative_path: str, faults: list[_Fault]) -> None:
        with self._lock:
            self._faults.setdefault(_full_path(relative_path), deque()).extend(faults)

    def _next_fault(self, path: str, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if not queue or (queue[0].needs_body and method != "GET"):
                return None
            fault = queue.popleft()
            if not queue:
                del self._faults[path]
            return fault

    # Serving ----------------------------------------------------------------------------------

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append(RequestRecord(method, path, status))

    def _answer(self, handler: _Handler, method: str) -> None:
        path = urlsplit(handler.path).path
        fault = self._next_fault(path, method)
        if fault is not None and fault.kind == "status":
            self._send_page(handler, method, path, fault.status, _status_page(fault.status))
            return
        if fault is not None and fault.kind == "redirect":
            self._record(method, path, 302)
            handler.send_response(302)
            handler.send_header("Location", fault.location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault is not None and fault.kind == "html_error":
            self._send_page(handler, method, path, 200, _ERROR_PAGE)
            return
        with self._lock:
            file = self._files.get(path)
        if file is None:
            self._answer_directory_or_404(handler, method, path)
            return
        if _not_modified(handler, file):
            self._record(method, path, 304)
            handler.send_response(304)
            handler.send_header("ETag", file.etag)
            handler.send_header("Last-Modified", format_datetime(file.last_modified, usegmt=True))
            handler.end_headers()
            return
        self._record(method, path, 200)
        handler.send_response(200)
        handler.send_header("Content-Type", file.content_type)
        handler.send_header("Content-Length", str(len(file.body)))
        handler.send_header("ETag", file.etag)
        handler.send_header("Last-Modified", format_datetime(file.last_modified, usegmt=True))
        handler.end_headers()
        if method == "HEAD":
            return
        body = memoryview(file.body)
        if fault is not None and fault.kind == "delay" and self._stopping.wait(fault.seconds):
            handler.close_connection = True  # stop() was called: give up on this body
            return
        if fault is not None and fault.kind in ("truncate", "reset"):
            _write_chunks(handler, body[: len(body) // 2])
            handler.close_connection = True
            if fault.kind == "reset":
                _reset_connection(handler.connection)
            return
        _write_chunks(handler, body)

    def _answer_directory_or_404(self, handler: _Handler, method: str, path: str) -> None:
        directory = path if path.endswith("/") else path + "/"
        with self._lock:
            entries = _listing_entries(self._files, directory)
        if entries is None:
            self._send_page(handler, method, path, 404, _status_page(404))
        elif not path.endswith("/"):
            self._record(method, path, 301)
            handler.send_response(301)
            handler.send_header("Location", directory)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            self._send_page(handler, method, path, 200, _listing_page(directory, entries))

    def _send_page(
        self, handler: _Handler, method: str, path: str, status: int, page: bytes
    ) -> None:
        self._record(method, path, status)
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        if method == "GET":
            _write_chunks(handler, memoryview(page))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a delayed response must not hold up stop()

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeCvm) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Skip HTTPServer's reverse DNS lookup of the host: it can take seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-body are expected here; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._answer(self, "GET")

    def do_HEAD(self) -> None:
        self.server.fake._answer(self, "HEAD")

    def log_message(self, format: str, *args: object) -> None:
        """No request logging to stderr: test output stays readable."""


def _full_path(relative_path: str) -> str:
    if relative_path.startswith("/"):
        return relative_path
    return f"{DADOS_PATH}/{relative_path}"


def _not_modified(handler: BaseHTTPRequestHandler, file: _File) -> bool:
    """RFC 9110: If-None-Match wins; If-Modified-Since only when it is absent."""
    if_none_match = handler.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or file.etag in tags
    if_modified_since = handler.headers.get("If-Modified-Since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return file.last_modified <= since


def _write_chunks(handler: BaseHTTPRequestHandler, body: memoryview) -> None:
    try:
        for start in range(0, len(body), _CHUNK):
            handler.wfile.write(body[start : start + _CHUNK])
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


def _reset_connection(connection: socket.socket) -> None:
    """Close with SO_LINGER 0, so the client gets a TCP RST instead of a clean end of stream."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def _status_page(status: int) -> bytes:
    return f"<html><body><h1>{status}</h1></body></html>".encode()


def _listing_entries(
    files: dict[str, _File], directory: str
) -> list[tuple[str, datetime, int | None]] | None:
    """(name, last modified, size or None for folders) of a folder; None if it does not exist.

    DADOS/ and DADOS/HIST/ always exist, as on CVM's site; other folders exist while they
    hold a file.
    """
    children: dict[str, tuple[datetime, int | None]] = {}
    for path, file in files.items():
        if not path.startswith(directory):
            continue
        name, slash, _ = path[len(directory) :].partition("/")
        if slash:
            seen = children.get(name + "/")
            newest = file.last_modified if seen is None else max(seen[0], file.last_modified)
            children[name + "/"] = (newest, None)
        else:
            children[name] = (file.last_modified, len(file.body))
    if directory == f"{DADOS_PATH}/" and "HIST/" not in children:
        children["HIST/"] = (datetime(2021, 1, 4, 11, 0, tzinfo=timezone.utc), None)
    if not children and directory != f"{DADOS_PATH}/HIST/":
        return None
    return [(name, *children[name]) for name in sorted(children)]


def _listing_page(directory: str, entries: list[tuple[str, datetime, int | None]]) -> bytes:
    """Apache's FancyIndexing page: name, last modified, size, as dados.cvm.gov.br shows."""
    title = html.escape(directory.rstrip("/"))
    parent = directory.rstrip("/").rpartition("/")[0] + "/"
    width = max([len(name) for name, _, _ in entries] + [len("Parent Directory")]) + 1

    def row(href: str, label: str, modified: str, size: str) -> str:
        link = f'<a href="{html.escape(href)}">{html.escape(label)}</a>'
        return f"{link}{' ' * (width - len(label))}{modified:<16}  {size:>5}  "

    head = (
        f'<a href="?C=N;O=D">Name</a>{" " * (width - 4)}<a href="?C=M;O=A">Last modified</a>'
        '    <a href="?C=S;O=A">Size</a>  <a href="?C=D;O=A">Description</a><hr>'
    )
    lines = [
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">',
        "<html>",
        " <head>",
        f"  <title>Index of {title}</title>",
        " </head>",
        " <body>",
        f"<h1>Index of {title}</h1>",
        "<pre>" + head + row(parent, "Parent Directory", "", "-"),
    ]
    for name, modified, size in entries:
        shown = f"{modified.astimezone(_BRT):%Y-%m-%d %H:%M}"
        lines.append(row(name, name, shown, _apache_size(size)))
    lines += ["<hr></pre>", "</body></html>", ""]
    return "\n".join(lines).encode()


def _apache_size(size: int | None) -> str:
    """Sizes as Apache prints them: bytes, then 1.2K, 19M, 1.1G."""
    if size is None:
        return "-"
    if size < 973:
        return str(size)
    value = size / 1024
    unit = "K"
    for bigger in "MG":
        if value < 973:
            break
        value /= 1024
        unit = bigger
    return f"{value:.1f}{unit}" if value < 9.95 else f"{round(value)}{unit}"

"""An HTTP proxy in front of an S3 server that answers every Nth request with 503 SlowDown.

It runs as its own process (`python -m cvm210_assets_tests.flaky_s3 UPSTREAM PORT N LOG`):
delta-rs holds the GIL while it waits for S3, so a proxy thread in the test process could
not answer it. Each refused request's User-Agent is appended to LOG, so a test can see that
every S3 client of the pipeline (boto3, delta-rs, Arrow) met an error and got past it.
"""

from __future__ import annotations

import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    every: int
    log_path: str
    counter = 0
    lock = threading.Lock()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        with self.lock:
            type(self).counter += 1
            refuse = self.counter % self.every == 0
        if refuse:
            with open(self.log_path, "a") as log:
                log.write(f"{self.command} {self.headers.get('User-Agent', '')}\n")
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SLOW_DOWN)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in {"PUT", "POST"}:
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        finally:
            connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(upstream: str, port: str, every: str, log_path: str) -> None:
    parts = urlsplit(upstream)
    _Proxy.upstream = (parts.hostname, parts.port)
    _Proxy.every = int(every)
    _Proxy.log_path = log_path
    ThreadingHTTPServer(("127.0.0.1", int(port)), _Proxy).serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])

"""A real HTTP file server on 127.0.0.1 for the hot_update tests, with the awkward cases.

Routes (all GET):

* ``/f/<name>``: ``files[name]`` with a Content-Length (404 when unknown);
* ``/slow/<name>``: the same, but half of the body arrives only when ``release()`` is called
  (or after 10 s), to keep a download in flight;
* ``/hang``: headers and no body, ever (downloadTimeoutSeconds);
* ``/big?size=N``: N bytes with a Content-Length; ``/stream?size=N``: N bytes, chunked, no
  Content-Length (the body is generated, never held in memory: ``pattern_sha256(N)``);
* ``/status/<code>``: an empty answer with that status;
* ``/redirect?to=URL[&code=302]``: a redirect; ``/redirect-loop``; ``/redirect-empty`` (no
  Location);
* ``/partial/<name>``: ``206 Partial Content`` with the first 7 bytes of ``files[name]`` (what a
  server answers to a ``Range`` request, or a broken cache);
* ``/encoded/<name>``: ``files[name]`` (already gzip bytes, a ``.tar.gz``) with
  ``Content-Encoding: gzip``, whatever the client asked for (a misconfigured CDN).

Every request's path is recorded in ``requests``, its headers in ``headers``.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)


def pattern_bytes(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, size, CHUNK):
        digest.update(PATTERN[: min(CHUNK, size - start)])
    return digest.hexdigest()


class QuietHTTPServer(ThreadingHTTPServer):
    """Clients that hang up (a sidecar that gave up or stopped) are not errors worth printing."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._released = threading.Event()
        self.slow_started = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(self.path)
                server.headers.append(dict(self.headers.items()))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, name: str, content: bytes | str) -> str:
        """Serve ``content`` at ``/f/<name>``; returns its URL."""
        self.files[name] = content.encode() if isinstance(content, str) else content
        return self.url(f"/f/{name}")

    def release(self) -> None:
        self._released.set()

    def reset_slow(self) -> None:
        self._released.clear()
        self.slow_started.clear()

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(prefix))

    # -- handling ------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path.startswith("/f/"):
            body = self.files.get(path[3:])
            if body is None:
                return self._send(h, 404, b"not found")
            return self._send(h, 200, body)
        if path.startswith("/partial/"):
            body = self.files.get(path[len("/partial/") :], b"")
            h.send_response(206)
            h.send_header("Content-Range", f"bytes 0-6/{len(body)}")
            h.send_header("Content-Length", "7")
            h.end_headers()
            h.wfile.write(body[:7])
            return None
        if path.startswith("/encoded/"):
            body = self.files.get(path[len("/encoded/") :], b"")
            h.send_response(200)
            h.send_header("Content-Type", "application/x-tar")
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return None
        if path.startswith("/slow/"):
            body = self.files.get(path[6:], b"")
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self.slow_started.set()
            self._released.wait(10)
            h.wfile.write(body[len(body) // 2 :])
            return None
        if path == "/hang":
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.flush()
            self._released.wait(10)
            return None
        if path in ("/big", "/stream"):
            size = int(query["size"])
            h.send_response(200)
            if path == "/big":
                h.send_header("Content-Length", str(size))
            else:
                h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for start in range(0, size, CHUNK):
                chunk = PATTERN[: min(CHUNK, size - start)]
                if path == "/big":
                    h.wfile.write(chunk)
                else:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if path == "/stream":
                h.wfile.write(b"0\r\n\r\n")
            return None
        if path.startswith("/status/"):
            code = int(path[8:])
            if code in (204, 304):  # no body, no Content-Length
                h.send_response(code)
                h.end_headers()
                return None
            return self._send(h, code, b"")
        if path == "/redirect":
            return self._redirect(h, int(query.get("code", 302)), query["to"])
        if path == "/redirect-loop":
            return self._redirect(h, 302, "/redirect-loop")
        if path == "/redirect-empty":
            return self._send(h, 302, b"")
        return self._send(h, 404, b"no such route")

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _redirect(self, h: BaseHTTPRequestHandler, status: int, to: str) -> None:
        h.send_response(status)
        h.send_header("Location", to)
        h.send_header("Content-Length", "0")
        h.end_headers()


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

"""A real game HTTP server for the http_probe tests: it answers what the test tells it to.

Runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in a background thread, so that a probe
that hangs (``delay``) occupies one server thread and nothing else.  Each path has a standing
answer (``answer``) and optionally a queue of one-shot answers (``answer_once``) served first;
every request is recorded with its arrival time.  With ``tls`` (a server-side SSL context) it
speaks HTTPS.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What the game answers on one path."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Request:
    """One request the game received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


def answer(
    body: str | bytes | Any = "",
    *,
    status: int = 200,
    delay: float = 0.0,
    json_body: bool | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An :class:`Answer`: text as is, bytes as is, anything else (dict, list...) as JSON."""
    extra = tuple((headers or {}).items())
    if isinstance(body, bytes):
        return Answer(body, status, delay, "application/octet-stream", extra)
    if isinstance(body, str) and not json_body:
        return Answer(body.encode(), status, delay, headers=extra)
    return Answer(json.dumps(body).encode(), status, delay, "application/json", extra)


def redirect(location: str, status: int = 302, body: str = "") -> Answer:
    """A redirect to ``location`` (with an optional body: a game may put a state there too)."""
    return answer(body, status=status, headers={"Location": location})


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (a probe that timed out, a sidecar that stopped) are not errors."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)


class GameHTTP:
    """The game's state endpoints.  Use as a context manager or call ``start``/``stop``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self.scheme = "https" if tls is not None else "http"
        self._standing: dict[str, Answer] = {}
        self._once: dict[str, list[Answer]] = {}
        self._requests: list[Request] = []
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="game-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> GameHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers that are "hanging"
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GameHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the game answers ----------------------------------------------------------------

    def set(self, path: str, reply: Answer | str | bytes | Any) -> None:
        """The standing answer of ``path`` from now on (one-shot answers still go first)."""
        with self._lock:
            self._standing[path] = reply if isinstance(reply, Answer) else answer(reply)

    def set_once(self, path: str, *replies: Answer | str | bytes | Any) -> None:
        """Answers served to the next requests of ``path``, one each, before the standing one."""
        with self._lock:
            self._once.setdefault(path, []).extend(
                r if isinstance(r, Answer) else answer(r) for r in replies
            )

    def _next(self, path: str) -> Answer:
        with self._lock:
            queue = self._once.get(path)
            if queue:
                return queue.pop(0)
            return self._standing.get(path, Answer(b"no such path", 404))

    # -- what the game received ---------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.requests(path))

    def wait_for_requests(self, path: str, n: int, timeout: float = 10.0) -> None:
        """Wait until ``path`` received ``n`` requests in all."""
        deadline = time.monotonic() + timeout
        while self.count(path) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} got {self.count(path)} requests, expected {n}")
            time.sleep(0.02)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        game = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real game server would
            timeout = 10  # an idle keep-alive connection ends its thread eventually

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with game._lock:
                    game._requests.append(Request(self.command, path, dict(self.headers), body))
                reply = game._next(path)
                if reply.delay and game._stopping.wait(reply.delay):
                    self.close_connection = True  # the server is stopping: hang up
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        return Handler

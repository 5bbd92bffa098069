"""A counting, fault-injecting HTTP proxy in front of the test kube-apiserver.

Clients (kidecar under test) talk plain HTTP to `FaultProxy.url` on 127.0.0.1; the proxy
forwards each request over TLS to the real API server (verified against the test CA, the
client's `Authorization` header passed through, optionally with a client certificate), streams
the answer back (watches work), and records `(method, path, query, status, injected)`.

Tests use it to assert how many writes were sent ("no PATCH when nothing changed") and to make
the next N matching requests fail with a Kubernetes-style `Status` (409, 429, 500, ...) without
the request reaching the server. When the API server is down the proxy answers 502.
Upgrade requests (exec, port-forward) are not supported.

The proxy runs an aiohttp server on its own event loop in a daemon thread, so it can be used
from synchronous tests and from code that runs its own loop alike. No pytest imports here.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.apiserver import write_kubeconfig

# RFC 9110 §7.6.1 hop-by-hop headers, plus those aiohttp computes for the new connection.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# aiohttp sets Content-Length itself from the forwarded body.
_REQUEST_SKIP = _HOP_BY_HOP | {"content-length"}
_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the proxy received; `injected` when a fault answered it."""

    method: str
    path: str
    query: str
    status: int
    injected: bool


@dataclass
class Fault:
    """Answer up to `remaining` requests matching `method` and `path_regex` with `status`
    (`remaining=None`: every matching request, until `clear_faults()`)."""

    method: str
    path_regex: re.Pattern[str]
    status: int
    body: bytes
    headers: dict[str, str]
    remaining: int | None
    hits: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.remaining is None or self.remaining > 0)
            and self.method in ("*", method)
            and self.path_regex.search(path) is not None
        )


def status_body(code: int, message: str | None = None) -> dict[str, Any]:
    """A `meta/v1 Status` failure object as the API server sends it for `code`."""
    reason = _STATUS_REASONS.get(code, http.HTTPStatus(code).phrase.replace(" ", ""))
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or f"injected by the test fault proxy: {http.HTTPStatus(code).phrase}",
        "reason": reason,
        "code": code,
    }
    if code == 429:
        body["details"] = {"retryAfterSeconds": 1}
    return body


class FaultProxy:
    """Plain-HTTP reverse proxy on 127.0.0.1 in front of `upstream` (an https API server URL).

    Start with `start()` or `with FaultProxy(...) as proxy:`; `stop()` closes everything.
    All public methods are thread-safe.
    """

    def __init__(
        self,
        upstream: str,
        ca_file: Path,
        *,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        """`client_cert` is a (certificate, key) pair presented to the API server. Note that the
        API server authenticates a client certificate before a bearer token, so leave it out
        when proxying for a token identity."""
        self.upstream = upstream.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        if client_cert is not None:
            self._ssl.load_cert_chain(*client_cert)
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, valid after `start()`."""
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind a free loopback port and serve in a background thread; returns self."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            # No connection limit (aiohttp's default is 100): each sidecar keeps its watches
            # open through the proxy, and a fleet of them would starve every other request.
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
            # No total timeout: watches stay open as long as the client wants.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            # Send exactly the client's headers, not aiohttp's defaults (e.g. gzip).
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Stop serving, close upstream connections, end the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        loop.close()
        self._loop = self._thread = None

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        # Streaming answers (watches) that are still open end here, not when the loop closes.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # Closed TLS connections finish closing in later loop turns; closing the loop first
        # leaves their sockets to the garbage collector, whose ResourceWarning then fails an
        # unrelated test (aiohttp's documented graceful shutdown waits the same way).
        await asyncio.sleep(0.25)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration and inspection ---------------------------------------------------

    def write_kubeconfig(
        self, path: Path, token: str | None = None, namespace: str | None = None
    ) -> Path:
        """Write a kubeconfig pointing at this proxy with bearer `token` (None: no credentials,
        e.g. when the proxy presents a client certificate); return `path`."""
        user = {"token": token} if token is not None else {}
        return write_kubeconfig(path, server=self.url, user=user, namespace=namespace)

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int | None = 1,
        body: Mapping[str, Any] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer the next `times` requests with `method` (`"*"`: any) whose path matches
        `path_regex` (`re.search`, query string excluded) with `status`, without forwarding.

        `body` defaults to a Kubernetes `Status` for that code (`status_body`); a mapping is
        sent as JSON. `headers` default to `Retry-After: 1` for 429, as the API server's
        priority-and-fairness sends. Faults are tried in the order they were added; the
        returned `Fault` shows how often it fired (`hits`).
        """
        if body is None:
            body = status_body(status)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        if headers is None:
            headers = {"Retry-After": "1"} if status == 429 else {}
        fault = Fault(
            method=method.upper(),
            path_regex=re.compile(path_regex),
            status=status,
            body=payload,
            headers={"Content-Type": "application/json", **headers},
            remaining=times,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget all faults, fired or not."""
        with self._lock:
            self._faults.clear()

    def requests(self) -> list[RecordedRequest]:
        """Every request since the last `reset()`, in arrival order."""
        with self._lock:
            return list(self._log)

    def counts(self) -> Counter[tuple[str, str]]:
        """Number of requests by (method, path) since the last `reset()`."""
        with self._lock:
            return Counter((r.method, r.path) for r in self._log)

    def count(self, method: str | None = None, path_regex: str | None = None) -> int:
        """Number of requests since the last `reset()` with this method (any if None) and a
        path matching `path_regex` (`re.search`; any if None). Injected answers count too."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        with self._lock:
            return sum(
                1
                for r in self._log
                if (method is None or r.method == method.upper())
                and (pattern is None or pattern.search(r.path))
            )

    def reset(self) -> None:
        """Forget the recorded requests (faults stay)."""
        with self._lock:
            self._log.clear()

    # -- request handling ---------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    fault.hits += 1
                    return fault
        return None

    def _record(self, request: web.Request, status: int, injected: bool) -> None:
        with self._lock:
            self._log.append(
                RecordedRequest(
                    request.method, request.path, request.query_string, status, injected
                )
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            self._record(request, fault.status, injected=True)
            await request.read()  # consume the body so the connection can be reused
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)

        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_SKIP}
        body = await request.read()
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                self._record(request, upstream.status, injected=False)
                response = web.StreamResponse(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers={
                        k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                    },
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
        except (aiohttp.ClientError, OSError) as e:
            if response is None:
                self._record(request, 502, injected=False)
                return web.json_response(
                    status_body(502, f"test fault proxy: API server unreachable: {e}"), status=502
                )
            # The server or the client went away mid-stream (e.g. a watch): drop the
            # connection, as the client would see it without the proxy.
            if request.transport is not None:
                request.transport.close()
        return response

"""The HTTP servers: the admin server (``/healthz``, ``/readyz``, ``/metrics`` and plugins' admin
routes) and one server per other address plugins asked for.

On shutdown the plugins' servers stop listening first (requests in flight go on) while the admin
server keeps answering ``/healthz`` until the end.

Limits, so that a client that misbehaves (or many) cannot starve the others:

* **header and idle timeout** (:data:`HEADER_TIMEOUT`): a connection must send a complete
  request head within this many seconds of connecting or of its previous answer, or it is
  closed (a silent or slow-drip connection holds nothing for long);
* **connection cap** (:func:`connection_cap`): at most :data:`MAX_CONNECTIONS` connections per
  server, fewer when the process may open few files (``RLIMIT_NOFILE``), so that the other
  servers and the file system always have descriptors left. At the cap, the connection idle the
  longest (no request in progress) is closed to make room; when every connection is busy, the
  new one is refused;
* client mistakes are logged on one line, rate-limited
  (:class:`kidecar_core._runtime.logs.ClientErrorFilter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import _default_expect_handler
from prometheus_client import CONTENT_TYPE_LATEST

from kidecar_core._base.metrics import Metrics
from kidecar_core._config.listen import parse_listen
from kidecar_core._config.schema import FieldError
from kidecar_core._plugins.registry import Route, RouteRegistry
from kidecar_core._runtime.logs import LogBudget
from kidecar_core.errors import StartupError

log = logging.getLogger("kidecar")
http_log = logging.getLogger("kidecar.http")

MAX_REQUEST_LINE = 64 * 1024
MAX_BODY = 64 * 1024
"""Largest request body of every kidecar server (bytes); a larger one is a JSON ``413``."""
"""aiohttp's default (8190 bytes) would answer a long query string with its own plain-text 400:
a 4096-character download URL passed as a query parameter takes up to 12 bytes per character
once percent-encoded, and the API must answer it (JSON) itself."""

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a complete request head (after connecting, or between two
requests on a kept-alive connection)."""
MAX_CONNECTIONS = 64
"""Connections per server when file descriptors are plentiful."""
RESERVED_FILES = 64
"""File descriptors kept for everything else (downloads, the API client, logs)."""
MIN_CONNECTIONS = 8


def connection_cap(servers: int, open_files: int | None = None) -> int:
    """Connections each of ``servers`` servers may hold: :data:`MAX_CONNECTIONS`, or less so
    that all of them together leave :data:`RESERVED_FILES` of ``open_files`` (default: the
    soft ``RLIMIT_NOFILE``) for the rest; never below :data:`MIN_CONNECTIONS`."""
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if open_files == resource.RLIM_INFINITY:
            return MAX_CONNECTIONS
    share = (open_files - RESERVED_FILES) // max(1, servers)
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, share))


class _Refused(asyncio.Protocol):
    """A connection over the cap: reset at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class ConnectionGuard:
    """The connection cap of one server: its protocol factory and its middleware.

    The middleware marks the connections with a request in progress; the factory makes room
    for a new connection by closing the one idle the longest.
    """

    def __init__(self, cap: int, what: str) -> None:
        self.cap = cap
        self.what = what
        self.server: web.Server | None = None
        self._busy: set[RequestHandler] = set()
        self._closed: set[RequestHandler] = set()
        """Closed by the guard, not yet gone from ``server.connections``."""
        self._budget = LogBudget()
        self.evicted = 0
        self.refused = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        protocol = request.protocol
        self._busy.add(protocol)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self._busy.discard(protocol)

    def __call__(self) -> asyncio.Protocol:
        assert self.server is not None
        connections = self.server.connections
        self._closed.intersection_update(connections)
        open_now = [c for c in connections if c not in self._closed]
        if len(open_now) >= self.cap:
            idle = next((c for c in open_now if c not in self._busy), None)
            if idle is None:
                self.refused += 1
                self._note("refused a connection: all %d are busy", self.cap)
                return _Refused()
            self._closed.add(idle)
            idle.force_close()
            self.evicted += 1
            self._note("closed the connection idle the longest: %d are open", self.cap)
        handler: asyncio.Protocol = self.server()
        return handler

    def _note(self, message: str, *args: Any) -> None:
        allowed, held = self._budget.allow()
        if allowed:
            more = f" ({held} more not logged)" if held else ""
            text = "%s: connection cap reached; " + message + "%s"
            http_log.warning(text, self.what, *args, more)


class GuardedSite(web.TCPSite):
    """A ``TCPSite`` whose connections pass a :class:`ConnectionGuard`."""

    def __init__(
        self, runner: web.BaseRunner, host: str | None, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner, host, port)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        self.guard.server = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, self._host, self._port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def make_admin_app(readiness: Readiness, metrics: Metrics) -> web.Application:
    """The admin application: ``readiness()`` answers ``/readyz`` (200 when ready, else 503)."""

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop is responsive.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.json_response(detail, status=200 if ready else 503)

    async def exposition(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", exposition)
    return app


async def expect_small_body(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` with a ``Content-Length`` over :data:`MAX_BODY`: a JSON ``413``
    at once, instead of inviting the body and then waiting for it (aiohttp's default)."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return too_large(length)
    await _default_expect_handler(request)  # 100 Continue (or 417 for another expectation)
    return None


def too_large(length: int) -> web.Response:
    """The ``413`` of a body of ``length`` bytes (over :data:`MAX_BODY`)."""
    return web.json_response(
        {
            "status": "error",
            "code": 413,
            "reason": "request too large",
            "message": f"the request body ({length} bytes) is larger than {MAX_BODY} bytes",
        },
        status=413,
        headers={"Connection": "close"},
    )


class Servers:
    """The running HTTP servers; the first is the admin server."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def start(self, admin: web.Application, admin_listen: str, routes: RouteRegistry) -> None:
        """Serve ``admin`` (plus routes without ``listen``) and a server per other address.

        Raises :class:`StartupError` when an address is invalid or taken; the servers already
        started are then for the caller to :meth:`cleanup`.
        """
        by_listen: dict[str | None, list[Route]] = {}
        for r in routes.routes:
            by_listen.setdefault(r.listen, []).append(r)
        for r in by_listen.pop(None, []):
            admin.router.add_route(r.method, r.path, r.handler, expect_handler=expect_small_body)
        cap = connection_cap(servers=1 + len(by_listen))
        await self._serve(admin, admin_listen, "admin", cap)
        for listen, rs in by_listen.items():
            assert listen is not None
            app = web.Application(client_max_size=MAX_BODY)
            for r in rs:
                app.router.add_route(r.method, r.path, r.handler, expect_handler=expect_small_body)
            await self._serve(app, listen, ",".join(sorted({r.plugin for r in rs})), cap)

    async def _serve(self, app: web.Application, listen: str, what: str, cap: int) -> None:
        key = "--admin-listen (KIDECAR_ADMIN_LISTEN)" if what == "admin" else f"{what}: listen"
        try:
            address = parse_listen(listen, key, any_port=True)
        except FieldError as e:
            raise StartupError(f"invalid listen address: {e}") from None
        host, port = address.host or None, address.port
        guard = ConnectionGuard(cap, f"{what} server on {listen}")
        app.middlewares.append(guard.middleware)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            max_line_size=MAX_REQUEST_LINE,
            keepalive_timeout=HEADER_TIMEOUT,
        )
        await runner.setup()
        site = GuardedSite(runner, host, port, guard)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise StartupError(f"cannot listen on {listen} for {what}: {e.strerror or e}") from None
        self._runners.append(runner)
        log.info(
            "serving %s on http://%s:%s (at most %d connections)",
            what,
            host or "0.0.0.0",
            port,
            cap,
        )

    async def stop_accepting(self, timeout: float) -> None:
        """Plugins' servers close their listening sockets; every server runs its shutdown."""
        for runner in self._runners[1:]:
            for site in list(runner.sites):
                with contextlib.suppress(Exception):
                    await site.stop()
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.shutdown(), timeout=timeout)

    async def cleanup(self) -> None:
        """Close every server (the admin server last of all)."""
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()

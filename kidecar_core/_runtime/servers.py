"""The HTTP servers: the admin server (``/healthz``, ``/readyz``, ``/metrics`` and plugins' admin
routes) and one server per other address plugins asked for.

On shutdown the plugins' servers stop listening first (requests in flight go on) while the admin
server keeps answering ``/healthz`` until the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kidecar_core._base.metrics import Metrics
from kidecar_core._plugins.registry import Route, RouteRegistry
from kidecar_core.errors import StartupError

log = logging.getLogger("kidecar")

MAX_REQUEST_LINE = 64 * 1024
"""aiohttp's default (8190 bytes) would answer a long query string with its own plain-text 400:
a 4096-character download URL passed as a query parameter takes up to 12 bytes per character
once percent-encoded, and the API must answer it (JSON) itself."""

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def parse_listen(listen: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT`` → (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise StartupError(f"invalid listen address {listen!r}: expected HOST:PORT or :PORT")
    host = host.strip("[]")
    return (host or None), int(port_text)


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

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", exposition)
    return app


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
            admin.router.add_route(r.method, r.path, r.handler)
        await self._serve(admin, admin_listen, "admin")
        for listen, rs in by_listen.items():
            assert listen is not None
            app = web.Application(client_max_size=64 * 1024)
            for r in rs:
                app.router.add_route(r.method, r.path, r.handler)
            await self._serve(app, listen, ",".join(sorted({r.plugin for r in rs})))

    async def _serve(self, app: web.Application, listen: str, what: str) -> None:
        host, port = parse_listen(listen)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            max_line_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise StartupError(f"cannot listen on {listen} for {what}: {e.strerror or e}") from None
        self._runners.append(runner)
        log.info("serving %s on http://%s:%s", what, host or "0.0.0.0", port)

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

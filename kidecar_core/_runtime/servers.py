"""The admin HTTP server: ``/healthz``, ``/readyz``, ``/metrics`` (and plugins' admin routes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kidecar_core.errors import StartupError

if TYPE_CHECKING:
    from kidecar_core._runtime.supervisor import Runtime


def parse_listen(listen: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT`` → (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise StartupError(f"invalid listen address {listen!r}: expected HOST:PORT or :PORT")
    host = host.strip("[]")
    return (host or None), int(port_text)


def make_admin_app(runtime: Runtime) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop is responsive.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, detail = runtime.readiness()
        return web.json_response(detail, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=runtime.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app

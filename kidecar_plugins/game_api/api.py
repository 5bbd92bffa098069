"""The HTTP handlers of the game API (``/v1/...``); the OpenAPI document is ``openapi.yaml``.

Checks run in this order: bearer token (401/403, first, so that a caller without the token
learns nothing else), the body and the key (400; 403 for a key outside ``metadataPrefixes``;
413, 415), then whether the write could be made: 409 while a guard holds the field (decided
from the GameServer as last seen, the way the writer will decide), 503 only when the write
cannot be queued (the sidecar is stopping). Otherwise the write is queued: 202.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kidecar_core import AuthFailure, KidecarError, PluginContext, TokenSource
from kidecar_plugins.game_api.errors import ApiError
from kidecar_plugins.game_api.feed import ObjectFeed
from kidecar_plugins.game_api.gameserver import parse_spec_patch, view
from kidecar_plugins.game_api.writes import Writer

log = logging.getLogger("kidecar.plugin.game_api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_TYPES = ("application/json", "application/merge-patch+json")
NDJSON = "application/x-ndjson"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 415 for another media type, 413 when too large, 400 when it is
    not JSON (UTF-8, RFC 8259; ``NaN`` and ``Infinity`` are refused as the API server refuses
    them)."""
    if request.content_type not in JSON_TYPES:
        raise ApiError(
            415,
            f"send a JSON body with Content-Type: application/json (got {request.content_type!r})",
        )
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "the request body is too large (64 KiB at most)") from None
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the body is not UTF-8: {e}") from None
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"the body is not valid JSON: {str(e)[:200]}") from None


class GameApi:
    """The handlers, bound to one configured plugin: its token, feeds and writer."""

    def __init__(
        self, ctx: PluginContext, tokens: TokenSource, feed: ObjectFeed, writer: Writer
    ) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.feed = feed
        self.writer = writer
        self.requests = ctx.metrics.counter(
            "kidecar_game_api_requests",
            "Requests to the game API, by operation and HTTP status.",
            ["operation", "code"],
        )

    def route(self, operation: str, handler: Handler) -> Handler:
        """``handler`` behind the token check, answering :class:`ApiError` s and counting."""

        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                try:
                    self.tokens.check(request.headers.get("Authorization"))
                except AuthFailure as e:
                    raise ApiError(e.status, e.message) from None
                response = await handler(request)
            except ApiError as e:
                if e.status >= 409:
                    log.info("game API %s refused (%d): %s", operation, e.status, e.message)
                response = e.response()
            self.requests.labels(operation, str(response.status)).inc()
            return response

        return serve

    # -- reading ----------------------------------------------------------------------------

    async def get_gameserver(self, _: web.Request) -> web.StreamResponse:
        try:
            obj = await self.feed.current()
        except KidecarError as e:
            raise ApiError(503, f"cannot read the GameServer: {e}", retry_after=1) from None
        if obj is None:
            raise ApiError(404, f"{self.feed.ref} does not exist (yet): OKG creates it")
        return web.json_response(view(obj))

    async def watch(self, request: web.Request) -> web.StreamResponse:
        if self.feed.closed:
            raise ApiError(503, "the sidecar is stopping", retry_after=1)
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-store"})
        try:
            await response.prepare(request)
        except ConnectionError:
            return response  # the game went away before the first byte: nothing to tell it
        async with contextlib.aclosing(self.feed.changes()) as changes:
            async for obj in changes:
                if obj is None:
                    if request.transport is None or request.transport.is_closing():
                        break  # the game went away while nothing changed
                    continue
                try:
                    await response.write(json.dumps(view(obj)).encode() + b"\n")
                except ConnectionError:
                    break
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    # -- writing ----------------------------------------------------------------------------

    async def patch_gameserver(self, request: web.Request) -> web.StreamResponse:
        fields = parse_spec_patch(await read_json(request))
        return self._queued(await self.writer.spec(fields))

    async def put_label(self, request: web.Request) -> web.StreamResponse:
        return await self._put(request, "labels")

    async def put_annotation(self, request: web.Request) -> web.StreamResponse:
        return await self._put(request, "annotations")

    async def delete_label(self, request: web.Request) -> web.StreamResponse:
        return self._queued(await self.writer.metadata("labels", request.match_info["key"], None))

    async def delete_annotation(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        return self._queued(await self.writer.metadata("annotations", key, None))

    async def _put(self, request: web.Request, kind: str) -> web.StreamResponse:
        key = request.match_info["key"]
        self.writer.check_key(kind, key)  # 403/400 before reading the body
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"value"}:
            raise ApiError(400, 'the body must be {"value": "<string>"} and nothing else')
        value = body["value"]
        if not isinstance(value, str):
            raise ApiError(400, f"value: must be a string ({kind[:-1]} values are strings)")
        return self._queued(await self.writer.metadata(kind, key, value))

    def _queued(self, accepted: dict[str, Any]) -> web.Response:
        return web.json_response({"status": "queued", **accepted}, status=202)

"""The ``game_api`` plugin: the game talks to its GameServer through the sidecar.

Agones gives every game server a local SDK server (read and watch its GameServer, set its state,
labels and annotations, writes batched within 500 ms); OpenKruiseGame has none.  This plugin
serves one on loopback (``listen``; a token is required to listen anywhere else):

* ``GET /v1/gameserver`` and ``GET /v1/gameserver/watch`` (newline-delimited JSON);
* ``PATCH /v1/gameserver``: ``opsState``, ``updatePriority``, ``deletionPriority``,
  ``networkDisabled``;
* ``PUT``/``DELETE /v1/metadata/labels/{key}`` and ``/v1/metadata/annotations/{key}``.

Writes are coalesced per object (:mod:`.batch`) and emitted as results whose writes take the
core's path (:mod:`.writes`).  See ``openapi.yaml`` for every answer and
:mod:`kidecar_plugins.game_api.client` for a small Python client.
"""

from __future__ import annotations

from collections.abc import Awaitable

from kidecar_core import (
    ContainerPort,
    ObjectRef,
    PluginContext,
    PodRequirements,
    Result,
    RouteRegistry,
    StateKey,
    TokenSource,
    Write,
    hookimpl,
    loopback_only,
    parse_listen,
)
from kidecar_plugins.game_api.api import GameApi
from kidecar_plugins.game_api.batch import Batcher
from kidecar_plugins.game_api.config import GameApiConfig
from kidecar_plugins.game_api.feed import ObjectFeed
from kidecar_plugins.game_api.writes import Writer

NAME = "game_api"
API = StateKey[GameApi]("game_api")
"""The plugin's parts, built in ``kidecar_configure``."""
LABELS = "/v1/metadata/labels/"
ANNOTATIONS = "/v1/metadata/annotations/"
KEY = r"{key:[\s\S]+}"
"""The rest of the path, slashes and any other character included: the key is checked by the
handler (a 404 for a key with a newline would not say what is wrong)."""


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return GameApiConfig if name == NAME else None


@hookimpl
def kidecar_pod_requirements(name: str, config: GameApiConfig) -> PodRequirements | None:
    """The API's port, when it listens beyond loopback (then a token is configured)."""
    if name != NAME or loopback_only(config.listen):
        return None
    return PodRequirements(ports=(ContainerPort("game-api", parse_listen(config.listen).port),))


def ops_origin(ctx: PluginContext) -> str:
    """The source of the game's opsState asks, as ``opsStatePrecedence`` logs name it."""
    return f"{ctx.path} (game_api: PATCH /v1/gameserver opsState)"


def build(ctx: PluginContext) -> GameApi:
    """The plugin's parts: token, feeds of the GameServer (and the Pod), batcher, writer."""
    config: GameApiConfig = ctx.config
    tokens = TokenSource(config.auth)
    tokens.load()  # ConfigError with the path of the token setting

    def emit(writes: list[Write]) -> None:
        for ref in {w.target for w in writes}:
            feeds[ref].expect_change()
        # The game's opsState is one ask among the sources of opsStatePrecedence, and a result
        # from an origin that had asked withdraws its ask unless it asks again: so the opsState
        # writes are results of their own origin, and the other writes never touch that ask.
        ops = [w for w in writes if "opsState" in (w.patch.get("spec") or {})]
        rest = [w for w in writes if w not in ops]
        for source, group in ((ops_origin(ctx), ops), (ctx.config_path(""), rest)):
            if group:
                ctx.emit(Result(NAME, "write", source=source, kind="write", writes=(*group,)))

    gameserver = ObjectFeed(ctx, ObjectRef.gameserver(ctx.identity), spawn=ctx.spawn)
    metadata = gameserver
    if config.metadata_target == "pod":
        metadata = ObjectFeed(ctx, ObjectRef.pod(ctx.identity), spawn=ctx.spawn)
    feeds = {gameserver.ref: gameserver, metadata.ref: metadata}
    batcher = Batcher(emit, config.write_interval_seconds, ctx.clock)
    writer = Writer(ctx, config, batcher, gameserver, metadata)
    return GameApi(ctx, tokens, gameserver, writer)


@hookimpl
def kidecar_configure(ctx: PluginContext) -> None:
    ctx.state[API] = build(ctx)


@hookimpl
def kidecar_register_routes(ctx: PluginContext, routes: RouteRegistry) -> None:
    api = ctx.state[API]
    listen = ctx.config.listen
    for method, path, operation, handler in (
        ("GET", "/v1/gameserver", "get", api.get_gameserver),
        ("PATCH", "/v1/gameserver", "patch", api.patch_gameserver),
        ("GET", "/v1/gameserver/watch", "watch", api.watch),
        ("PUT", LABELS + KEY, "put_label", api.put_label),
        ("DELETE", LABELS + KEY, "delete_label", api.delete_label),
        ("PUT", ANNOTATIONS + KEY, "put_annotation", api.put_annotation),
        ("DELETE", ANNOTATIONS + KEY, "delete_annotation", api.delete_annotation),
    ):
        routes.add(method, path, api.route(operation, handler), listen=listen)


@hookimpl
def kidecar_start(ctx: PluginContext) -> None:
    api = ctx.state[API]
    api.writer.batcher.open()
    api.feed.open()
    api.writer.metadata_feed.open()


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None]:
    api = ctx.state[API]
    api.writer.batcher.close()  # what was acknowledged (202) goes to the writer now
    return stop_feeds(api)


async def stop_feeds(api: GameApi) -> None:
    """End the watches (their streams finish cleanly) and the following of objects."""
    await api.feed.close()
    await api.writer.metadata_feed.close()

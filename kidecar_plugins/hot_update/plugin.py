"""The ``hot_update`` plugin: new game files without restarting the pod.

``POST /hot-update`` (default port 5000) downloads a file into ``fileDir`` and notifies the game
with a signal or an HTTP request; ``GET /hot-update`` tells what is applied. Every attempt is
recorded (pod annotation through ``storageConfig``, an Event, metrics) and the last applied
version is kept in the result ConfigMap, from which it is re-applied after a restart. See
:mod:`.api`, :mod:`.updater` and :mod:`.record` for the details.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from kidecar_core import (
    ConfigError,
    ContainerPort,
    PluginContext,
    PodRequirements,
    Result,
    RolloutTarget,
    RouteRegistry,
    RuntimeView,
    SharedVolume,
    StateKey,
    hookimpl,
    loopback_only,
    parse_listen,
)
from kidecar_plugins.hot_update.api import HotUpdateApi
from kidecar_plugins.hot_update.auth import TokenSource
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.replay import replay_last_update
from kidecar_plugins.hot_update.rollout import probes
from kidecar_plugins.hot_update.rollout.check import check_target
from kidecar_plugins.hot_update.rollout.follower import RolloutFollower
from kidecar_plugins.hot_update.updater import HotUpdater

NAME = "hot_update"
# Keys of ctx.state, set by kidecar_configure.
TOKENS = StateKey[TokenSource]("tokens")
LISTEN = StateKey[str]("listen")
UPDATER = StateKey[HotUpdater]("updater")
FOLLOWER = StateKey[RolloutFollower | None]("rollout follower")
DOWNLOAD_VOLUME = "kidecar-downloads"
log = logging.getLogger("kidecar.plugin.hot_update")


def effective_listen(listen: str, authenticated: bool) -> str:
    """Where the API really listens: anywhere with a token, loopback only without one."""
    if authenticated or loopback_only(listen):
        return listen
    return f"127.0.0.1:{parse_listen(listen).port}"


def prepare_file_dir(path: str) -> None:
    """Create ``fileDir`` if needed; a ConfigError when the sidecar cannot write there."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError.single("fileDir", f"cannot create {path}: {e.strerror or e}") from None
    if not directory.is_dir():
        raise ConfigError.single("fileDir", f"{path} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError.single(
            "fileDir", f"{path} is not writable by the sidecar (uid {os.getuid()})"
        )


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return HotUpdateConfig if name == NAME else None


@hookimpl
def kidecar_pod_requirements(name: str, config: HotUpdateConfig) -> PodRequirements | None:
    """``fileDir`` shared with the game; the API port when it is reachable from outside the pod
    (a token is configured); ``shareProcessNamespace`` to signal the game's process."""
    if name != NAME:
        return None
    reachable = config.auth.configured and not loopback_only(config.listen)
    port = ContainerPort("hot-update", parse_listen(config.listen).port)
    return PodRequirements(
        ports=(port,) if reachable else (),
        shared_volumes=(SharedVolume(DOWNLOAD_VOLUME, config.file_dir),),
        share_process_namespace=config.load_patch_type == "signal",
    )


@hookimpl
def kidecar_configure(ctx: PluginContext) -> None:
    config: HotUpdateConfig = ctx.config
    tokens = TokenSource(config.auth)
    problems = []
    for check in (tokens.load, lambda: prepare_file_dir(config.file_dir)):
        try:
            check()
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    listen = effective_listen(config.listen, tokens.enabled)
    if listen != config.listen:
        log.warning(
            "hot_update: no auth token configured, so the hot-update API listens on %s only "
            "(reachable from inside the pod), not on %s; set auth.tokenFile or auth.tokenEnv "
            "to accept calls from outside the pod",
            listen,
            config.listen,
        )
    ctx.state[TOKENS] = tokens
    ctx.state[LISTEN] = listen
    ctx.state[UPDATER] = updater = HotUpdater(ctx, config)
    follows = config.rollout.enabled and not ctx.local_mode
    ctx.state[FOLLOWER] = RolloutFollower(ctx, updater, config.rollout) if follows else None


@hookimpl
def kidecar_register_routes(ctx: PluginContext, routes: RouteRegistry) -> None:
    api = HotUpdateApi(ctx.state[UPDATER], ctx.state[TOKENS])
    routes.add("POST", "/hot-update", api.post, listen=ctx.state[LISTEN])
    routes.add("GET", "/hot-update", api.get, listen=ctx.state[LISTEN])


@hookimpl
def kidecar_start(ctx: PluginContext) -> Awaitable[None]:
    return start(ctx.state[UPDATER], ctx.state[FOLLOWER])


async def start(updater: HotUpdater, follower: RolloutFollower | None = None) -> None:
    await updater.start()
    if updater.config.persistence.enabled and not updater.replayed:
        updater.spawn(replay_last_update(updater), "replay")
    if follower is not None:
        probes.register(updater.ctx.identity, follower.probes)
        updater.spawn(follower.run(), "rollout")


@hookimpl
def kidecar_on_result(result: Result, runtime: RuntimeView) -> None:
    """Probe results reach the rollout follower (the verification window after an update)."""
    probes.observe(runtime.identity, result)


@hookimpl
def kidecar_check_rollout(name: str, config: Any, target: RolloutTarget) -> list[str] | None:
    """``kidecar rollout start``: the problems the sidecars would have with ``target``."""
    if name != NAME or not config.rollout.enabled:
        return None
    return check_target(config, target)


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None]:
    follower = ctx.state[FOLLOWER]
    if follower is not None:
        probes.unregister(ctx.identity, follower.probes)
    return ctx.state[UPDATER].stop()

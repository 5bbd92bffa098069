"""``tp_recorder``: journals its lifecycle and emits a result on every tick and on stop."""

from __future__ import annotations

from collections.abc import Awaitable

import attrs

from kidecar_core import (
    PluginContext,
    Result,
    RuntimeView,
    StateKey,
    StorageConfig,
    field,
    hookimpl,
)
from kidecar_testplugins import journal

TICKS = StateKey[int]("ticks")
NAME = "tp_recorder"
# Broadcast hooks get no plugin context; the journals of configured recorders are kept here so
# kidecar_shutdown can say it fired. (A test plugin; real plugins keep state on ctx.state.)
_JOURNALS: set[str] = set()


@attrs.frozen
class RecorderConfig:
    journal: str = field(doc="File the hook calls are appended to.")
    interval: float = field(default=0.1, doc="Tick period.")
    storage_config: StorageConfig | None = field(key="storageConfig", default=None, doc="Where.")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return RecorderConfig if name == NAME else None


@hookimpl
def kidecar_configure(ctx: PluginContext) -> None:
    journal(ctx.config.journal, ctx.name, "configure")
    _JOURNALS.add(ctx.config.journal)
    ctx.state[TICKS] = 0


@hookimpl
def kidecar_start(ctx: PluginContext) -> None:
    journal(ctx.config.journal, ctx.name, "start")


@hookimpl
def kidecar_tick_interval(ctx: PluginContext) -> float:
    interval: float = ctx.config.interval
    return interval


@hookimpl
def kidecar_tick(ctx: PluginContext) -> None:
    ctx.state[TICKS] += 1
    journal(ctx.config.journal, ctx.name, f"tick {ctx.state[TICKS]}")
    ctx.emit(_result(ctx, f"tick-{ctx.state[TICKS]}"))


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    journal(ctx.config.journal, ctx.name, "stop")
    # The last result of a stopping plugin must still be written before kidecar exits.
    ctx.emit(_result(ctx, "stopped"))
    return None


@hookimpl
def kidecar_shutdown(runtime: RuntimeView) -> None:
    # Broadcast hook: fires once per process on SIGTERM, after the plugins stopped.
    if runtime.local_mode and _JOURNALS:
        for path in _JOURNALS:
            journal(path, NAME, "shutdown")


def _result(ctx: PluginContext, state: str) -> Result:
    return Result(
        plugin=ctx.name,
        state=state,
        storage=ctx.config.storage_config,
        source=ctx.config_path("storageConfig"),
        kind="test",
    )

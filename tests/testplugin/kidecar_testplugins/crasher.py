"""``tp_crasher``: raises on a chosen tick of every run, to exercise the restart policy."""

from __future__ import annotations

import attrs

from kidecar_core import PluginContext, StateKey, field, hookimpl
from kidecar_testplugins import journal

TICKS = StateKey[int]("ticks")
NAME = "tp_crasher"


@attrs.frozen
class CrasherConfig:
    journal: str = field(doc="File the hook calls are appended to.")
    crash_on_tick: int = field(key="crashOnTick", default=2, doc="Tick (per run) that raises.")
    interval: float = field(default=0.05, doc="Tick period.")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return CrasherConfig if name == NAME else None


@hookimpl
def kidecar_start(ctx: PluginContext) -> None:
    ctx.state[TICKS] = 0
    journal(ctx.config.journal, ctx.name, "start")


@hookimpl
def kidecar_tick_interval(ctx: PluginContext) -> float:
    interval: float = ctx.config.interval
    return interval


@hookimpl
def kidecar_tick(ctx: PluginContext) -> None:
    ctx.state[TICKS] += 1
    if ctx.state[TICKS] == ctx.config.crash_on_tick:
        journal(ctx.config.journal, ctx.name, "crash")
        raise RuntimeError("tp_crasher crashes on purpose")


@hookimpl
def kidecar_stop(ctx: PluginContext) -> None:
    journal(ctx.config.journal, ctx.name, "stop")

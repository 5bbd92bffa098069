"""``tp_filestate``: every tick, emits the content of a file as its result (like a probe whose
answer a test controls by writing the file).  Emits even when unchanged, on purpose: the core
must turn a repeated result into zero writes."""

from __future__ import annotations

from pathlib import Path

import attrs

from kidecar_core import PluginContext, Result, StorageConfig, field, hookimpl

NAME = "tp_filestate"


@attrs.frozen
class FileStateConfig:
    path: str = field(doc="File whose stripped content is the state.")
    interval: float = field(default=0.05, doc="Tick period.")
    storage_config: StorageConfig | None = field(key="storageConfig", default=None, doc="Where.")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return FileStateConfig if name == NAME else None


@hookimpl
def kidecar_tick_interval(ctx: PluginContext) -> float:
    interval: float = ctx.config.interval
    return interval


@hookimpl
def kidecar_tick(ctx: PluginContext) -> None:
    try:
        state = Path(ctx.config.path).read_text().strip()
    except FileNotFoundError:
        return
    ctx.emit(
        Result(
            plugin=ctx.name,
            state=state,
            storage=ctx.config.storage_config,
            source=ctx.config_path("storageConfig"),
            kind="test",
        )
    )

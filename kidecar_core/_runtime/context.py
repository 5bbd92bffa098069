"""The runtime's own implementations of :class:`~kidecar_core.RuntimeView` and
:class:`~kidecar_core.PluginContext` (private: plugins know only the protocols)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any

import attrs

from kidecar_core._base.clock import Clock
from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.result import Result
from kidecar_core._persist.write import FieldNotIn
from kidecar_core._plugins.context import PluginContext, plugin_config_path, plugin_path
from kidecar_core._plugins.state import PluginState
from kidecar_core._store.events import EventRecorder
from kidecar_core._store.objects import JSON, Event, ObjectRef, ObjectStore, PodIdentity
from kidecar_core._store.watches import Watches, follow_object
from kidecar_core.errors import PersistError

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
BlockingGuard = Callable[[ObjectRef, Iterable[FieldNotIn], Mapping[str, JSON]], FieldNotIn | None]
"""The applier's :meth:`~kidecar_core._persist.applier.Applier.blocking_guard`."""


@attrs.define(eq=False)
class Shared:
    """What every view of one runtime shares."""

    identity: PodIdentity
    store: ObjectStore
    metrics: Metrics
    events: EventRecorder
    clock: Clock
    local_mode: bool
    emit: Callable[[Result], None]
    blocking_guard: BlockingGuard
    watches: Watches
    stopping: asyncio.Event = attrs.field(factory=asyncio.Event)
    """Set when the sidecar stops (SIGTERM/SIGINT)."""
    seen: set[object] = attrs.field(factory=set)


class View:
    """:class:`~kidecar_core.RuntimeView` of a running sidecar."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    @property
    def identity(self) -> PodIdentity:
        return self._shared.identity

    @property
    def metrics(self) -> Metrics:
        return self._shared.metrics

    @property
    def local_mode(self) -> bool:
        return self._shared.local_mode

    @property
    def clock(self) -> Clock:
        return self._shared.clock

    @property
    def shutting_down(self) -> bool:
        return self._shared.stopping.is_set()

    async def get_object(self, ref: ObjectRef) -> dict[str, JSON] | None:
        return await self._shared.store.get(ref)

    def blocking_guard(
        self, ref: ObjectRef, guards: Iterable[FieldNotIn], live: Mapping[str, JSON]
    ) -> FieldNotIn | None:
        return self._shared.blocking_guard(ref, guards, live)

    async def list_objects(self, ref: ObjectRef) -> list[dict[str, JSON]]:
        return await self._shared.store.list(ref)

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        return await self._shared.store.patch_status(ref, patch)

    async def patch_object(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        return await self._shared.store.patch(ref, patch)

    async def create_object(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        return await self._shared.store.create(ref, body)

    def watch_object(
        self, ref: ObjectRef, *, stop_on: tuple[type[PersistError], ...] = ()
    ) -> AsyncIterator[dict[str, JSON] | None]:
        return follow_object(self._shared.watches, ref, stop_on)

    def first_time(self, key: object) -> bool:
        if key in self._shared.seen:
            return False
        self._shared.seen.add(key)
        return True

    def record_event(self, event: Event) -> None:
        self._shared.events.record(event)


class Context(View):
    """:class:`~kidecar_core.PluginContext` of one configured plugin."""

    def __init__(
        self,
        shared: Shared,
        *,
        name: str,
        config: Any,
        bootorder: int,
        index: int,
        spawn: Spawn,
    ) -> None:
        super().__init__(shared)
        self.name = name
        self.config = config
        self.bootorder = bootorder
        self.index = index
        self.state = PluginState()
        self.log = logging.getLogger(f"kidecar.plugin.{name}")
        self._spawn = spawn

    @property
    def path(self) -> str:
        return plugin_path(self.index)

    def config_path(self, sub: str) -> str:
        return plugin_config_path(self.index, sub)

    def emit(self, result: Result) -> None:
        self._shared.emit(result)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self._spawn(coro, name)


def _conforms(ctx: Context) -> PluginContext:
    """mypy checks here that :class:`Context` is a :class:`~kidecar_core.PluginContext`."""
    return ctx

"""What plugins see of the runtime: :class:`PluginContext` and :class:`RuntimeView`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kidecar_core._persist.result import Result
from kidecar_core._runtime.clock import Clock
from kidecar_core._runtime.metrics import Metrics
from kidecar_core._store.objects import JSON, Event, ObjectRef, PodIdentity

if TYPE_CHECKING:
    from kidecar_core._runtime.supervisor import Runtime


class RuntimeView:
    """The runtime as broadcast hooks see it: identity, metrics, logging, reads and events."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def identity(self) -> PodIdentity:
        """The pod this sidecar runs in."""
        return self._runtime.identity

    @property
    def metrics(self) -> Metrics:
        """The runtime's Prometheus metrics (served on ``/metrics``)."""
        return self._runtime.metrics

    @property
    def clock(self) -> Clock:
        """The runtime's clock (the event loop's): read time and sleep through it, so that tests
        can drive time with a :class:`~kidecar_core.ManualClock`."""
        return self._runtime.clock

    @property
    def local_mode(self) -> bool:
        """True when objects live in a local state file instead of the Kubernetes API."""
        return self._runtime.local_mode

    async def get_object(self, ref: ObjectRef) -> dict[str, JSON] | None:
        """Read an object from the store (``None`` when missing).  Errors are kidecar errors."""
        return await self._runtime.store.get(ref)

    def first_time(self, key: object) -> bool:
        """True the first time ``key`` is seen in this runtime: for "log once" messages."""
        seen = self._runtime.seen
        if key in seen:
            return False
        seen.add(key)
        return True

    def record_event(self, event: Event) -> None:
        """Record a Kubernetes Event about the pod (rate-limited, best effort, non-blocking)."""
        self._runtime.events.record(event)


class PluginContext(RuntimeView):
    """One configured plugin's handle on the runtime, passed to its lifecycle hooks.

    ``state`` is the plugin's own scratch space; it survives restarts of the plugin (not of
    the process).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str,
        config: Any,
        bootorder: int,
        index: int,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        super().__init__(runtime)
        self.name = name
        self.config = config
        self.bootorder = bootorder
        self.index = index
        self.state: dict[str, Any] = {}
        self.log = logging.getLogger(f"kidecar.plugin.{name}")
        self._spawn = spawn

    @property
    def path(self) -> str:
        """The plugin's path in the config file, e.g. ``plugins[1]``."""
        return f"plugins[{self.index}]"

    def config_path(self, sub: str) -> str:
        """Path of a key of this plugin's config: ``config_path("endpoints[0]")``."""
        return f"{self.path}.config.{sub}" if sub else f"{self.path}.config"

    def emit(self, result: Result) -> None:
        """Hand a result to the pipeline (on_result → persist → write plan).  Never blocks."""
        self._runtime.emit(result)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a named task owned by this plugin.

        If it raises, the plugin is failed and handled by the restart policy; its tasks are
        cancelled when the plugin stops or restarts.
        """
        return self._spawn(coro, name)

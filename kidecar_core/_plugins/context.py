"""What plugins see of the runtime: the :class:`PluginContext` and :class:`RuntimeView`
protocols.

They are protocols (structural types): the runtime's own classes are private
(:mod:`kidecar_core._runtime.context`), and :class:`kidecar_core.testing.FakeContext` is another
implementation, for plugin tests.  Plugins type their hooks' arguments with these.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from kidecar_core._base.clock import Clock
from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.result import Result
from kidecar_core._persist.write import FieldNotIn
from kidecar_core._plugins.state import PluginState
from kidecar_core._store.objects import JSON, Event, ObjectRef, PodIdentity
from kidecar_core.errors import PersistError


class RuntimeView(Protocol):
    """The runtime as broadcast hooks see it: identity, metrics, time, reads and events."""

    @property
    def identity(self) -> PodIdentity:
        """The pod this sidecar runs in."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The runtime's Prometheus metrics (served on ``/metrics``)."""
        ...

    @property
    def local_mode(self) -> bool:
        """True when objects live in a local state file instead of the Kubernetes API."""
        ...

    @property
    def clock(self) -> Clock:
        """The runtime's clock (the event loop's): read time and sleep through it, so that tests
        can drive time with a :class:`~kidecar_core.ManualClock`."""
        ...

    @property
    def shutting_down(self) -> bool:
        """True once the sidecar is stopping (SIGTERM/SIGINT), as opposed to a plugin being
        restarted by its ``restartpolicy``: what a plugin should tell a caller it turns away."""
        ...

    async def get_object(self, ref: ObjectRef) -> dict[str, JSON] | None:
        """Read an object from the store (``None`` when missing).

        Raises :class:`kidecar_core.PersistError` subclasses (transient or permanent).
        """
        ...

    def blocking_guard(
        self, ref: ObjectRef, guards: Iterable[FieldNotIn], live: Mapping[str, JSON]
    ) -> FieldNotIn | None:
        """The first of ``guards`` that would hold a write to ``ref`` back, judged against the
        object ``live`` exactly as the core's writer judges it before each write: the live value
        at the guard's pointer is one of its values and (with ``unless_ours``) was not written by
        kidecar itself.  ``None`` when the write would go through.

        For APIs that refuse a write up front (409) instead of queueing one that would wait,
        e.g. ``game_api`` while a human's ``Maintaining`` holds ``spec.opsState``.  The writer
        checks the guards again against the object it reads before writing.
        """
        ...

    async def list_objects(self, ref: ObjectRef) -> list[dict[str, JSON]]:
        """The objects of ``ref``'s resource in ``ref.namespace`` (``ref.name`` is ignored).

        Needs the RBAC verb ``list`` on that resource.  Raises :class:`kidecar_core.PersistError`
        subclasses.
        """
        ...

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Patch the ``status`` subresource of ``ref`` now, outside the write plan; return the
        object after the patch.

        A pod's ``status.conditions`` entries are merged by ``type`` (Kubernetes' strategic
        merge), so ``{"status": {"conditions": [{"type": "x", ...}]}}`` sets condition ``x``
        and leaves the kubelet's and every other writer's conditions alone.  The write plan
        (``Result.writes``) cannot express that: it merge-patches, which replaces whole lists.
        Needs the RBAC verb ``patch`` on ``pods/status``.  The caller retries: errors are
        kidecar errors (``TransientPersistError`` means "retry later").
        """

    async def patch_object(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Merge-patch an object *now*, bypassing the write plan; return it after the patch.

        For coordination only (a Lease, a write conditional on ``metadata.resourceVersion``):
        the caller needs the answer at once and handles errors itself (``ConflictError`` on a
        stale ``resourceVersion``, ``NotFoundError``, transient errors; nothing is retried).
        Results that describe the pod go through ``emit`` instead: desired state, one patch per
        object, retries and guards.
        """
        ...

    async def create_object(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        """Create an object *now* (``ConflictError`` when it exists); see :meth:`patch_object`."""
        ...

    def watch_object(
        self, ref: ObjectRef, *, stop_on: tuple[type[PersistError], ...] = ()
    ) -> AsyncIterator[dict[str, JSON] | None]:
        """Follow an object: its state now, then after each change (``None``: it does not
        exist).  ``async for obj in runtime.watch_object(ref): ...``; leave the loop to stop.

        The watch is shared with the core, which follows the Pod and the GameServer anyway:
        following those two costs no request.  Any other object needs ``get`` and ``watch``
        on it in the Role (by name: no ``list``).  Problems of the watch are not yielded: it
        recovers by itself (with backoff).  A problem whose type is in ``stop_on`` is raised
        instead, ending the iteration: ``stop_on=(ForbiddenError,)`` tells a caller that the
        Role lacks ``watch`` (:class:`ForbiddenError`, ``verb == "watch"``) so it can read the
        object another way; :class:`NotFoundError` there means the API server does not serve
        the object's type (a missing object is ``None``, not an error).
        """
        ...

    def first_time(self, key: object) -> bool:
        """True the first time ``key`` is seen in this runtime: for "log once" messages."""
        ...

    def record_event(self, event: Event) -> None:
        """Record a Kubernetes Event about the pod, or about ``event.about`` when it names
        another object (rate-limited, best effort, non-blocking)."""
        ...


class PluginContext(RuntimeView, Protocol):
    """One configured plugin's handle on the runtime, passed to its lifecycle hooks."""

    @property
    def name(self) -> str:
        """The plugin's entry-point name (``http_probe``)."""
        ...

    @property
    def config(self) -> Any:
        """The plugin's structured config (the class its ``kidecar_config_schema`` returns)."""
        ...

    @property
    def bootorder(self) -> int:
        """Its ``bootorder`` in the config file."""
        ...

    @property
    def index(self) -> int:
        """Its position in ``plugins[]``."""
        ...

    @property
    def state(self) -> PluginState:
        """The plugin's own state, by :class:`kidecar_core.StateKey`; survives restarts of the
        plugin (not of the process)."""
        ...

    @property
    def log(self) -> logging.Logger:
        """The plugin's logger, ``kidecar.plugin.<name>``."""
        ...

    @property
    def path(self) -> str:
        """The plugin's path in the config file, e.g. ``plugins[1]``."""
        ...

    def config_path(self, sub: str) -> str:
        """Path of a key of this plugin's config: ``config_path("endpoints[0]")`` →
        ``plugins[1].config.endpoints[0]``."""
        ...

    def emit(self, result: Result) -> None:
        """Hand a result to the pipeline (on_result → persist → write plan).  Never blocks."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a named task owned by this plugin.

        If it raises, the failure is logged at once, the plugin is failed and handled by the
        restart policy; its tasks are cancelled when the plugin stops or restarts.
        """
        ...


def plugin_path(index: int) -> str:
    """``plugins[<index>]``: where a plugin's entry is in the config file."""
    return f"plugins[{index}]"


def plugin_config_path(index: int, sub: str) -> str:
    """Path of a key of the config of ``plugins[index]`` (``sub`` empty: the config itself)."""
    base = f"{plugin_path(index)}.config"
    return f"{base}.{sub}" if sub else base

"""One watch per object, shared by everyone in the sidecar who follows it.

The write applier follows the Pod and the GameServer to know their live state; a plugin may
follow them too (:meth:`~kidecar_core.RuntimeView.watch_object`).  :class:`Watches` opens one
:meth:`~kidecar_core._store.objects.ObjectStore.watch` per object while anyone subscribes, and
hands every subscriber every observation in order, starting with the latest one known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import attrs

from kidecar_core._base.tasks import guarded
from kidecar_core._store.objects import JSON, ObjectRef, ObjectStore, Observation
from kidecar_core.errors import PersistError

log = logging.getLogger("kidecar.watch")


class Subscription:
    """One subscriber's observations of one object, in order.  ``async for`` over it; close it
    (or use it as an async context manager) when done."""

    def __init__(self, hub: Watches, ref: ObjectRef) -> None:
        self.ref = ref
        self._hub = hub
        self._queue: asyncio.Queue[Observation] = asyncio.Queue()
        self.closed = False

    def put(self, observation: Observation) -> None:
        self._queue.put_nowait(observation)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Observation:
        if self.closed:
            raise StopAsyncIteration
        return await self._queue.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@attrs.define
class _Feed:
    task: asyncio.Task[None]
    subscribers: set[Subscription] = attrs.field(factory=set)
    latest: Observation | None = None


class Watches:
    """The shared watches of one store (the runtime owns one)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._feeds: dict[ObjectRef, _Feed] = {}
        self._closed = False

    def subscribe(self, ref: ObjectRef) -> Subscription:
        """Observations of ``ref`` from now on, the latest known one first."""
        if self._closed:
            raise RuntimeError("the watches are closed")
        sub = Subscription(self, ref)
        feed = self._feeds.get(ref)
        if feed is None:
            task = guarded(self._pump(ref), f"kidecar-watch:{ref}", logger=log)
            feed = self._feeds[ref] = _Feed(task)
        elif feed.latest is not None:
            sub.put(feed.latest)
        feed.subscribers.add(sub)
        return sub

    def latest(self, ref: ObjectRef) -> Observation | None:
        """The latest observation of ``ref`` while someone follows it (``None`` otherwise)."""
        feed = self._feeds.get(ref)
        return feed.latest if feed is not None else None

    async def _pump(self, ref: ObjectRef) -> None:
        try:
            async with contextlib.aclosing(_closing(self.store.watch(ref))) as observations:
                async for observation in observations:
                    feed = self._feeds.get(ref)
                    if feed is None:
                        return
                    feed.latest = observation
                    for sub in list(feed.subscribers):
                        sub.put(observation)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a store must not go unnoticed, nor end the sidecar
            log.exception("the watch of %s ended unexpectedly", ref)

    def _unsubscribe(self, sub: Subscription) -> None:
        feed = self._feeds.get(sub.ref)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if not feed.subscribers:
            del self._feeds[sub.ref]
            feed.task.cancel()

    async def close(self) -> None:
        """Stop every watch (subscribers see no more observations)."""
        self._closed = True
        tasks = [feed.task for feed in self._feeds.values()]
        self._feeds.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _closing(
    observations: AsyncIterator[Observation],
) -> AsyncGenerator[Observation, None]:
    """``observations`` as an async generator (closed deterministically by ``aclosing``)."""
    try:
        async for observation in observations:
            yield observation
    finally:
        aclose = getattr(observations, "aclose", None)
        if aclose is not None:
            await aclose()


async def follow_object(
    watches: Watches, ref: ObjectRef, stop_on: tuple[type[PersistError], ...] = ()
) -> AsyncIterator[dict[str, JSON] | None]:
    """The object's state now and after each change (``None``: it does not exist).  Problems of
    the watch are skipped (it recovers by itself), except those of a type in ``stop_on``
    (e.g. ``(ForbiddenError,)``), which are raised: the iteration ends there and this
    subscriber's share of the watch is closed.  For plugins, through
    :meth:`~kidecar_core.RuntimeView.watch_object`."""
    sub = watches.subscribe(ref)
    last: object = _UNSEEN
    try:
        async for observation in sub:
            error = observation.error
            if error is not None:
                if isinstance(error, stop_on):
                    raise error
                continue
            if observation.object == last:
                continue
            last = observation.object
            yield observation.object
    finally:
        sub.close()


_UNSEEN = object()

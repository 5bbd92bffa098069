"""Following one Kubernetes object by name: the informer pattern for a single object.

:func:`follow` turns the store's two primitives, a read (:meth:`get`) and one watch request
(:meth:`open_watch`), into an endless iterator of :class:`~kidecar_core._store.objects.Observation`:

1. **List**: read the object (one GET; ``None`` when it does not exist) and report it.  A GET
   rather than a list filtered by name, because the Role kidecar runs with grants ``get`` and
   ``watch`` on its objects but not ``list``; the answer carries what a list would: the state
   and a ``resourceVersion`` to watch from.
2. **Watch** from that ``resourceVersion`` (or, for an object that did not exist, from "now",
   which reports it at once if it appeared meanwhile), by name, with bookmarks: every change is
   reported; bookmarks only move the ``resourceVersion`` to resume from.
3. When the server ends the watch (its ``timeoutSeconds``: 30-60 min, drawn at random so that
   sidecars started together do not reconnect together), **resume** from the last
   ``resourceVersion`` seen: one request, nothing missed, nothing repeated.
4. **410 Gone** (the server no longer keeps that version, as a status or as an ``ERROR`` event):
   relist (1.) and watch from there.
5. Any other failure (unreachable, 5xx, 403 …) is reported as an observation with ``error``,
   then retried after a backoff with jitter (0.5 s doubling to 30 s; 5 min for a type the
   server does not serve), starting again at 1., so that the state reported after a problem is
   always fresh.  A connection that stays silent
   longer than the store's read timeout (no bookmark) is treated like a failure.

At steady state this costs one request per object per 30-60 minutes; bookmarks are events on
the open connection, not requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Protocol

from kidecar_core._base.backoff import Backoff
from kidecar_core._store.objects import JSON, ObjectRef, Observation
from kidecar_core.errors import NotFoundError, PersistError, TransientPersistError

log = logging.getLogger("kidecar.watch")

BACKOFF_INITIAL = 0.5
BACKOFF_CAP = 30.0
NOT_SERVED_RETRY = 300.0
"""Seconds between reads of an object whose type the API server does not serve (a CRD that is
not installed): it is not coming back soon."""


class ExpiredError(TransientPersistError):
    """410 Gone: a watch asked to resume from a ``resourceVersion`` the server no longer keeps;
    read the object afresh (relist) and watch from there."""


class EventStream(Protocol):
    """One open watch request (:class:`~kidecar_core._store.kube.WatchStream`)."""

    async def next(self) -> dict[str, JSON] | None:
        """The next event (``type``, ``object``); ``None`` when the server ended the stream."""
        ...

    def close(self) -> None: ...


class WatchSource(Protocol):
    """What :func:`follow` needs of a store (:class:`~kidecar_core._store.kube.KubeStore`)."""

    watch_timeout: tuple[int, int]

    async def get(self, ref: ObjectRef) -> dict[str, JSON] | None: ...

    async def open_watch(
        self, ref: ObjectRef, *, resource_version: str | None, timeout_seconds: int
    ) -> EventStream: ...


class _Relist(Exception):
    """The watch must start again from a fresh read."""


async def follow(source: WatchSource, ref: ObjectRef) -> AsyncIterator[Observation]:
    """Observations of ``ref``, forever (see the module docstring); stop by ceasing to iterate."""
    failures = 0
    backoff = Backoff(BACKOFF_INITIAL, BACKOFF_CAP)
    while True:
        try:
            current = await source.get(ref)
        except PersistError as e:
            failures += 1
            yield Observation(error=e)
            delay = backoff.next()
            # get() answers None for a missing object: NotFoundError means the type is missing.
            await asyncio.sleep(NOT_SERVED_RETRY if isinstance(e, NotFoundError) else delay)
            continue
        yield Observation(current, relisted=True)
        rv = _resource_version(current)
        try:
            async with contextlib.aclosing(_watch_from(source, ref, rv)) as observations:
                async for observation in observations:
                    failures = 0
                    backoff.reset()
                    yield observation
        except _Relist:
            continue
        except PersistError as e:
            failures += 1
            log.debug("watch of %s failed (attempt %d): %s", ref, failures, e)
            yield Observation(error=e)
            await asyncio.sleep(backoff.next())


async def _watch_from(
    source: WatchSource, ref: ObjectRef, rv: str | None
) -> AsyncGenerator[Observation, None]:
    """Watch requests one after the other, each resuming where the last ended.

    Raises :class:`_Relist` on 410 and the store's errors on other failures.
    """
    while True:
        low, high = source.watch_timeout
        try:
            stream = await source.open_watch(
                ref, resource_version=rv, timeout_seconds=random.randint(low, high)
            )
        except ExpiredError:
            raise _Relist from None
        try:
            while (event := await stream.next()) is not None:
                kind, obj = event.get("type"), event.get("object")
                if not isinstance(obj, dict):
                    continue
                rv = _resource_version(obj) or rv
                if kind in ("ADDED", "MODIFIED"):
                    yield Observation(obj)
                elif kind == "DELETED":
                    yield Observation(None)
                elif kind == "ERROR":
                    _raise_status(ref, obj)
        finally:
            stream.close()


def _raise_status(ref: ObjectRef, status: Mapping[str, JSON]) -> None:
    """An ``ERROR`` event: 410 means relist; anything else is a failure of the watch."""
    if status.get("code") == 410:
        raise _Relist
    raise TransientPersistError(
        f"watch {ref}: the API server ended the watch: {status.get('code')} "
        f"{status.get('reason')}: {status.get('message')}"
    )


def _resource_version(obj: Mapping[str, JSON] | None) -> str | None:
    if obj is None:
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return rv if isinstance(rv, str) and rv else None

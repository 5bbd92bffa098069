"""Applying write plans: the desired state of each object, written once per change.

Every :class:`~kidecar_core.Write` is flattened into *leaves* (``("spec", "opsState") →
"Allocated"``) and merged into the desired state of its target object.  One worker per object
compares the desired leaves with the live object and sends **one** merge patch holding only the
leaves that differ; when nothing differs, nothing is sent.  While the store is unreachable the
latest desired state is kept (coalesced) and written when it comes back.

Errors, by kind:

* transient (connection, 429, 5xx) and 409: back off with jitter, re-read, retry; the sidecar is
  *degraded* but keeps working;
* 404 on an object kidecar does not own (the GameServer, created after the pod): wait for it,
  logging once;
* 403: one log line naming the missing RBAC rule, ``/readyz`` fails, retried slowly so that a fixed
  Role recovers without a restart;
* 422: the leaves of the offending write (named by its config path) are dropped and logged; the
  others are still written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from kidecar_core._base.backoff import Backoff
from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._store.objects import JSON, Event, ObjectRef, ObjectStore
from kidecar_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PermanentPersistError,
    TransientPersistError,
)

log = logging.getLogger("kidecar.persist")

Path = tuple[str, ...]
_MISSING = object()


@attrs.frozen
class Leaf:
    value: JSON
    source: str
    guards: tuple[FieldNotIn, ...] = ()
    event: Event | None = None
    once: bool = False


@attrs.define
class ObjectState:
    ref: ObjectRef
    desired: dict[Path, Leaf] = attrs.field(factory=dict)
    ours: dict[Path, JSON] = attrs.field(factory=dict)
    create: bool = False
    dirty: bool = False
    generation: int = 0
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    status: str = "ok"  # ok | waiting | degraded | forbidden
    blocked: bool = False  # a desired leaf is held back by a guard
    detail: str = ""
    task: asyncio.Task[None] | None = None


def flatten(patch: Mapping[str, JSON], prefix: Path = ()) -> dict[Path, JSON]:
    """Leaves of a merge patch: nested mappings are descended, everything else is a value."""
    out: dict[Path, JSON] = {}
    for key, value in patch.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path))
        elif isinstance(value, Mapping):
            continue
        else:
            out[path] = value
    return out


def unflatten(leaves: Iterable[tuple[Path, JSON]]) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for path, value in leaves:
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def lookup(obj: Any, path: Path) -> Any:
    node = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def pointer_path(pointer: str) -> Path:
    """RFC 6901 pointer → path tuple: ``/metadata/labels/a~1b`` → ``(metadata, labels, a/b)``."""
    if not pointer:
        return ()
    parts = pointer.lstrip("/").split("/")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in parts)


def holds(live: Any, path: Path, value: JSON) -> bool:
    """Whether the live object already has ``value`` at ``path`` (``None`` = absent)."""
    current = lookup(live, path)
    if value is None:
        return current is _MISSING or current is None
    return current is not _MISSING and current == value and type(current) is type(value)


def guard_blocks(guard: FieldNotIn, live: Any, ours: Mapping[Path, JSON]) -> bool:
    """Whether ``guard`` holds a write back: the live value at its pointer is one of its values,
    and (with ``unless_ours``) not a value kidecar wrote there itself (``ours``)."""
    path = pointer_path(guard.pointer)
    current = lookup(live, path)
    if current is _MISSING or current not in guard.values:
        return False
    return not (guard.unless_ours and ours.get(path, _MISSING) == current)


class Applier:
    """Owns the desired state of every object kidecar writes, and the workers that write it."""

    def __init__(
        self,
        store: ObjectStore,
        metrics: Metrics,
        *,
        resync_interval: float = 300.0,
        backoff_cap: float = 30.0,
        wait_cap: float = 10.0,
        on_event: Callable[[Event], None] | None = None,
        guard_recheck: float = 10.0,
    ) -> None:
        self.guard_recheck = guard_recheck
        self.on_event = on_event
        self.store = store
        self.metrics = metrics
        self.resync_interval = resync_interval
        self.backoff_cap = backoff_cap
        self.wait_cap = wait_cap
        self.objects: dict[ObjectRef, ObjectState] = {}
        self._forbidden_logged: set[str] = set()
        self._closed = False

    # -- submitting -------------------------------------------------------------------------

    def submit(self, writes: Iterable[Write]) -> None:
        """Merge writes into the desired state; wake the workers of objects that changed."""
        for w in writes:
            state = self.objects.get(w.target)
            if state is None:
                state = self.objects[w.target] = ObjectState(w.target)
            changed = False
            for path, value in flatten(w.patch).items():
                leaf = Leaf(value, w.source, w.guards, w.event, w.once)
                if state.desired.get(path) != leaf:
                    state.desired[path] = leaf
                    changed = True
            state.create = state.create or w.create
            if changed:
                state.generation += 1
                state.dirty = True
                state.wake.set()
            if state.task is None and not self._closed:
                state.task = asyncio.get_running_loop().create_task(
                    self._worker(state), name=f"kidecar-persist:{w.target}"
                )
        self._update_pending()

    # -- status -----------------------------------------------------------------------------

    def pending(self) -> list[ObjectState]:
        return [s for s in self.objects.values() if s.dirty]

    def problems(self) -> dict[str, list[str]]:
        """Per status (``forbidden``, ``degraded``, ``waiting``): descriptions, for /readyz."""
        out: dict[str, list[str]] = {}
        for s in self.objects.values():
            if s.status != "ok":
                out.setdefault(s.status, []).append(f"{s.ref}: {s.detail}")
        return out

    def _update_pending(self) -> None:
        self.metrics.persist_pending.set(len(self.pending()))

    # -- flushing and closing ---------------------------------------------------------------

    async def flush(self, timeout: float) -> bool:
        """Wait until every desired state is written (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            # Objects that are waiting (missing) or forbidden will not be written soon; keep
            # trying until the deadline anyway, the budget is the caller's to choose.
            if time.monotonic() >= deadline:
                return False
            for s in self.pending():
                s.wake.set()
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        self._closed = True
        tasks = [s.task for s in self.objects.values() if s.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the worker -------------------------------------------------------------------------

    async def _worker(self, state: ObjectState) -> None:
        backoff = Backoff(cap=self.backoff_cap)
        while True:
            if not state.dirty:
                # A write held back by a guard (a human's Maintaining) is looked at again soon:
                # when the human is done, the desired state should not wait for the resync.
                wait = min(self.resync_interval, self.guard_recheck) if state.blocked else None
                try:
                    await asyncio.wait_for(state.wake.wait(), timeout=wait or self.resync_interval)
                except TimeoutError:
                    state.dirty = True  # resync: re-read and re-assert the desired state
            state.wake.clear()
            if not state.dirty:
                continue
            try:
                delay = await self._attempt(state, backoff)
            except Exception as e:  # a bug or an unmapped store error must not end the worker
                log.exception("unexpected error writing %s; will retry", state.ref)
                self._set_status(state, "degraded", f"{type(e).__name__}: {e}")
                delay = backoff.next()
            self._update_pending()
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sleep_until_new(state), timeout=delay)

    async def _sleep_until_new(self, state: ObjectState) -> None:
        """Returns early only if new desired state arrives; a retry should carry it."""
        generation = state.generation
        while state.generation == generation:
            state.wake.clear()
            await state.wake.wait()

    async def _attempt(self, state: ObjectState, backoff: Backoff) -> float:
        """One write attempt; returns how long to wait before the next (0: none needed)."""
        generation = state.generation
        try:
            live = await self.store.get(state.ref)
            if live is None:
                if not state.create:
                    return self._set_waiting(state, backoff)
                await self._create(state)
            else:
                await self._patch(state, live)
        except ConflictError as e:
            self._count_failure(state, "conflict")
            self._set_status(state, "degraded", f"conflict, retrying: {e}")
            return backoff.next()
        except TransientPersistError as e:
            self._count_failure(state, "unavailable")
            if state.status != "degraded":
                log.warning("cannot write %s, will retry (degraded): %s", state.ref, e)
            self._set_status(state, "degraded", str(e))
            return max(backoff.next(), min(self.backoff_cap, e.retry_after or 0.0))
        except ForbiddenError as e:
            self._count_failure(state, "forbidden")
            if e.rule not in self._forbidden_logged:
                self._forbidden_logged.add(e.rule)
                log.error("RBAC forbids writing %s: missing rule %s. %s", state.ref, e.rule, e)
            self._set_status(state, "forbidden", f"missing RBAC rule {e.rule}")
            return min(self.wait_cap, backoff.next())
        except NotFoundError:
            return self._set_waiting(state, backoff)
        except PermanentPersistError as e:
            self._count_failure(state, "error")
            log.error("cannot write %s: %s", state.ref, e)
            self._set_status(state, "degraded", str(e))
            return backoff.next()
        backoff.reset()
        if state.status == "forbidden":
            self._forbidden_logged.clear()
            log.info("writing %s works again", state.ref)
        elif state.status in ("degraded", "waiting"):
            log.info("%s written; recovered from: %s", state.ref, state.detail)
        self._set_status(state, "ok", "")
        if state.generation == generation:
            state.dirty = False
        return 0.0

    def _set_waiting(self, state: ObjectState, backoff: Backoff) -> float:
        if state.status != "waiting":
            log.info("%s does not exist yet; waiting for it before writing", state.ref)
        self._set_status(state, "waiting", "object does not exist yet")
        return min(self.wait_cap, backoff.next())

    def _set_status(self, state: ObjectState, status: str, detail: str) -> None:
        state.status = status
        state.detail = detail

    def _count_failure(self, state: ObjectState, reason: str) -> None:
        self.metrics.persist_failures.labels(state.ref.resource, reason).inc()

    def _effective(self, state: ObjectState, live: Any) -> tuple[dict[Path, Leaf], bool]:
        """Leaves that differ from the live object and pass their guards; and whether guarded."""
        out: dict[Path, Leaf] = {}
        guarded = False
        state.blocked = False
        for path, leaf in list(state.desired.items()):
            if holds(live, path, leaf.value):
                state.ours[path] = leaf.value
                if leaf.once:
                    del state.desired[path]
                continue
            if any(self._guard_blocks(state, live, g) for g in leaf.guards):
                state.blocked = True
                continue
            guarded = guarded or bool(leaf.guards)
            out[path] = leaf
        return out, guarded

    def _guard_blocks(self, state: ObjectState, live: Any, guard: FieldNotIn) -> bool:
        return guard_blocks(guard, live, state.ours)

    def blocking_guard(
        self, ref: ObjectRef, guards: Iterable[FieldNotIn], live: Mapping[str, Any]
    ) -> FieldNotIn | None:
        """The first of ``guards`` that holds a write to ``ref`` back against ``live``, judged as
        the worker judges it (knowing which values kidecar wrote itself); ``None`` if none."""
        state = self.objects.get(ref)
        ours = state.ours if state is not None else {}
        return next((g for g in guards if guard_blocks(g, live, ours)), None)

    async def _patch(self, state: ObjectState, live: Mapping[str, Any]) -> None:
        leaves, guarded = self._effective(state, live)
        if not leaves:
            return
        patch = unflatten((p, leaf.value) for p, leaf in leaves.items())
        if guarded:
            # A guard was checked against this read: make the server refuse the patch (409) if
            # someone changed the object since, so a human's Maintaining is never overwritten.
            rv = lookup(live, ("metadata", "resourceVersion"))
            if isinstance(rv, str):
                patch.setdefault("metadata", {})["resourceVersion"] = rv
        try:
            await self.store.patch(state.ref, patch)
        except InvalidError as e:
            await self._isolate_invalid(state, leaves, e)
            return
        self.metrics.persist_writes.labels(state.ref.resource, "patch").inc()
        self._written(state, leaves)

    def _written(self, state: ObjectState, leaves: Mapping[Path, Leaf]) -> None:
        """Bookkeeping after a successful write: what is ours now, and its Events."""
        events: list[Event] = []
        for p, leaf in list(leaves.items()):
            state.ours[p] = leaf.value
            if leaf.once and state.desired.get(p) is leaf:
                del state.desired[p]
            if leaf.event is not None and leaf.event not in events:
                events.append(leaf.event)
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    async def _isolate_invalid(
        self, state: ObjectState, leaves: dict[Path, Leaf], error: InvalidError
    ) -> None:
        """A 422: find the write(s) at fault by source, drop them, write the rest."""
        by_source: dict[str, dict[Path, Leaf]] = {}
        for p, leaf in leaves.items():
            by_source.setdefault(leaf.source, {})[p] = leaf
        if len(by_source) == 1:
            self._reject(state, leaves, error)
            return
        for group in by_source.values():
            patch = unflatten((p, leaf.value) for p, leaf in group.items())
            if any(leaf.guards for leaf in group.values()):
                # Re-check the guards against a fresh read and make the patch conditional on it,
                # as the combined patch was: the isolation must not bypass a human's Maintaining.
                live = await self.store.get(state.ref)
                if live is None or any(
                    self._guard_blocks(state, live, g)
                    for leaf in group.values()
                    for g in leaf.guards
                ):
                    continue
                rv = lookup(live, ("metadata", "resourceVersion"))
                if isinstance(rv, str):
                    patch.setdefault("metadata", {})["resourceVersion"] = rv
            try:
                await self.store.patch(state.ref, patch)
            except InvalidError as e:
                self._reject(state, group, e)
                continue
            self.metrics.persist_writes.labels(state.ref.resource, "patch").inc()
            self._written(state, group)

    def _reject(self, state: ObjectState, leaves: dict[Path, Leaf], error: InvalidError) -> None:
        self._count_failure(state, "invalid")
        sources = sorted({leaf.source or "(unknown source)" for leaf in leaves.values()})
        values = ", ".join(f"{'.'.join(p)}={leaf.value!r}" for p, leaf in leaves.items())
        log.error(
            "%s rejected %s (from %s): %s; fix the configuration, the rest is still written",
            self.store.description,
            values,
            ", ".join(sources),
            error,
        )
        for p in leaves:
            state.desired.pop(p, None)

    async def _create(self, state: ObjectState) -> None:
        body = unflatten(
            (p, leaf.value) for p, leaf in state.desired.items() if leaf.value is not None
        )
        meta = body.setdefault("metadata", {})
        meta["name"] = state.ref.name
        meta["namespace"] = state.ref.namespace
        await self.store.create(state.ref, body)  # ConflictError: created meanwhile, re-read
        self.metrics.persist_writes.labels(state.ref.resource, "create").inc()
        self._written(state, state.desired)

"""Applying write plans: the desired state of each object, kept true.

Every :class:`~kidecar_core.Write` is flattened into *leaves* (``("spec", "opsState") →
"Allocated"``) and merged into the desired state of its target object.  One worker per object
(:mod:`.worker`) compares the desired leaves with the live object and sends **one** merge patch
holding only the leaves that differ, conditional on the live ``resourceVersion``; when nothing
differs, nothing is sent.  While the store is unreachable the latest desired state is kept
(coalesced) and written when it comes back.

**Level-triggered.**  The objects kidecar writes for its pod (the Pod and its GameServer) are
watched (:mod:`kidecar_core._store.watches`) from the first write asked for them: the watch is
the live state (no read before a write), and when someone else's write makes a field kidecar
owns differ from the desired value, the worker re-asserts it at once, unless a guard gives the
field to a human (:mod:`.fields`).  A field that keeps being reverted is *contested*
(:mod:`.contest`): reported once, re-asserted with capped backoff.

**Order.**  When one submission changes both a GameServer and a Pod, the Pod's write waits for
the GameServer's (up to :data:`~.worker.ORDER_WAIT` seconds): OpenKruiseGame reacts to Pod
changes by reconciling the GameServer, and must find it updated already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import attrs

from kidecar_core._base.backoff import Backoff
from kidecar_core._base.clock import LOOP_CLOCK, Clock
from kidecar_core._base.metrics import Metrics
from kidecar_core._base.tasks import guarded
from kidecar_core._persist.contest import ContestPolicy, manager_of
from kidecar_core._persist.fields import (
    DEFAULT_FIELD_GUARDS,
    KNOWN_OPS_STATES,
    FieldGuard,
    custom_ops_state,
    guard_blocks,
    guards_for,
    is_gameserver,
)
from kidecar_core._persist.leaves import (
    Leaf,
    Path,
    flatten,
    holds,
    lookup,
    pointer_path,
    unflatten,
)
from kidecar_core._persist.objectstate import ObjectState
from kidecar_core._persist.report import Reporter
from kidecar_core._persist.status import ObjectStatus
from kidecar_core._persist.waiting import wait_event
from kidecar_core._persist.worker import Worker
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._store.objects import Event, ObjectRef, ObjectStore
from kidecar_core._store.watches import Watches

__all__ = [
    "Applier",
    "ApplierOptions",
    "Backoff",
    "Leaf",
    "ObjectState",
    "flatten",
    "guard_blocks",
    "holds",
    "lookup",
    "pointer_path",
    "unflatten",
]

log = logging.getLogger("kidecar.persist")


@attrs.frozen
class ApplierOptions:
    """Timings of the applier, in seconds."""

    resync_interval: float = 300.0
    """Compare again this often anyway (watched objects: no request; others: a read)."""
    backoff_cap: float = 30.0
    wait_cap: float = 10.0
    """Longest retry delay for a missing (unwatched) object or a forbidden write."""
    guard_recheck: float = 10.0
    """How soon an unwatched object with a write held back by a guard is read again."""
    missing_timeout: float = 60.0
    """After this long, an object that does not exist is reported *missing* (logged once, an
    Event, ``/readyz``): OKG creates a pod's GameServer within seconds, so a longer absence means
    it will not come (a Deployment's pod) or the CRD is not installed."""
    contest: ContestPolicy = attrs.field(factory=ContestPolicy)
    field_guards: tuple[FieldGuard, ...] = DEFAULT_FIELD_GUARDS


class Applier(Reporter):
    """Owns the desired state of every object kidecar writes, and the workers that write it.

    ``watched`` objects are followed through ``watches`` (the runtime passes its Pod and its
    GameServer); ``clock`` is the time the workers read (tests drive a
    :class:`~kidecar_core.ManualClock`).
    """

    def __init__(
        self,
        store: ObjectStore,
        metrics: Metrics,
        *,
        watches: Watches | None = None,
        watched: Collection[ObjectRef] = (),
        clock: Clock = LOOP_CLOCK,
        on_event: Callable[[Event], None] | None = None,
        options: ApplierOptions | None = None,
        **timings: Any,
    ) -> None:
        """``timings`` override single fields of ``options`` (``resync_interval=5``)."""
        super().__init__(metrics, on_event)
        self.store = store
        self.options = attrs.evolve(options or ApplierOptions(), **timings)
        self.clock = clock
        self.watches = watches
        self.watched = frozenset(watched) if watches is not None else frozenset()
        self.objects: dict[ObjectRef, ObjectState] = {}
        self._closed = False

    # -- starting and submitting ------------------------------------------------------------

    def start(self, refs: Iterable[ObjectRef] | None = None) -> None:
        """Follow watched objects now (default: all of them) rather than at their first write.

        The runtime does not: an object is followed from the first write asked for it, so a
        sidecar that never writes its GameServer (a Deployment's pod, a cluster without OKG's
        CRDs) never watches one.  The first write then waits for the watch's first state (one
        read); later ones read nothing.
        """
        for ref in sorted(self.watched if refs is None else refs, key=str):
            self._state(ref)

    def submit(self, writes: Iterable[Write]) -> None:
        """Merge writes into the desired state; wake the workers of objects that changed."""
        changed: list[ObjectState] = []
        for w in writes:
            state = self._state(w.target)
            touched = False
            for path, value in flatten(w.patch).items():
                guards = guards_for(w.target, path, tuple(w.guards), self.options.field_guards)
                self._warn_custom_ops_state(w, path, value)
                touched |= state.merge(path, Leaf(value, w.source, guards, w.event, w.once))
            state.create = state.create or w.create
            if touched and state not in changed:
                changed.append(state)
        for state in changed:
            state.generation += 1
            state.not_before = 0.0
            state.touch()
        self._order(changed)
        self.update_pending()

    def _state(self, ref: ObjectRef) -> ObjectState:
        state = self.objects.get(ref)
        if state is not None:
            return state
        state = ObjectState(ref, watched=ref in self.watched)
        state.contest.policy = self.options.contest
        self.objects[ref] = state
        if not self._closed:
            worker = Worker(self, state)
            state.tasks.append(guarded(worker.run(), f"kidecar-persist:{ref}", logger=log))
            if state.watched:
                state.tasks.append(
                    guarded(self._observe(state), f"kidecar-observe:{ref}", logger=log)
                )
        return state

    def _order(self, changed: list[ObjectState]) -> None:
        """GameServer before Pod when one submission changes both."""
        servers = [s for s in changed if is_gameserver(s.ref)]
        for state in changed:
            if servers and (state.ref.group, state.ref.resource) == ("", "pods"):
                state.after = [(gs, gs.generation) for gs in servers]

    def _warn_custom_ops_state(self, write: Write, path: Path, value: object) -> None:
        if custom_ops_state(write.target, path, value) and self.once(("ops", str(value))):
            log.warning(
                "%s sets GameServer spec.opsState to %r, which OpenKruiseGame does not know "
                "(%s): it is written as asked; OKG keeps it but acts only on the known ones",
                write.source or "a write",
                value,
                ", ".join(KNOWN_OPS_STATES),
            )

    # -- the watch --------------------------------------------------------------------------

    async def _observe(self, state: ObjectState) -> None:
        """Take in every observation of the object's watch; count and report reverts."""
        assert self.watches is not None
        async with self.watches.subscribe(state.ref) as observations:
            async for observation in observations:
                now = self.clock.now()
                previous = state.live
                for path in state.observe(observation, now):
                    leaf = state.desired[path]
                    manager = manager_of(state.live, path)
                    self.reverted(state, path, leaf.value, manager, previous, now)
                self.watch_problem(state, observation.error)
                state.touch()

    # -- status -----------------------------------------------------------------------------

    def pending(self) -> list[ObjectState]:
        return [s for s in self.objects.values() if s.dirty]

    def problems(self) -> dict[str, list[str]]:
        """Per kind (``forbidden``, ``degraded``, ``waiting``, ``missing``, ``contested``):
        descriptions, for ``/readyz``."""
        out: dict[str, list[str]] = {}
        for s in self.objects.values():
            for kind, text in self.object_problems(s):
                out.setdefault(kind, []).append(text)
        return out

    def update_pending(self) -> None:
        self.metrics.persist_pending.set(len(self.pending()))

    def blocking_guard(
        self, ref: ObjectRef, guards: Iterable[FieldNotIn], live: Mapping[str, Any]
    ) -> FieldNotIn | None:
        """The first of ``guards`` that holds a write to ``ref`` back against ``live``, judged as
        the worker judges it (knowing which values kidecar wrote itself); ``None`` if none."""
        state = self.objects.get(ref)
        ours = state.ours if state is not None else {}
        return next((g for g in guards if guard_blocks(g, live, ours)), None)

    # -- flushing and closing ---------------------------------------------------------------

    async def flush(self, timeout: float) -> bool:
        """Write every desired state now; True when done, or when what is left can never be
        written (its object does not exist: a 404 ends the flush at once, and a Pod that is gone
        ends it whatever is left), False when ``timeout`` seconds passed first."""
        deadline = self.clock.now() + timeout
        started = {s: s.attempts for s in self.pending()}
        for s in started:
            s.not_before = 0.0
            s.touch()
        while True:
            if self._pod_gone():
                log.info("the pod is gone: nothing left to write")
                return True
            pending = self.pending()
            if not pending:
                return True
            tried = all(s.attempts > started.get(s, -1) for s in pending)
            if tried and all(
                s.status in (ObjectStatus.WAITING, ObjectStatus.MISSING) for s in pending
            ):
                for s in pending:
                    log.warning("not written: %s does not exist", s.ref)
                return True
            left = deadline - self.clock.now()
            if left <= 0:
                return False
            await _any_event(self.clock, [s.progress for s in pending], min(left, 0.5))

    def _pod_gone(self) -> bool:
        return any(
            s.ref.resource == "pods" and not s.ref.group and s.live_known and s.live is None
            for s in self.objects.values()
        )

    async def close(self) -> None:
        self._closed = True
        tasks = [t for s in self.objects.values() for t in s.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _any_event(clock: Clock, events: list[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(wait_event(clock, e, timeout)) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

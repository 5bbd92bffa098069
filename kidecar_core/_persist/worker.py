"""The write loop of one object: compare desired with live, send one conditional patch.

A write is **one request**: a merge patch of the leaves that differ, carrying the live object's
``metadata.resourceVersion`` as a precondition (see :meth:`Worker._send` for the one
exception).  A 409 means the live state kidecar compared against is stale: the next observation
of the watch (or, for objects without a watch, a read) brings the newer one, and the write is
tried again from there.

Errors, by kind:

* transient (connection, 429, 5xx) and 409: back off with jitter and retry; the sidecar is
  *degraded* but keeps working;
* 404 on an object kidecar does not own (the GameServer, created after the pod): *waiting*; after
  ``missing_timeout`` the object is *missing* (logged once, an Event, ``/readyz``): a pod that
  has no GameServer (a Deployment's) can never take those writes;
* 403: one log line naming the missing RBAC rule, ``/readyz`` fails, retried slowly so that a fixed
  Role recovers without a restart;
* 422: the leaves of the offending write (named by its config path) are dropped and logged; the
  others are still written.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from kidecar_core._base.backoff import Backoff
from kidecar_core._persist.contest import manager_of
from kidecar_core._persist.leaves import Leaf, Path, lookup, unflatten
from kidecar_core._persist.status import ObjectStatus
from kidecar_core._persist.waiting import wait_event
from kidecar_core._store.objects import Event
from kidecar_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PermanentPersistError,
    TransientPersistError,
)

if TYPE_CHECKING:
    from kidecar_core._persist.applier import Applier
    from kidecar_core._persist.objectstate import ObjectState

log = logging.getLogger("kidecar.persist")

ORDER_WAIT = 5.0
"""Longest a Pod write waits for the GameServer write of the same result (seconds)."""

DONE: float | None = None
WAIT_FOR_NEWS = math.inf


class Worker:
    """Writes one object (see the module docstring); started by the :class:`Applier`."""

    def __init__(self, applier: Applier, state: ObjectState) -> None:
        self.applier = applier
        self.state = state
        self.options = applier.options
        self.clock = applier.clock
        self.backoff = Backoff(cap=self.options.backoff_cap)

    async def run(self) -> None:
        s = self.state
        while True:
            woke = await wait_event(self.clock, s.wake, self._timeout())
            s.wake.clear()
            now = self.clock.now()
            if not woke:
                self._timer(now)
            if not s.dirty or now < s.not_before:
                continue
            await self._after_prerequisites()
            stamp, generation = s.stamp, s.generation
            try:
                retry = await self._attempt()
            except Exception as e:  # a bug or an unmapped store error must not end the worker
                log.exception("unexpected error writing %s; will retry", s.ref)
                self.applier.set_status(s, ObjectStatus.DEGRADED, f"{type(e).__name__}: {e}")
                retry = self.backoff.next()
            if retry is None:  # DONE
                s.written_generation = max(s.written_generation, generation)
                s.not_before = 0.0
                if s.stamp == stamp:
                    s.dirty = False
            else:
                s.not_before = self.clock.now() + retry
            s.attempts += 1
            s.signal_progress()
            self.applier.update_pending()

    def _timeout(self) -> float | None:
        """How long to sleep when nothing new happens (``None``: until something does)."""
        s, o, now = self.state, self.options, self.clock.now()
        candidates = [o.resync_interval]
        if s.dirty and now < s.not_before < math.inf:
            candidates.append(s.not_before - now)
        if s.status == ObjectStatus.WAITING and s.missing_since is not None:
            candidates.append(s.missing_since + o.missing_timeout - now)
        if s.blocked and not s.watch_healthy:
            candidates.append(o.guard_recheck)
        if s.watched and s.contest.contested:
            candidates.append(s.contest.policy.quiet)
        return max(0.0, min(candidates))

    def _timer(self, now: float) -> None:
        """A timeout passed: backoff over, resync, guard recheck or a missing-object deadline."""
        s = self.state
        for path in s.contest.calm(now):
            self.applier.calmed(s, path)
        if not s.watch_healthy:
            s.live_stale = True  # resync: read the object again
        s.touch(wake=False)

    async def _after_prerequisites(self) -> None:
        """Let the writes this one must follow (GameServer before Pod) go first, for a while."""
        s = self.state
        deadline = self.clock.now() + ORDER_WAIT
        for dep, generation in s.after:
            while (
                dep.dirty
                and dep.written_generation < generation
                and dep.status == ObjectStatus.OK
                and dep.not_before <= self.clock.now() < deadline
            ):
                await wait_event(self.clock, dep.progress, deadline - self.clock.now())
        s.after = []

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self) -> float | None:
        """One write attempt: :data:`DONE`, or how long to wait before the next one."""
        s = self.state
        try:
            retry = await self._write()
        except ConflictError as e:
            s.live_stale = True  # the watch brings the newer state; without one, read it
            return self._failed("conflict", ObjectStatus.DEGRADED, f"conflict, retrying: {e}")
        except TransientPersistError as e:
            if s.status != ObjectStatus.DEGRADED:
                log.warning("cannot write %s, will retry (degraded): %s", s.ref, e)
            delay = self._failed("unavailable", ObjectStatus.DEGRADED, str(e))
            return max(delay, min(self.options.backoff_cap, e.retry_after or 0.0))
        except ForbiddenError as e:
            self.applier.forbidden(s, e)
            self.applier.count_failure(s, "forbidden")
            return min(self.options.wait_cap, self.backoff.next())
        except NotFoundError as e:
            s.read(None)
            return self.applier.missing(s, e, self.backoff)
        except PermanentPersistError as e:
            log.error("cannot write %s: %s", s.ref, e)
            return self._failed("error", ObjectStatus.DEGRADED, str(e))
        if retry is None:  # DONE
            self.backoff.reset()
            self.applier.recovered(s)
        return retry

    def _failed(self, reason: str, status: ObjectStatus, detail: str) -> float:
        self.applier.count_failure(self.state, reason)
        self.applier.set_status(self.state, status, detail)
        return self.backoff.next()

    async def _write(self) -> float | None:
        s = self.state
        if not s.desired:
            return DONE
        if not s.live_known or s.live_stale:
            if s.watched and s.watch_error is None and not s.live_stale:
                return WAIT_FOR_NEWS  # the watch's first observation is on its way
            s.read(await self.applier.store.get(s.ref))
        if s.live is None:
            if not s.create:
                return self.applier.missing(s, None, self.backoff)
            await self._create()
            return DONE
        return await self._patch(s.live)

    async def _patch(self, live: dict[str, Any]) -> float | None:
        s = self.state
        leaves = s.effective(live)
        if not leaves:
            return DONE
        now = self.clock.now()
        delay = max(s.contest.delay(p, leaf.value, now) for p, leaf in leaves.items())
        if delay > 0:
            return delay
        try:
            await self._send(leaves)
        except InvalidError as e:
            await self._isolate_invalid(leaves, e)
        return DONE

    async def _send(self, leaves: dict[Path, Leaf]) -> None:
        """One merge patch of ``leaves``, conditional on the live object's resourceVersion.

        The precondition is left out only for an object kidecar does not watch when no guard
        was checked (the result ConfigMap, which the sidecars of a workload share: a merge patch
        of one's own keys is safe, and a precondition would only make them refuse each other).
        """
        s = self.state
        patch = unflatten((p, leaf.value) for p, leaf in leaves.items())
        rv = lookup(s.live, ("metadata", "resourceVersion"))
        conditional = s.watched or any(leaf.guards for leaf in leaves.values())
        if isinstance(rv, str) and conditional:
            patch.setdefault("metadata", {})["resourceVersion"] = rv
        answer = await self.applier.store.patch(s.ref, patch)
        self.applier.metrics.persist_writes.labels(s.ref.resource, "patch").inc()
        self._took(answer, s.written(leaves))

    def _took(self, answer: dict[str, Any], events: list[Event]) -> None:
        """After a write: its answer is the live state (unless the watch was faster), its
        Events are recorded, and reverts the watch showed in between are counted."""
        s, now = self.state, self.clock.now()
        for path in s.answered(answer, now):
            manager = manager_of(s.live, path)
            self.applier.reverted(s, path, s.desired[path].value, manager, answer, now)
        for event in events:
            self.applier.record(event)

    async def _isolate_invalid(self, leaves: dict[Path, Leaf], error: InvalidError) -> None:
        """A 422: find the write(s) at fault by source, drop them, write the rest."""
        s = self.state
        by_source: dict[str, dict[Path, Leaf]] = {}
        for p, leaf in leaves.items():
            by_source.setdefault(leaf.source, {})[p] = leaf
        if len(by_source) == 1:
            self.applier.reject(s, leaves, error)
            return
        for group in by_source.values():
            # Guards are checked again against the newest live state (a write of another group
            # changed it), and the patch is conditional on it, as the combined patch was.
            if s.live is None or any(
                s.guard_blocks(s.live, g) for leaf in group.values() for g in leaf.guards
            ):
                continue
            try:
                await self._send(group)
            except InvalidError as e:
                self.applier.reject(s, group, e)

    async def _create(self) -> None:
        s = self.state
        body = unflatten((p, leaf.value) for p, leaf in s.desired.items() if leaf.value is not None)
        meta = body.setdefault("metadata", {})
        meta["name"] = s.ref.name
        meta["namespace"] = s.ref.namespace
        answer = await self.applier.store.create(s.ref, body)  # 409: created meanwhile, re-read
        self.applier.metrics.persist_writes.labels(s.ref.resource, "create").inc()
        self._took(answer, s.written(dict(s.desired)))


__all__ = ["DONE", "WAIT_FOR_NEWS", "Worker", "asyncio"]

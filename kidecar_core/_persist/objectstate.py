"""One object kidecar writes: its desired leaves, what it knows of the live object, and the pure
rules that compare the two (no I/O here; :mod:`.worker` does the writing).

**Live state.**  For a watched object (the Pod and the GameServer) the live state is the latest
observation of the watch, or the object a write answered with, whichever is newer: after a write
answered with ``resourceVersion`` R, events that the watch delivers before R are older than the
write and skipped (the watch delivers events in order; a relist ends the wait, so does
:data:`AWAIT_LIMIT`).  Nothing is read before a write.  For other objects (the result ConfigMap,
a custom ``target``) the live state is read when there is none (first write, after a 409, at
resync) and then kept from the answers.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core._persist.contest import Contest, ContestPolicy
from kidecar_core._persist.fields import guard_blocks
from kidecar_core._persist.leaves import MISSING, Leaf, Path, holds
from kidecar_core._persist.status import ObjectStatus
from kidecar_core._persist.write import FieldNotIn
from kidecar_core._store.objects import JSON, Event, ObjectRef, Observation
from kidecar_core.errors import PersistError

AWAIT_LIMIT = 5.0
"""Seconds after a write during which older watch events are skipped, at most (a safety net: the
event of the write itself normally ends the wait within milliseconds)."""

_SEEN = 32
MAX_HELD_DELETIONS = 256
"""Deletions (``None`` leaves: a label or annotation kidecar removed) kept in the desired state
after they hold, at most; the oldest beyond this are forgotten (their key is no longer
kidecar's), so a game that sets and deletes a new key per match does not grow the sidecar's
memory, while recent removals are still re-asserted against a stale writer."""


@attrs.define(eq=False)
class ObjectState:
    """Everything the applier keeps about one object."""

    ref: ObjectRef
    watched: bool = False
    contest: Contest = attrs.field(factory=lambda: Contest(ContestPolicy()))
    desired: dict[Path, Leaf] = attrs.field(factory=dict)
    ours: dict[Path, JSON] = attrs.field(factory=dict)
    create: bool = False
    generation: int = 0
    """Counts changes of the desired state."""
    written_generation: int = 0
    """The generation of the desired state last found written."""
    stamp: int = 0
    """Counts every reason to look again (desired changes, observations, timers)."""
    dirty: bool = False
    attempts: int = 0
    """Write attempts made so far."""
    not_before: float = 0.0
    """No attempt before this time (backoff); ``inf``: only when something new happens."""
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    progress: asyncio.Event = attrs.field(factory=asyncio.Event)
    live: dict[str, JSON] | None = None
    live_known: bool = False
    live_stale: bool = False
    awaiting: str | None = None
    awaiting_since: float = 0.0
    seen: deque[str] = attrs.field(factory=lambda: deque(maxlen=_SEEN))
    watch_error: PersistError | None = None
    status: ObjectStatus = ObjectStatus.OK
    detail: str = ""
    blocked: bool = False
    missing_since: float | None = None
    after: list[tuple[ObjectState, int]] = attrs.field(factory=list)
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    # -- changes ----------------------------------------------------------------------------

    def touch(self, *, wake: bool = True) -> None:
        """Something changed: look again (a wait for news is over)."""
        self.stamp += 1
        self.dirty = True
        if self.not_before == math.inf:
            self.not_before = 0.0
        if wake:
            self.wake.set()

    def merge(self, path: Path, leaf: Leaf) -> bool:
        """Put ``leaf`` into the desired state; whether that changed it."""
        previous = self.desired.get(path)
        if previous == leaf:
            return False
        if previous is None or previous.value != leaf.value:
            self.contest.restart(path)  # a new value: a revert of it is a first one
        self.desired[path] = leaf
        return True

    def signal_progress(self) -> None:
        """Wake whoever waits for this object's writes (the order of writes)."""
        self.progress.set()
        self.progress = asyncio.Event()

    # -- the live object --------------------------------------------------------------------

    @property
    def watch_healthy(self) -> bool:
        return self.watched and self.watch_error is None and self.live_known

    def observe(self, observation: Observation, now: float) -> list[Path]:
        """Take in what the watch saw; the paths someone else reverted (see :meth:`reverted`)."""
        if observation.error is not None:
            self.watch_error = observation.error
            return []
        self.watch_error = None
        obj, rv = observation.object, observation.resource_version
        if (
            self.awaiting is not None
            and not observation.relisted
            and obj is not None
            and rv != self.awaiting
            and now - self.awaiting_since < AWAIT_LIMIT
        ):
            if rv is not None:
                self.seen.append(rv)
            return []  # older than kidecar's own write, whose answer is the live state now
        self.awaiting = None
        if rv is not None:
            self.seen.append(rv)
        old = self.live if self.live_known else MISSING
        if self.live_stale:
            self.not_before = 0.0  # a write refused as stale (409) can go again from here
        self.live, self.live_known, self.live_stale = obj, True, False
        if obj is not None:
            self.missing_since = None
        return self.reverted(old, obj)

    def answered(self, obj: dict[str, JSON], now: float) -> list[Path]:
        """Take in the object a write answered with (after :meth:`written`); the paths someone
        else already reverted, when the watch delivered this write and a revert first."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if self.watched and isinstance(rv, str) and rv in self.seen:
            # The watch already delivered this write (and maybe more): keep what it said, and
            # compare it with the answer, which holds what was written.
            return self.reverted(obj, self.live)
        self.live, self.live_known, self.live_stale = obj, True, False
        self.missing_since = None
        if self.watched and isinstance(rv, str):
            self.awaiting, self.awaiting_since = rv, now
        return []

    def read(self, obj: dict[str, JSON] | None) -> None:
        """Take in the object as a read (GET) returned it."""
        self.live, self.live_known, self.live_stale, self.awaiting = obj, True, False, None

    # -- comparing --------------------------------------------------------------------------

    def reverted(self, old: Any, new: dict[str, JSON] | None) -> list[Path]:
        """Paths whose value kidecar wrote and still wants, which held in ``old`` and not in
        ``new``, and which no guard gives to someone else in ``new``."""
        if old is MISSING or old is None or new is None:
            return []
        out = []
        for path, leaf in self.desired.items():
            if leaf.once or not _same(self.ours.get(path, MISSING), leaf.value):
                continue
            if (
                holds(old, path, leaf.value)
                and not holds(new, path, leaf.value)
                and not any(self.guard_blocks(new, g) for g in leaf.guards)
            ):
                out.append(path)
        return out

    def effective(self, live: Mapping[str, Any]) -> dict[Path, Leaf]:
        """Leaves that differ from ``live`` and pass their guards (sets :attr:`blocked`).

        Leaves ``live`` already holds become kidecar's (``ours``); ``once`` leaves it holds are
        done and leave the desired state.
        """
        out: dict[Path, Leaf] = {}
        self.blocked = False
        for path, leaf in list(self.desired.items()):
            if holds(live, path, leaf.value):
                self.ours[path] = leaf.value
                if leaf.once:
                    del self.desired[path]
                continue
            if any(self.guard_blocks(live, g) for g in leaf.guards):
                self.blocked = True
                continue
            out[path] = leaf
        self._forget_old_deletions(live)
        return out

    def _forget_old_deletions(self, live: Mapping[str, Any]) -> None:
        """Drop the oldest held deletions beyond :data:`MAX_HELD_DELETIONS`."""
        held = [
            p for p, leaf in self.desired.items() if leaf.value is None and holds(live, p, None)
        ]
        for path in held[: max(0, len(held) - MAX_HELD_DELETIONS)]:
            del self.desired[path]
            self.ours.pop(path, None)

    def guard_blocks(self, live: Any, guard: FieldNotIn) -> bool:
        return guard_blocks(guard, live, self.ours)

    def written(self, leaves: Mapping[Path, Leaf]) -> list[Event]:
        """Bookkeeping after a successful write of ``leaves``: what is ours now; the Events."""
        events: list[Event] = []
        for path, leaf in leaves.items():
            self.ours[path] = leaf.value
            if leaf.once and self.desired.get(path) is leaf:
                del self.desired[path]
            if leaf.event is not None and leaf.event not in events:
                events.append(leaf.event)
        return events


def _same(a: Any, b: Any) -> bool:
    return a is not MISSING and a == b and type(a) is type(b)

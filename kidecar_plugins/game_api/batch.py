"""Coalescing the game's writes: at most one batch per object per interval.

A game may call the API as often as it likes (a PATCH per player joining); the API server
should not see that. Agones' SDK server queues each kind of change and writes it at most once
per 500 ms, newest values winning. :class:`Batcher` does the same per target object, with one
difference: a write to an object that was not written during the last interval goes out at
once (Agones waits the interval first), so a single change is not delayed; later ones within
the interval wait for its end and go out together.

A batch is handed to ``emit`` as :class:`~kidecar_core.Write` s (one per field, the newest value
of each), which the plugin wraps in a :class:`~kidecar_core.Result`: from there it takes the
path of every other result (persist hooks, the core's writer, its guards and retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from kidecar_core import Clock, ObjectRef, Write

Leaf = tuple[str, ...]


class BatcherClosed(Exception):
    """The batcher does not take writes: the plugin is stopped (the sidecar is stopping)."""


def leaves(write: Write) -> Iterable[tuple[Leaf, Any]]:
    """The (path, value) leaves of a write's merge patch (a ``None`` value deletes the key)."""

    def walk(node: Any, path: Leaf) -> Iterable[tuple[Leaf, Any]]:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from walk(value, (*path, key))
        else:
            yield path, node

    return walk(write.patch, ())


@attrs.define
class Pending:
    """The writes of one object waiting for its interval to end, newest per leaf."""

    writes: dict[Leaf, Write] = attrs.field(factory=dict)
    timer: asyncio.Task[None] | None = None
    last_sent: float | None = None


class Batcher:
    """Pending writes per object, handed to ``emit`` at most once per ``interval`` seconds of
    ``clock`` (the runtime's; tests drive a :class:`~kidecar_core.ManualClock`)."""

    def __init__(self, emit: Callable[[list[Write]], None], interval: float, clock: Clock) -> None:
        self.emit = emit
        self.interval = interval
        self.clock = clock
        self.objects: dict[ObjectRef, Pending] = {}
        self.closed = True
        self.batches = 0

    def open(self) -> None:
        self.closed = False

    def submit(self, writes: Iterable[Write]) -> None:
        """Queue ``writes`` (each one leaf, see :func:`leaves`); :class:`BatcherClosed` when
        closed.  A write whose object had no batch during the last interval is emitted now."""
        if self.closed:
            raise BatcherClosed("the game API is stopping")
        touched: list[ObjectRef] = []
        for write in writes:
            pending = self.objects.setdefault(write.target, Pending())
            for leaf, _ in leaves(write):
                pending.writes.pop(leaf, None)  # re-inserted last: the newest order wins
                pending.writes[leaf] = write
            if write.target not in touched:
                touched.append(write.target)
        for target in touched:
            self._schedule(target)

    def _schedule(self, target: ObjectRef) -> None:
        pending = self.objects[target]
        if pending.timer is not None:
            return  # the end of the interval will carry it
        now = self.clock.now()
        wait = 0.0 if pending.last_sent is None else pending.last_sent + self.interval - now
        if wait <= 0:
            self._send(target)
        else:
            pending.timer = asyncio.get_running_loop().create_task(
                self._due(target, wait), name=f"kidecar:game_api:batch:{target}"
            )

    async def _due(self, target: ObjectRef, wait: float) -> None:
        await self.clock.sleep(wait)
        pending = self.objects[target]
        pending.timer = None
        if pending.writes:
            self._send(target)

    def _send(self, target: ObjectRef) -> None:
        pending = self.objects[target]
        writes = list({id(w): w for w in pending.writes.values()}.values())
        pending.writes.clear()
        pending.last_sent = self.clock.now()
        self.batches += 1
        self.emit(writes)

    def close(self) -> None:
        """Stop taking writes and emit everything still waiting now: a write the game was told
        is queued (202) is never dropped, the window notwithstanding."""
        self.closed = True
        for target, pending in self.objects.items():
            if pending.timer is not None:
                pending.timer.cancel()
                pending.timer = None
            if pending.writes:
                self._send(target)

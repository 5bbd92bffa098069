"""The GameServer as last seen, and its changes for ``GET /v1/gameserver/watch``.

:func:`follow` is the core's watch of the object (``RuntimeView.watch_object``, from branch
``conv``), shared with the core's own writer of the Pod and the GameServer, so it costs no
reads.  It runs while a game watches; reads between watches are served from a copy at most
:attr:`ObjectFeed.max_age` old.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from kidecar_core import ObjectRef, RuntimeView

log = logging.getLogger("kidecar.plugin.game_api")

POLL_PERIOD = 1.0
"""Seconds between two looks at ``until`` while :func:`follow` waits for a change."""
EAGER_AGE = 0.1
"""The age a copy may have instead of ``max_age`` for a while after the plugin sent a write to
the object: the write lands within milliseconds, and the game expects to read it back."""
EAGER_WINDOW = 2.0
WATCH_IDLE = 1.0
"""Seconds without a change after which a watch checks that its client is still connected: a
gone client's connection counts against the server's connection cap until then."""

_UNSET: Any = object()


async def follow(
    ctx: RuntimeView,
    ref: ObjectRef,
    period: float = POLL_PERIOD,
    until: Callable[[], bool] = lambda: False,
) -> AsyncIterator[dict[str, Any] | None]:
    """Yield the object ``ref`` at once and then whenever it changed (``None`` while it does
    not exist), until ``until()`` is true (looked at every ``period`` seconds).

    The core's watch: after a problem (the API server restarted, ...) it reads the object
    afresh, so no change is lost (intermediate values of a field that changed twice meanwhile
    are, as with any watch that re-lists).
    """
    changes = aiter(ctx.watch_object(ref))
    pending: asyncio.Future[dict[str, Any] | None] | None = None
    try:
        while not until():
            if pending is None:
                pending = asyncio.ensure_future(anext(changes))
            if await _ready(ctx, pending, period):
                obj, pending = pending.result(), None
                yield obj
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(changes, "aclose", None)
        if aclose is not None:
            await aclose()


async def _ready(ctx: RuntimeView, pending: asyncio.Future[Any], period: float) -> bool:
    """Wait for ``pending`` or ``period`` seconds of the runtime's clock; whether it is done."""
    sleeper = asyncio.ensure_future(ctx.clock.sleep(period))
    try:
        await asyncio.wait({pending, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)
    return pending.done()


class ObjectFeed:
    """The latest copy of one object (the GameServer, the Pod) and a change counter that watchers
    wait on."""

    def __init__(
        self,
        ctx: RuntimeView,
        ref: ObjectRef,
        *,
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        max_age: float = 1.0,
        period: float = POLL_PERIOD,
    ) -> None:
        self.ctx = ctx
        self.ref = ref
        self.spawn = spawn
        self.max_age = max_age
        self.period = period
        self.idle = WATCH_IDLE
        self.latest: dict[str, Any] | None = None
        self.seen_at = -float("inf")
        self.eager_until = -float("inf")
        self.version = 0
        self.closed = True
        self.watchers = 0
        self._changed = asyncio.Condition()
        self._follower: asyncio.Task[None] | None = None
        self._reading: asyncio.Future[dict[str, Any] | None] | None = None

    # -- reading ----------------------------------------------------------------------------

    async def current(self) -> dict[str, Any] | None:
        """The object (``None``: it does not exist), from the copy when it is fresh (a watch
        is running, or it was read less than ``max_age`` ago), else read now.  Concurrent calls
        share one read.  Raises the store's :class:`~kidecar_core.KidecarError` when it cannot
        be read and no fresh copy exists."""
        now = self.ctx.clock.now()
        max_age = EAGER_AGE if now < self.eager_until else self.max_age
        if self._following() or now - self.seen_at < max_age:
            return self.latest
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            # Retrieved here so that a read whose callers all went away is not reported as an
            # exception nobody retrieved.
            self._reading.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(self._reading)

    def expect_change(self) -> None:
        """A write to the object was just sent: forget the copy, and keep later copies young
        for a while (:data:`EAGER_AGE` for :data:`EAGER_WINDOW` seconds), so that a read after
        the write shows it once it has landed."""
        self.seen_at = -float("inf")
        self.eager_until = self.ctx.clock.now() + EAGER_WINDOW

    async def _read(self) -> dict[str, Any] | None:
        try:
            obj = await self.ctx.get_object(self.ref)
            await self._update(obj)
            return obj
        finally:
            self._reading = None

    async def _update(self, obj: dict[str, Any] | None, force: bool = False) -> None:
        self.seen_at = self.ctx.clock.now()
        if obj == self.latest and not force:
            return
        self.latest = obj
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    # -- watching ---------------------------------------------------------------------------

    def _following(self) -> bool:
        return self._follower is not None and not self._follower.done()

    async def _follow(self) -> None:
        def done() -> bool:
            return self.watchers == 0 or self.closed

        first = True
        async for obj in follow(self.ctx, self.ref, self.period, until=done):
            # The first read wakes the watchers waiting for a fresh object, changed or not.
            await self._update(obj, force=first)
            first = False

    async def changes(self) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The object now, then after each change, until :meth:`close`.  After :attr:`idle`
        seconds without a change it yields ``None``, so that the caller can check its client is
        still there.  The first object is read fresh (not an older copy)."""
        self.watchers += 1
        try:
            seen = -1
            if not self._following() and not self.closed:
                seen = self.version  # wait for the follower's first, fresh read
                self._follower = self.spawn(self._follow(), "watch")
            while not self.closed:
                if self.version != seen:
                    seen = self.version
                    if self.latest is not None:  # a deleted GameServer has nothing to show
                        yield self.latest
                    continue
                if not await self._wait_change(seen, self.idle):
                    yield None
        finally:
            self.watchers -= 1

    async def _wait_change(self, seen: int, timeout: float) -> bool:
        """Wait until the object changes after version ``seen`` or the feed closes (True), or
        ``timeout`` seconds pass (False)."""
        async with self._changed:
            if self.version != seen or self.closed:
                return True
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def open(self) -> None:
        self.closed = False

    async def close(self) -> None:
        """End every watch (their streams finish cleanly) and stop following."""
        self.closed = True
        async with self._changed:
            self._changed.notify_all()
        if self._follower is not None:
            self._follower.cancel()

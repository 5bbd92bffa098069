"""Time as periodic work sees it: a :class:`Clock` that production reads from the event loop and
tests drive by hand (:class:`ManualClock`), so that no test has to measure wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait for it.

    ``now()`` has an arbitrary origin; only differences mean something.  ``sleep(seconds)``
    returns once ``now()`` has advanced by at least ``seconds`` (at once for ``seconds <= 0``).
    """

    def now(self) -> float:
        """The current time, in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has advanced by ``seconds``."""
        ...


class LoopClock:
    """The running event loop's clock (``loop.time()``, ``asyncio.sleep``): the default."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


LOOP_CLOCK = LoopClock()


def process_start(clock: Clock) -> float:
    """``clock``'s reading at the moment this process started.

    On :class:`LoopClock` (``time.monotonic``): now minus the process's age, from the kernel's
    start time of the process (``/proc/self/stat`` field 22, in clock ticks since boot: 10 ms
    resolution on Linux, rounded up so that the start is never placed too early) against
    ``CLOCK_BOOTTIME``.  The sidecar's process starts with its
    container, so a delay counted from here is counted as Kubernetes counts a probe's
    ``initialDelaySeconds`` (from the container's start), and the interpreter's and imports'
    start-up time falls inside the delay instead of after it.  On any other clock (a test's
    :class:`ManualClock` starts with the test), and where ``/proc`` is missing, ``clock.now()``.
    """
    now = clock.now()
    if not isinstance(clock, LoopClock):
        return now
    try:
        with open("/proc/self/stat", "rb") as stat:
            # Field 2 (the name) may contain spaces: the fields after it follow its last ")".
            fields = stat.read().rsplit(b")", 1)[1].split()
        # Field 22, starttime, truncated to whole ticks by the kernel: the end of that tick is
        # the earliest moment the process can have started, so a delay counted from it is
        # never cut short (at most one tick, 10 ms, long).
        started = (int(fields[19]) + 1) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - max(0.0, age)


class ManualClock:
    """A clock that moves only when told to: ``await clock.advance(seconds)``.

    ``advance`` wakes the sleepers whose time has come, one deadline after the other, and after
    each wake-up waits until every woken task sleeps on this clock again or has ended, so that a
    test sees the effect of each step.  A woken task that does neither within ``settle_timeout``
    real seconds (stuck on real I/O) makes ``advance`` raise ``TimeoutError``.
    """

    def __init__(self, start: float = 0.0, *, settle_timeout: float = 10.0) -> None:
        self._now = start
        self._settle_timeout = settle_timeout
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sleeping: dict[asyncio.Task[object], asyncio.Future[None]] = {}
        self._order = itertools.count()
        self._slept = asyncio.Event()

    def now(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for f in self._sleeping.values() if not f.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        task = asyncio.current_task()
        if task is not None:
            self._sleeping[task] = future
        self._slept.set()
        try:
            await future
        finally:
            if task is not None and self._sleeping.get(task) is future:
                del self._sleeping[task]

    async def wait_for_sleepers(self, count: int) -> None:
        """Wait (in real time, up to ``settle_timeout``) until ``count`` tasks sleep on this clock:
        for tasks that do real I/O before their first sleep."""
        async with asyncio.timeout(self._settle_timeout):
            while self.sleepers < count:
                self._slept.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await self._slept.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order.

        Tasks that are ready to run (just created, say) run first, up to their first sleep.
        """
        await asyncio.sleep(0)
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline = self._sleepers[0][0]
            self._now = max(self._now, deadline)
            due: list[asyncio.Future[None]] = []
            while self._sleepers and self._sleepers[0][0] <= deadline:
                due.append(heapq.heappop(self._sleepers)[2])
            woken = [t for t, f in self._sleeping.items() if f in due and not f.done()]
            for future in due:
                if not future.done():
                    future.set_result(None)
            await self._settle(woken)
        self._now = max(self._now, target)

    async def _settle(self, woken: list[asyncio.Task[object]]) -> None:
        """Wait until each woken task sleeps on this clock again or has ended."""

        def settled(task: asyncio.Task[object]) -> bool:
            future = self._sleeping.get(task)
            return task.done() or (future is not None and not future.done())

        async with asyncio.timeout(self._settle_timeout):
            await asyncio.sleep(0)
            while not all(settled(t) for t in woken):
                self._slept.clear()
                # A woken task may end instead of sleeping again: look again now and then.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await self._slept.wait()


async def sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> bool:
    """Sleep ``seconds`` on ``clock``, or less if ``event`` is set first; True when it was set.

    The sleep happens in the calling task (a :class:`ManualClock` sees who sleeps); setting the
    event interrupts it the way :func:`asyncio.timeout` does, with ``cancel``/``uncancel``, so a
    cancellation from outside is never lost.
    """
    if event.is_set():
        return True
    task = asyncio.current_task()
    assert task is not None, "sleep_unless must run in a task"
    finished = False
    interrupted = False

    def on_set(_: object) -> None:
        nonlocal interrupted
        if not finished:
            interrupted = True
            task.cancel()

    watcher = asyncio.ensure_future(event.wait())
    watcher.add_done_callback(on_set)
    try:
        await clock.sleep(seconds)
    except asyncio.CancelledError:
        if interrupted and task.uncancel() == 0:
            return True
        raise
    finally:
        finished = True
        watcher.remove_done_callback(on_set)
        watcher.cancel()
    return event.is_set()

"""Running work at a period, the way the core ticks plugins and probes run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kidecar_core._base.clock import LOOP_CLOCK, Clock


async def every(
    period: float,
    work: Callable[[], Awaitable[object]],
    *,
    delay: float = 0.0,
    clock: Clock = LOOP_CLOCK,
) -> None:
    """Await ``work()`` every ``period`` seconds, start to start, until cancelled.

    The first run starts after ``delay`` seconds.  A run that takes longer than the period is
    followed by the next one right away: missed periods are skipped, never queued, so a slow
    target is not hammered to catch up.  ``period`` 0 runs back to back, yielding to the event
    loop in between.  Time is read from ``clock`` (default: the event loop's), which tests
    replace with a :class:`~kidecar_core.ManualClock`.
    """
    if delay > 0:
        await clock.sleep(delay)
    next_at = clock.now()
    while True:
        await work()
        next_at = max(next_at + period, clock.now())
        await clock.sleep(next_at - clock.now())

"""Running work at a period, the way the core ticks plugins and probes run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def every(
    period: float, work: Callable[[], Awaitable[object]], *, delay: float = 0.0
) -> None:
    """Await ``work()`` every ``period`` seconds, start to start, until cancelled.

    The first run starts after ``delay`` seconds.  A run that takes longer than the period is
    followed by the next one right away: missed periods are skipped, never queued, so a slow
    target is not hammered to catch up.  ``period`` 0 runs back to back, yielding to the event
    loop in between.
    """
    loop = asyncio.get_running_loop()
    if delay > 0:
        await asyncio.sleep(delay)
    next_at = loop.time()
    while True:
        await work()
        next_at = max(next_at + period, loop.time())
        await asyncio.sleep(next_at - loop.time())

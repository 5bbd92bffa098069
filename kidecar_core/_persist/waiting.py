"""Waiting for an event or a time, whichever comes first, on a :class:`Clock`."""

from __future__ import annotations

import asyncio
import contextlib

from kidecar_core._base.clock import Clock


async def wait_event(clock: Clock, event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` seconds of ``clock`` passed (False).

    ``timeout=None`` waits for the event only.  The time is read from ``clock`` so that tests
    can drive it (:class:`~kidecar_core.ManualClock`).
    """
    if event.is_set():
        return True
    if timeout is None:
        await event.wait()
        return True
    if timeout <= 0:
        await asyncio.sleep(0)
        return event.is_set()
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(waiter, sleeper, return_exceptions=True)
    return event.is_set()

"""Guarded background tasks: a task that dies is logged at once, never found out later.

An unguarded ``asyncio`` task that raises keeps its exception until someone awaits it; if nobody
does, the failure is silent (asyncio only complains when the task is garbage collected).  Every
background task of kidecar is started with :func:`guarded`, which logs the failure the moment it
happens and hands it to ``on_failure`` (the supervisor's restart policy, for plugin tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("kidecar")

T = TypeVar("T")


def guarded(
    coro: Coroutine[Any, Any, T],
    name: str,
    *,
    on_failure: Callable[[BaseException], None] | None = None,
    logger: logging.Logger = log,
) -> asyncio.Task[T]:
    """Start ``coro`` as the task ``name``; if it raises, log it at once and call ``on_failure``.

    Cancellation is not a failure.  The caller keeps the returned task (asyncio holds only weak
    references to tasks).
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)

    def done(t: asyncio.Task[T]) -> None:
        if t.cancelled():
            return
        error = t.exception()
        if error is None:
            return
        logger.error("task %s failed: %s: %s", name, type(error).__name__, error, exc_info=error)
        if on_failure is not None:
            on_failure(error)

    task.add_done_callback(done)
    return task

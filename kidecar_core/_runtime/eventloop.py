"""Running ``kidecar run``'s event loop so that the process always exits when it is told to.

``asyncio.run`` waits, once the main coroutine is done, for every thread of the loop's default
executor, and so does the interpreter when it exits. A file-system call that never returns
(``open()`` of a FIFO, a hung network mount) would keep the process alive forever after
"kidecar stopped", and the pod would wait for SIGKILL. :func:`run` gives those threads
``grace`` seconds, then leaves them behind: the process exits with ``os._exit`` and the exit
code it would have had.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("kidecar")

THREAD_PREFIX = "kidecar-io"
EXIT_GRACE = 5.0
"""Seconds blocking calls still running at exit get to finish."""


def run(main: Coroutine[Any, Any, int], *, grace: float = EXIT_GRACE) -> int:
    """Run ``main`` to completion on a new event loop and return its exit code.

    Like ``asyncio.run`` (remaining tasks cancelled, async generators closed), except that
    threads of the default executor still blocked ``grace`` seconds after ``main`` ended are
    abandoned: the process then ends at once (``os._exit``), logs flushed. An exception of
    ``main`` propagates as with ``asyncio.run`` (and is logged first when the process must end
    at once).
    """
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix=THREAD_PREFIX)
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    code: int | None = None
    failure: BaseException | None = None
    try:
        code = loop.run_until_complete(main)
        return code
    except BaseException as e:
        failure = e
        raise
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            asyncio.set_event_loop(None)
            loop.close()
            stuck = _join_workers(grace)
            if stuck:
                _exit_now(stuck, code, failure)


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _join_workers(grace: float) -> list[threading.Thread]:
    """Wait up to ``grace`` seconds for the executor's threads; the ones still running."""
    deadline = time.monotonic() + grace
    workers = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    for thread in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in workers if t.is_alive()]


def _exit_now(
    stuck: list[threading.Thread], code: int | None, failure: BaseException | None
) -> None:
    if failure is not None and not isinstance(failure, KeyboardInterrupt | SystemExit):
        log.error("kidecar failed: %s: %s", type(failure).__name__, failure)
    log.warning(
        "%d blocking call(s) still running (a file system that does not answer?): exiting "
        "without waiting for them",
        len(stuck),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if code is not None else 1)

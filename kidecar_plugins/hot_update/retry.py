"""The replay's download: retried on :class:`DownloadFailed` (502; up to
:data:`REPLAY_DOWNLOAD_ATTEMPTS` tries, delays 1 s, 2 s, ... from :class:`kidecar_core.Backoff`)
while the replay's deadline allows it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from kidecar_core import Backoff
from kidecar_plugins.hot_update.download import Downloaded
from kidecar_plugins.hot_update.errors import DownloadFailed, UpdateError
from kidecar_plugins.hot_update.request import UpdateRequest

log = logging.getLogger("kidecar.plugin.hot_update")

REPLAY_DOWNLOAD_ATTEMPTS = 3


async def download_with_retries(
    fetch: Callable[[], Awaitable[Downloaded]], req: UpdateRequest, deadline: float
) -> Downloaded:
    """``await fetch()``, retried after a 502 unless the next try would end after ``deadline``
    (monotonic seconds). Raises the last :class:`UpdateError`, which says so when the URL was
    recorded without its credentials (a presigned URL that cannot work any more)."""
    backoff = Backoff(initial=1.0, cap=60.0, jitter=False)
    for attempt in range(1, REPLAY_DOWNLOAD_ATTEMPTS + 1):
        try:
            return await fetch()
        except UpdateError as e:
            last_try = attempt == REPLAY_DOWNLOAD_ATTEMPTS
            out_of_time = time.monotonic() + backoff.peek() > deadline
            if not isinstance(e, DownloadFailed) or last_try or out_of_time:
                if req.recorded_without_credentials:
                    raise e.with_message(
                        f"{e.message} (the URL was recorded without its credentials, "
                        "which kidecar never stores: send the update again)",
                    ) from None
                raise
            log.warning("%s; retrying in %gs", e.message, backoff.peek())
        await asyncio.sleep(backoff.next())
    raise AssertionError("unreachable")

"""Kubernetes Events about the pod: best effort, rate-limited, never blocking a plugin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import attrs

from kidecar_core._base.tasks import guarded
from kidecar_core._store.objects import Event, ObjectRef, ObjectStore
from kidecar_core.errors import PersistError
from kidecar_core.redact import redact_text

log = logging.getLogger("kidecar.events")


class EventRecorder:
    """Queues Events and sends them in the background, credentials redacted from their messages.

    Rate limits: the same (reason, message) at most once per ``dedupe_seconds``, and at most
    ``burst`` Events per minute overall; the rest are dropped (and counted in the log), so a
    flapping game cannot flood the API server.
    """

    def __init__(
        self, store: ObjectStore, about: ObjectRef, *, burst: int = 10, dedupe_seconds: float = 60
    ) -> None:
        self.store = store
        self.about = about
        self.burst = burst
        self.dedupe_seconds = dedupe_seconds
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)
        self._recent: dict[tuple[str, str, ObjectRef | None], float] = {}
        self._sent: list[float] = []
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._task = guarded(self._run(), "kidecar-events", logger=log)

    def record(self, event: Event) -> None:
        """Queue ``event`` (its message redacted: :func:`kidecar_core.redact.redact_text`)."""
        event = attrs.evolve(event, message=redact_text(event.message))
        now = time.monotonic()
        # Forget expired keys: messages name versions and URLs, so the set is not bounded.
        self._recent = {k: t for k, t in self._recent.items() if now - t < self.dedupe_seconds}
        key = (event.reason, event.message, event.about)
        if now - self._recent.get(key, -1e9) < self.dedupe_seconds:
            self.dropped += 1
            return
        self._sent = [t for t in self._sent if now - t < 60]
        if len(self._sent) >= self.burst:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self._recent[key] = now
        self._sent.append(now)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.store.record_event(event.about or self.about, event)
                self._warned = False
            except Exception as e:  # best effort: nothing may end this loop
                if not isinstance(e, PersistError):
                    log.exception("unexpected error recording event %s", event.reason)
                elif not self._warned:
                    log.warning(
                        "cannot record event %s: %s (events are best effort)", event.reason, e
                    )
                    self._warned = True
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until queued Events are sent."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

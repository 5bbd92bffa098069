"""The results pipeline: result → ``kidecar_on_result`` → write plan (``kidecar_persist``) →
policy sets (what the previous state's policy set and this one does not is removed) → opsState
precedence between sources → applier, one result at a time, in the order plugins
emitted them.

Nothing a hook does can stop the pipeline: a failing hook, a bad write (dropped by the
:class:`~kidecar_core._persist.plan.WritePlan`) or an unexpected error is logged, and the next
result is processed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from kidecar_core._base.metrics import Metrics
from kidecar_core._base.tasks import guarded
from kidecar_core._persist.applier import Applier
from kidecar_core._persist.policysets import PolicySets
from kidecar_core._persist.precedence import OpsStatePrecedence
from kidecar_core._persist.result import Result
from kidecar_core._plugins.context import RuntimeView
from kidecar_core._plugins.manager import Plugins
from kidecar_core._store.events import EventRecorder

log = logging.getLogger("kidecar")


class Pipeline:
    """Owns the queue of results and the task that processes them."""

    def __init__(
        self,
        plugins: Plugins,
        view: RuntimeView,
        applier: Applier,
        events: EventRecorder,
        metrics: Metrics,
        ops_state: OpsStatePrecedence | None = None,
        policy_sets: PolicySets | None = None,
    ) -> None:
        self.plugins = plugins
        self.ops_state = ops_state
        self.policy_sets = policy_sets
        self.view = view
        self.applier = applier
        self.events = events
        self.metrics = metrics
        self._results: asyncio.Queue[Result] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def emit(self, result: Result) -> None:
        """Queue a result (never blocks)."""
        self.metrics.results.labels(result.plugin, result.kind or "result").inc()
        self._results.put_nowait(result)

    def start(self) -> None:
        self._task = guarded(self._loop(), "kidecar-results")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def join(self, timeout: float) -> bool:
        """Wait until every queued result is processed (True) or ``timeout`` passes."""
        try:
            await asyncio.wait_for(self._results.join(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def _loop(self) -> None:
        while True:
            result = await self._results.get()
            try:
                await self.process(result)
            except Exception:  # a bug must cost one result, never the pipeline
                log.exception("unexpected error processing a result of %s", result.plugin)
            finally:
                self._results.task_done()

    async def process(self, result: Result) -> None:
        """One result through on_result, persist and the applier."""
        try:
            await gather_logged(self.plugins.on_result(result, self.view), "kidecar_on_result")
        except Exception:
            log.exception("kidecar_on_result failed for a result of %s", result.plugin)
        try:
            plan = self.plugins.persist(result, self.view)
        except Exception:
            log.exception(
                "kidecar_persist failed for a result of %s; result not stored", result.plugin
            )
            return
        writes = plan.writes
        if self.policy_sets is not None:
            writes = self.policy_sets.resolve(result, writes)
        if self.ops_state is not None:
            writes = self.ops_state.resolve(result, writes)
        self.applier.submit(writes)
        for event in result.events:
            self.events.record(event)


async def gather_logged(awaitables: list[Awaitable[Any]], hook: str) -> None:
    """Await hook results together; log each failure with the hook's name, raise none."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            log.error("%s implementation failed: %s", hook, r, exc_info=r)

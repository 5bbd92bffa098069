"""Probing endpoints on their period, each in a task of its own.

One :class:`EndpointProber` per endpoint runs as a ``ctx.spawn`` task: a probe that hangs until
its timeout delays only the next probe of the same endpoint, never another endpoint nor the core.
The period is measured start to start; a probe that takes longer than the period is followed by
the next one at once (the periods it overran are skipped, never queued).

A result is emitted only when an endpoint's *effective* state changes (see
:mod:`kidecar_plugins.http_probe.state`); the core then writes only what changed, so a steady
game costs no API writes at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import attrs

from kidecar_core import Event, PluginContext, Result, every
from kidecar_plugins.http_probe.config import Endpoint
from kidecar_plugins.http_probe.extract import StatePath
from kidecar_plugins.http_probe.probe import OUTCOMES, ProbeOutcome, display_url, probe_once
from kidecar_plugins.http_probe.state import FAILED, Thresholds

KIND = "probe"


@attrs.frozen
class ProbeMetrics:
    """The plugin's Prometheus metrics; label sets stay small (the endpoint's index)."""

    probes: Any
    latency: Any
    changes: Any

    @classmethod
    def of(cls, ctx: PluginContext) -> ProbeMetrics:
        return cls(
            probes=ctx.metrics.counter(
                "kidecar_http_probe_probes",
                "HTTP probes by endpoint (index in the config) and outcome "
                "(success, timeout, error, status, body).",
                ["plugin", "endpoint", "outcome"],
            ),
            latency=ctx.metrics.histogram(
                "kidecar_http_probe_duration_seconds",
                "Duration of HTTP probes, whatever their outcome.",
                ["plugin", "endpoint"],
            ),
            changes=ctx.metrics.counter(
                "kidecar_http_probe_state_changes",
                "Changes of an endpoint's effective state (after the thresholds).",
                ["plugin", "endpoint"],
            ),
        )


class EndpointProber:
    """Probes one endpoint at a period and emits its effective state when it changes."""

    def __init__(
        self,
        ctx: PluginContext,
        index: int,
        endpoint: Endpoint,
        *,
        period: float,
        session: aiohttp.ClientSession,
        thresholds: Thresholds,
        metrics: ProbeMetrics,
    ) -> None:
        self.ctx = ctx
        self.index = index
        self.endpoint = endpoint
        self.period = period
        self.session = session
        self.thresholds = thresholds
        self.path: StatePath | None = (
            endpoint.json_path_config.compile() if endpoint.json_path_config else None
        )
        self.url = display_url(endpoint.url)
        self.label = str(index)
        self._probes = {
            outcome: metrics.probes.labels(ctx.name, self.label, outcome) for outcome in OUTCOMES
        }
        self._latency = metrics.latency.labels(ctx.name, self.label)
        self._changes = metrics.changes.labels(ctx.name, self.label)
        self._log = ctx.log

    async def run(self, delay: float) -> None:
        """Probe forever (until cancelled), the first probe after ``delay`` seconds."""
        await every(self.period, self.probe_and_observe, delay=delay)

    async def probe_and_observe(self) -> None:
        """One probe, counted and thresholded."""
        self.observe(await probe_once(self.session, self.endpoint, self.path))

    def observe(self, outcome: ProbeOutcome) -> None:
        """Count one probe's outcome and emit a result if the effective state changed."""
        self._probes[outcome.outcome].inc()
        self._latency.observe(outcome.seconds)
        previous = self.thresholds.effective
        if outcome.state is not None:
            if self.thresholds.failures:
                self._log.info("endpoint %d (%s) answers again", self.index, self.url)
            changed = self.thresholds.success(outcome.state)
        else:
            if not self.thresholds.failures:
                # Only the first failure of a streak is logged: a dead game probed every
                # 100 ms must not flood the log.
                self._log.info(
                    "endpoint %d (%s): probe failed: %s", self.index, self.url, outcome.reason
                )
            changed = self.thresholds.failure()
        if changed is not None:
            self._emit(changed, previous, outcome)

    def _emit(self, state: str, previous: str | None, outcome: ProbeOutcome) -> None:
        self._changes.inc()
        events: tuple[Event, ...] = ()
        if state == FAILED:
            message = (
                f"{self.ctx.name} endpoint {self.index} ({self.url}) failed "
                f"{self.thresholds.failures} times in a row: {outcome.reason}"
            )
            self._log.warning("%s; state is now %s", message, FAILED)
            events = (Event("ProbeFailed", message, "Warning"),)
        else:
            self._log.info(
                "endpoint %d (%s): state %s -> %s",
                self.index,
                self.url,
                "(none yet)" if previous is None else repr(previous),
                repr(state),
            )
        self.ctx.emit(
            Result(
                plugin=self.ctx.name,
                state=state,
                storage=self.endpoint.storage_config,
                source=self.ctx.config_path(f"endpoints[{self.index}].storageConfig"),
                kind=KIND,
                data={
                    "endpoint": self.index,
                    "url": self.url,
                    "previous": previous,
                    "reason": outcome.reason,
                    "status": outcome.status,
                },
                events=events,
            )
        )


@attrs.define
class ProbeRun:
    """What one start of the plugin owns: the HTTP session and the probing tasks."""

    session: aiohttp.ClientSession
    tasks: list[asyncio.Task[Any]] = attrs.field(factory=list)

    async def close(self) -> None:
        """Stop probing, then close the session (in that order: no probe sees a closed session)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()

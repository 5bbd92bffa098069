"""Probing one endpoint at its period, in a task of its own.

One :class:`EndpointProber` per endpoint runs as a ``ctx.spawn`` task: a probe that hangs until
its timeout delays only the next probe of that endpoint, never another endpoint nor the core.
The period is measured start to start; a probe longer than the period is followed by the next
one at once (missed periods are skipped, never queued).

A :class:`~kidecar_core.Result` is emitted only when the endpoint's effective state changes
(including its first state), so a steady game costs no writes at all.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from kidecar_core import Event, Metrics, Result, every

from kidecar_tcp_probe.config import Endpoint
from kidecar_tcp_probe.probe import OUTCOMES, ProbeOutcome, probe_once
from kidecar_tcp_probe.state import UpDown

KIND = "probe"

Probe = Callable[[Endpoint], Awaitable[ProbeOutcome]]


@attrs.frozen
class ProbeMetrics:
    """The plugin's Prometheus metrics; label sets stay small (the endpoint's index)."""

    probes: Any
    latency: Any
    up: Any

    @classmethod
    def of(cls, metrics: Metrics) -> ProbeMetrics:
        return cls(
            probes=metrics.counter(
                "kidecar_tcp_probe_probes",
                "TCP probes by endpoint (index in the config) and outcome "
                "(success, refused, error, timeout, reply).",
                ["plugin", "endpoint", "outcome"],
            ),
            latency=metrics.histogram(
                "kidecar_tcp_probe_duration_seconds",
                "Duration of TCP probes, whatever their outcome.",
                ["plugin", "endpoint"],
            ),
            up=metrics.gauge(
                "kidecar_tcp_probe_up",
                "1 while the endpoint is reachable, 0 while unreachable (after the thresholds).",
                ["plugin", "endpoint"],
            ),
        )


@attrs.frozen
class Target:
    """Where one endpoint's results go and how they are named."""

    plugin: str
    index: int
    endpoint: Endpoint
    up_state: str
    down_state: str
    source: str
    """Config path of the endpoint's ``storageConfig`` (``plugins[0].config.endpoints[1]...``)."""


class EndpointProber:
    """Probes one endpoint at a period and emits its effective state when it changes."""

    def __init__(
        self,
        target: Target,
        *,
        period: float,
        updown: UpDown,
        emit: Callable[[Result], None],
        metrics: ProbeMetrics,
        probe: Probe = probe_once,
    ) -> None:
        self.target = target
        self.period = period
        self.updown = updown
        self.emit = emit
        self.probe = probe
        label = str(target.index)
        self._probes = {o: metrics.probes.labels(target.plugin, label, o) for o in OUTCOMES}
        self._latency = metrics.latency.labels(target.plugin, label)
        self._up = metrics.up.labels(target.plugin, label)
        self._log = logging.getLogger(f"kidecar.plugin.{target.plugin}")

    async def run(self, delay: float) -> None:
        """Probe forever (until cancelled), the first probe after ``delay`` seconds."""
        await every(self.period, self.probe_and_observe, delay=delay)

    async def probe_and_observe(self) -> None:
        """One probe, counted and thresholded."""
        self.observe(await self.probe(self.target.endpoint))

    def observe(self, outcome: ProbeOutcome) -> None:
        """Count one probe's outcome and emit a result if the effective state changed."""
        self._probes[outcome.outcome].inc()
        self._latency.observe(outcome.seconds)
        if not outcome.ok and not self.updown.failures and self.updown.up is not False:
            # Only the first failure of a streak is logged: a dead port probed every 100 ms
            # must not flood the log.
            self._log.info(
                "endpoint %d (%s): probe failed: %s",
                self.target.index,
                self.target.endpoint.address,
                outcome.reason,
            )
        previous = self.updown.up
        changed = self.updown.observe(outcome.ok)
        if changed is not None:
            self._up.set(1 if changed else 0)
            self._emit(changed, previous, outcome)

    def _emit(self, up: bool, previous: bool | None, outcome: ProbeOutcome) -> None:
        t = self.target
        state = t.up_state if up else t.down_state
        before = None if previous is None else (t.up_state if previous else t.down_state)
        events: tuple[Event, ...] = ()
        if not up:
            message = (
                f"tcp_probe endpoint {t.index} ({t.endpoint.address}) failed "
                f"{t.endpoint.failure_threshold} times in a row: {outcome.reason}"
            )
            self._log.warning("%s; state is now %s", message, state)
            events = (Event("TcpProbeUnreachable", message, "Warning"),)
        else:
            change = state if before is None else f"{before} -> {state}"
            self._log.info("endpoint %d (%s): %s", t.index, t.endpoint.address, change)
            if previous is False:
                events = (
                    Event("TcpProbeReachable", f"tcp_probe endpoint {t.index} is reachable again"),
                )
        self.emit(
            Result(
                plugin=t.plugin,
                state=state,
                storage=t.endpoint.storage_config,
                source=t.source,
                kind=KIND,
                data={
                    "endpoint": t.index,
                    "address": t.endpoint.address,
                    "up": up,
                    "previous": before,
                    "reason": outcome.reason,
                    "seconds": outcome.seconds,
                },
                events=events,
            )
        )

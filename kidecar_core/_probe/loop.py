"""Probing one endpoint at its period, in a task of its own, and reporting its effective state.

A plugin runs one :class:`ProbeLoop` per endpoint (``ctx.spawn(loop.run(period, delay), ...)``):
a probe that hangs until its timeout delays only the next probe of the same endpoint, never
another endpoint nor the core.  The period is measured start to start; a probe that takes longer
than the period is followed by the next one at once (missed periods are skipped, never queued).

Each outcome is counted (``<prefix>_probes_total{outcome}``, ``<prefix>_duration_seconds``) and
fed to the endpoint's :class:`~kidecar_core.ProbeThresholds`; only a change of the *effective*
state reaches the plugin (``on_change``), which turns it into a :class:`~kidecar_core.Result`.
So a steady game costs no API writes at all.  Logging is the loop's: the first failure of a
streak (not every one: a dead game probed every 100 ms must not flood the log), the recovery,
and every change of the effective state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from kidecar_core._base.clock import LOOP_CLOCK, Clock
from kidecar_core._base.metrics import Metrics
from kidecar_core._base.schedule import every
from kidecar_core._probe.thresholds import ProbeThresholds

SUCCESS = "success"
"""The outcome label of a probe that found a state."""


@attrs.frozen
class ProbeOutcome:
    """What one probe found.

    ``outcome`` labels the probe in metrics (``success``, or a failure kind the plugin declares:
    ``timeout``, ``refused``, ``status``, ...); ``state`` is the state it found (``None`` when it
    failed) and ``reason`` why it failed, in words an operator can act on.  ``seconds`` is how
    long it took; ``detail`` carries plugin-specific facts (an HTTP status) for the result.
    """

    outcome: str
    state: str | None = None
    reason: str = ""
    seconds: float = 0.0
    detail: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the probe found a state."""
        return self.state is not None


@attrs.frozen
class ProbeChange:
    """A change of one endpoint's effective state, handed to the plugin's ``on_change``.

    ``previous`` is ``None`` for the first state.  ``failed`` is true when the new state is the
    failed state (``failureThreshold`` failed probes in a row, the last one being ``outcome``).
    """

    index: int
    target: str
    state: str
    previous: str | None
    failed: bool
    outcome: ProbeOutcome
    failures: int


@attrs.frozen
class ProbeMetrics:
    """A probing plugin's Prometheus metrics; label sets stay small (the endpoint's index).

    ``<prefix>_probes_total{plugin, endpoint, outcome}``,
    ``<prefix>_duration_seconds{plugin, endpoint}`` and
    ``<prefix>_state_changes_total{plugin, endpoint}``.
    """

    probes: Any
    latency: Any
    changes: Any
    outcomes: tuple[str, ...]

    @classmethod
    def create(
        cls, metrics: Metrics, prefix: str, what: str, outcomes: tuple[str, ...]
    ) -> ProbeMetrics:
        """Get or create the metrics named ``prefix_*``; ``what`` names the probes in their help
        (``"HTTP probes"``); ``outcomes`` are every outcome label a probe may report."""
        return cls(
            probes=metrics.counter(
                f"{prefix}_probes",
                f"{what} by endpoint (index in the config) and outcome ({', '.join(outcomes)}).",
                ["plugin", "endpoint", "outcome"],
            ),
            latency=metrics.histogram(
                f"{prefix}_duration_seconds",
                f"Duration of {what}, whatever their outcome.",
                ["plugin", "endpoint"],
            ),
            changes=metrics.counter(
                f"{prefix}_state_changes",
                "Changes of an endpoint's effective state (after the thresholds).",
                ["plugin", "endpoint"],
            ),
            outcomes=outcomes,
        )


class ProbeLoop:
    """Probes one endpoint at a period and reports its effective state when it changes.

    ``probe`` makes one probe and never raises for what the target does (a failed probe is a
    :class:`ProbeOutcome` without state); ``target`` names the endpoint in logs (a URL without
    credentials, ``host:port``).  ``thresholds`` is kept by the plugin across its restarts.
    """

    def __init__(
        self,
        *,
        plugin: str,
        index: int,
        target: str,
        probe: Callable[[], Awaitable[ProbeOutcome]],
        thresholds: ProbeThresholds,
        on_change: Callable[[ProbeChange], None],
        metrics: ProbeMetrics,
        log: logging.Logger | None = None,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        self.index = index
        self.target = target
        self.probe = probe
        self.thresholds = thresholds
        self.on_change = on_change
        self.clock = clock
        self.log = log or logging.getLogger(f"kidecar.plugin.{plugin}")
        label = str(index)
        self._probes = {o: metrics.probes.labels(plugin, label, o) for o in metrics.outcomes}
        self._latency = metrics.latency.labels(plugin, label)
        self._changes = metrics.changes.labels(plugin, label)

    async def run(self, period: float, delay: float = 0.0) -> None:
        """Probe forever (until cancelled) every ``period`` seconds, the first after ``delay``."""
        await every(period, self.probe_and_observe, delay=delay, clock=self.clock)

    async def probe_and_observe(self) -> None:
        """One probe, counted and thresholded."""
        self.observe(await self.probe())

    def observe(self, outcome: ProbeOutcome) -> ProbeChange | None:
        """Count one probe's outcome; report and return the change of effective state, if any."""
        counter = self._probes.get(outcome.outcome)
        if counter is None:
            raise ValueError(f"probe outcome {outcome.outcome!r} is not a declared outcome")
        counter.inc()
        self._latency.observe(outcome.seconds)
        machine = self.thresholds
        previous = machine.effective
        if outcome.state is not None:
            if machine.failures:
                self.log.info("endpoint %d (%s) answers again", self.index, self.target)
            changed = machine.success(outcome.state)
        else:
            if not machine.failures:
                self.log.info(
                    "endpoint %d (%s): probe failed: %s", self.index, self.target, outcome.reason
                )
            changed = machine.failure()
        if changed is None:
            return None
        change = ProbeChange(
            self.index, self.target, changed, previous, machine.failed, outcome, machine.failures
        )
        self._report(change)
        return change

    def _report(self, change: ProbeChange) -> None:
        self._changes.inc()
        if change.failed:
            self.log.warning(
                "endpoint %d (%s) failed %d times in a row: %s; state is now %s",
                self.index,
                self.target,
                change.failures,
                change.outcome.reason,
                change.state,
            )
        else:
            before = "(none yet)" if change.previous is None else repr(change.previous)
            self.log.info(
                "endpoint %d (%s): state %s -> %r", self.index, self.target, before, change.state
            )
        self.on_change(change)


def first_probe_delay(first_start: float, start_delay: float, clock: Clock = LOOP_CLOCK) -> float:
    """Seconds until the first probe: ``startDelaySeconds`` counted from ``first_start``, a
    ``clock`` reading the plugin takes once and keeps across restarts (http_probe:
    :func:`~kidecar_core.process_start`, the sidecar's start), so that a plugin restarted after
    a failure probes at once instead of waiting for the game again."""
    return max(0.0, start_delay - (clock.now() - first_start))

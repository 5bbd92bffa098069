"""From an endpoint's reachability changes to results, on kidecar's probe kit.

The probing itself (period, thresholds, metrics, logs) is the kit's
:class:`~kidecar_core.ProbeLoop`, the same that drives ``http_probe``: each endpoint is probed in
a task of its own at its period, start to start, and only a change of its effective state
(``upState``/``downState``, after ``successThreshold``/``failureThreshold``) reaches
:func:`change_result`, which makes the :class:`~kidecar_core.Result` (and the Events) of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from kidecar_core import (
    LOOP_CLOCK,
    Clock,
    Event,
    Metrics,
    ProbeChange,
    ProbeLoop,
    ProbeMetrics,
    ProbeOutcome,
    ProbeThresholds,
    Result,
)

from kidecar_tcp_probe.config import Endpoint
from kidecar_tcp_probe.probe import OUTCOMES, probe_once

KIND = "probe"
METRICS_PREFIX = "kidecar_tcp_probe"


@attrs.frozen
class Target:
    """One endpoint and where its results go."""

    plugin: str
    index: int
    endpoint: Endpoint
    up_state: str
    down_state: str
    source: str
    """Config path of the endpoint's ``storageConfig`` (``plugins[0].config.endpoints[1]...``)."""

    def thresholds(self) -> ProbeThresholds:
        """A fresh threshold machine whose failed state is ``down_state``."""
        e = self.endpoint
        return ProbeThresholds(e.success_threshold, e.failure_threshold, self.down_state)


@attrs.frozen
class TcpMetrics:
    """The kit's probe metrics plus ``kidecar_tcp_probe_up`` (1 reachable, 0 unreachable)."""

    probes: ProbeMetrics
    up: Any

    @classmethod
    def of(cls, metrics: Metrics) -> TcpMetrics:
        return cls(
            probes=ProbeMetrics.create(metrics, METRICS_PREFIX, "TCP probes", OUTCOMES),
            up=metrics.gauge(
                "kidecar_tcp_probe_up",
                "1 while the endpoint is reachable, 0 while unreachable (after the thresholds).",
                ["plugin", "endpoint"],
            ),
        )


Probe = Callable[[Endpoint, str], Awaitable[ProbeOutcome]]
"""One probe of an endpoint, reporting the given up state on success (:func:`probe_once`)."""


def endpoint_loop(
    target: Target,
    *,
    thresholds: ProbeThresholds,
    emit: Callable[[Result], None],
    metrics: TcpMetrics,
    clock: Clock = LOOP_CLOCK,
    probe: Probe = probe_once,
) -> ProbeLoop:
    """The kit's loop for one endpoint; each change of its state is emitted as a result."""
    up_gauge = metrics.up.labels(target.plugin, str(target.index))

    async def probe_target() -> ProbeOutcome:
        return await probe(target.endpoint, target.up_state)

    def on_change(change: ProbeChange) -> None:
        up_gauge.set(0 if change.failed else 1)
        emit(change_result(target, change))

    return ProbeLoop(
        plugin=target.plugin,
        index=target.index,
        target=target.endpoint.address,
        probe=probe_target,
        thresholds=thresholds,
        on_change=on_change,
        metrics=metrics.probes,
        clock=clock,
    )


def change_result(target: Target, change: ProbeChange) -> Result:
    """The result of one change of an endpoint's reachability, with its Events."""
    up = not change.failed
    events: tuple[Event, ...] = ()
    if not up:
        message = (
            f"tcp_probe endpoint {target.index} ({target.endpoint.address}) failed "
            f"{change.failures} times in a row: {change.outcome.reason}"
        )
        events = (Event("TcpProbeUnreachable", message, "Warning"),)
    elif change.previous == target.down_state:
        message = f"tcp_probe endpoint {target.index} is reachable again"
        events = (Event("TcpProbeReachable", message),)
    return Result(
        plugin=target.plugin,
        state=change.state,
        storage=target.endpoint.storage_config,
        source=target.source,
        kind=KIND,
        data={
            "endpoint": target.index,
            "address": target.endpoint.address,
            "up": up,
            "previous": change.previous,
            "reason": change.outcome.reason,
            "seconds": change.outcome.seconds,
        },
        events=events,
    )

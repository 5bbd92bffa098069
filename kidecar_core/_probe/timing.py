"""The timing fields of a probing plugin's config, shared so that every probe spells them alike.

Plugin configs inherit them: ``class MyProbeConfig(ProbeSchedule)`` for ``startDelaySeconds`` and
``probeIntervalSeconds``, ``class MyEndpoint(ProbeTiming)`` for ``timeout``, ``successThreshold``
and ``failureThreshold``.  The fields are keyword-only, so a subclass may put required fields of
its own first; a subclass may redefine a field to change its default (a TCP connect needs a
shorter ``timeout`` than an HTTP answer).
"""

from __future__ import annotations

import attrs

from kidecar_core._config.schema import field, non_negative, positive

MIN_PROBE_PERIOD = 0.1
"""Shortest time between the starts of two probes of one endpoint, in seconds.

``probeIntervalSeconds: 0`` (and anything below this) means "probe continuously": the next probe
starts as soon as the previous one ended, but never more often than every ``MIN_PROBE_PERIOD``,
so that a fast local game (or a refused connection) cannot make the sidecar spin a CPU core.
"""


@attrs.frozen(kw_only=True)
class ProbeSchedule:
    """When a plugin probes: after a start delay, then at a period (start to start)."""

    start_delay_seconds: float = field(
        key="startDelaySeconds",
        default=0.0,
        validator=non_negative,
        doc="Seconds to wait after the sidecar starts before the first probe (game boot time). "
        "Counted from the sidecar's start (its container's, as Kubernetes counts a probe's "
        "`initialDelaySeconds`), so kidecar's own start-up falls inside the delay; a plugin "
        "restarted after a failure probes at once.",
    )
    probe_interval_seconds: float = field(
        key="probeIntervalSeconds",
        default=5.0,
        validator=non_negative,
        doc="Period of the probes of each endpoint (start to start). `0` probes continuously: "
        f"each probe starts when the previous one ended, at most every {MIN_PROBE_PERIOD}s.",
    )

    @property
    def period(self) -> float:
        """The effective probe period of each endpoint, in seconds (≥ ``MIN_PROBE_PERIOD``)."""
        return max(self.probe_interval_seconds, MIN_PROBE_PERIOD)


@attrs.frozen(kw_only=True)
class ProbeTiming:
    """How long one probe of an endpoint may take, and how many in a row change its state.

    The thresholds are Kubernetes probes' (``successThreshold``, ``failureThreshold`` of a
    container probe), applied to a state instead of up/down: see
    :class:`~kidecar_core.ProbeThresholds`.
    """

    timeout: float = field(
        default=5.0,
        validator=positive,
        doc="Seconds a probe may take in all (connect, answer, body) before it counts as failed.",
    )
    success_threshold: int = field(
        key="successThreshold",
        default=1,
        validator=positive,
        doc="Consecutive probes that must answer a new state before it takes effect.",
    )
    failure_threshold: int = field(
        key="failureThreshold",
        default=3,
        validator=positive,
        doc="Consecutive failed probes after which the endpoint's state is the failed state "
        "(`Failed`, unless the plugin names it otherwise).",
    )

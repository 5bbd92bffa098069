"""One probe's loop, with kruise-daemon's worker semantics (``pkg/daemon/podprobe/worker.go``).

Every ``periodSeconds`` (at least 1) the worker *ticks*; a tick:

1. looks at the probe's container in the pod's status: not running (terminated, or waiting
   after it ran) is a ``Failed`` result at once, with Kruise's message ``Container(NAME) is
   Non-running``; not created yet (waiting for its first start, or not listed while other
   containers are): nothing happens;
2. skips the probe until the container has run ``initialDelaySeconds`` (at least 1), counted
   from its ``startedAt`` in the pod status, or from the worker's start when the pod status
   does not report containers (local mode);
3. runs the probe (with ``timeoutSeconds``, at least 1) and counts its result: the same result
   ``successThreshold`` (``failureThreshold``) times in a row makes it the probe's state;
   below its threshold, the previous state is kept.

The first tick is at once, the next ones a period apart, start to start.  The state machine
(:class:`Thresholds`, :meth:`ProbeWorker.tick`) takes the time from an injected wall clock and
the loop its period from a :class:`~kidecar_core.Clock`, so its timing is tested without
waiting.  (It is not the core's :class:`~kidecar_core.ProbeThresholds`: kruise-daemon reports
every result past its threshold, so a new message of the same state is written too, and a
stopped container fails at once.)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from kidecar_core import LOOP_CLOCK, Clock, every
from kidecar_plugins.pod_probe.outcome import FAILED, SUCCEEDED, Outcome, condition_message
from kidecar_plugins.pod_probe.spec import PodProbe

WallClock = Callable[[], float]
"""Wall-clock seconds since the epoch (``time.time``; a test's fake clock): container start
times in the pod status are wall-clock times.  The period is kept by a
:class:`~kidecar_core.Clock` (``ticker``)."""


@attrs.frozen
class Update:
    """A probe's new state, for its pod condition (Kruise's result manager entry)."""

    probe: PodProbe
    state: str
    message: str
    probe_time: float

    @property
    def status(self) -> str:
        """The condition status: ``True`` for ``Succeeded``, ``False`` for ``Failed``."""
        return "True" if self.state == SUCCEEDED else "False"


@attrs.define
class Thresholds:
    """kruise-daemon's ``lastResult``/``resultRun``: how many times in a row a result came."""

    success: int
    failure: int
    last: str | None = None
    run: int = 0

    def observe(self, state: str) -> bool:
        """Count one result; ``True`` when it reached its threshold and becomes the state."""
        if state == self.last:
            self.run += 1
        else:
            self.last, self.run = state, 1
        return self.run >= (self.success if state == SUCCEEDED else self.failure)


@attrs.frozen
class ContainerState:
    """What the pod status says of one container: ``listed`` in it, ``running`` since
    ``started_at`` (epoch seconds), or not running after having run (``stopped``)."""

    listed: bool
    running: bool = False
    started_at: float | None = None
    stopped: bool = False


def container_state(pod: Mapping[str, Any], name: str) -> ContainerState | None:
    """The container's state, ``None`` when the pod status reports no containers at all."""
    status = pod.get("status") or {}
    statuses = [
        *(status.get("containerStatuses") or []),
        *(status.get("initContainerStatuses") or []),
    ]
    if not statuses:
        return None
    for entry in statuses:
        if not isinstance(entry, Mapping) or entry.get("name") != name:
            continue
        state = entry.get("state") or {}
        if "running" in state:
            started = _epoch((state.get("running") or {}).get("startedAt"))
            return ContainerState(True, running=True, started_at=started)
        ran = bool(entry.get("restartCount")) or "terminated" in (entry.get("lastState") or {})
        return ContainerState(True, stopped="terminated" in state or ran)
    return ContainerState(False)


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


Prober = Callable[[PodProbe, Mapping[str, Any]], Awaitable[Outcome]]
"""Runs one probe against the pod (``(probe, pod) -> outcome``); never raises for the target's
errors."""


class ProbeWorker:
    """Ticks one probe and reports each state it reaches (``report``)."""

    def __init__(
        self,
        probe: PodProbe,
        *,
        pod: Callable[[], Mapping[str, Any]],
        prober: Prober,
        report: Callable[[Update], None],
        clock: WallClock = time.time,
        ticker: Clock = LOOP_CLOCK,
        observe: Callable[[PodProbe, Outcome, float], None] | None = None,
    ) -> None:
        self.probe = probe
        self._pod = pod
        self._prober = prober
        self._report = report
        self._clock = clock
        self._observe = observe
        self._ticker = ticker
        self.started = clock()
        timing = probe.timing
        self.thresholds = Thresholds(
            timing.effective_success_threshold, timing.effective_failure_threshold
        )

    async def run(self) -> None:
        """Tick every period until cancelled, the first tick at once."""
        await every(self.probe.timing.effective_period, self.tick, clock=self._ticker)

    async def tick(self) -> None:
        """One tick of kruise-daemon's worker (``doProbe``)."""
        pod = self._pod()
        container = container_state(pod, self.probe.container_name)
        if container is not None and not container.running:
            if container.stopped:
                name = self.probe.container_name
                self._emit(FAILED, f"Container({name}) is Non-running", self._clock())
            return
        since = container.started_at if container and container.started_at else self.started
        if self._clock() - since < self.probe.timing.effective_initial_delay:
            return
        begun = self._clock()
        outcome = await self._prober(self.probe, pod)
        now = self._clock()
        if self._observe is not None:
            self._observe(self.probe, outcome, now - begun)
        if self.thresholds.observe(outcome.state):
            self._emit(outcome.state, condition_message(outcome.output), now)

    def _emit(self, state: str, message: str, at: float) -> None:
        self._report(Update(self.probe, state, message, at))

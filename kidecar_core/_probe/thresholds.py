"""The threshold machine of one endpoint: from probe outcomes to its *effective* state.

Kubernetes-probe semantics (``successThreshold``/``failureThreshold`` of a container probe),
extended from up/down to "which state":

* a state takes effect after ``success_threshold`` consecutive probes answered it, so a single odd
  answer never flips the GameServer; the first state is reached the same way;
* after ``failure_threshold`` consecutive failed probes the effective state is ``failed_state``
  (:data:`PROBE_FAILED`, ``Failed``, unless the plugin names it: tcp_probe's ``Unreachable``);
* a failure breaks a streak of successes and a success breaks a streak of failures, so an
  endpoint that alternates never reaches either threshold and keeps its effective state.

Plain data, no I/O and no clock: a plugin keeps one per endpoint across its restarts, so that a
restarted plugin does not announce a state that did not change.
"""

from __future__ import annotations

import attrs

PROBE_FAILED = "Failed"
"""The default effective state of an endpoint whose probes failed ``failureThreshold`` times."""


@attrs.define
class ProbeThresholds:
    """Consecutive-outcome counting for one endpoint.

    ``effective`` is ``None`` until a state first takes effect.  ``candidate`` is the state being
    confirmed and ``successes`` how many probes in a row answered it; ``failures`` counts the
    current streak of failed probes (capped at ``failure_threshold``).
    """

    success_threshold: int
    failure_threshold: int
    failed_state: str = PROBE_FAILED
    effective: str | None = None
    candidate: str | None = None
    successes: int = 0
    failures: int = 0

    def success(self, state: str) -> str | None:
        """Record a probe that answered ``state``; return the new effective state if it changed."""
        self.failures = 0
        if state == self.effective:
            self.candidate, self.successes = None, 0
            return None
        if state == self.candidate:
            self.successes += 1
        else:
            self.candidate, self.successes = state, 1
        if self.successes < self.success_threshold:
            return None
        self.effective, self.candidate, self.successes = state, None, 0
        return state

    def failure(self) -> str | None:
        """Record a failed probe; return ``failed_state`` when the endpoint just became failed."""
        self.candidate, self.successes = None, 0
        self.failures = min(self.failures + 1, self.failure_threshold)
        if self.failures < self.failure_threshold or self.effective == self.failed_state:
            return None
        self.effective = self.failed_state
        return self.failed_state

    @property
    def failed(self) -> bool:
        """Whether the effective state is the failed state."""
        return self.effective == self.failed_state

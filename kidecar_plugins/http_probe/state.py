"""The per-endpoint threshold state machine: from probe outcomes to the *effective* state.

Kubernetes-probe semantics, extended from "up/down" to "which state":

* a state takes effect after ``successThreshold`` consecutive probes answered it (a single odd
  answer never flips the GameServer);
* after ``failureThreshold`` consecutive failed probes the effective state is :data:`FAILED`
  (which a marker policy may match);
* a failure breaks a streak of successes and a success breaks a streak of failures, so an
  endpoint that alternates never reaches either threshold and keeps its effective state.

The machine is plain data (no I/O, no clock): the plugin keeps one per endpoint across restarts.
"""

from __future__ import annotations

import attrs

FAILED = "Failed"
"""The effective state of an endpoint whose probes failed ``failureThreshold`` times in a row."""


@attrs.define
class Thresholds:
    """Consecutive-outcome counting for one endpoint.

    ``effective`` is ``None`` until a state first takes effect.  ``candidate`` is the state being
    confirmed and ``successes`` how many probes in a row answered it.
    """

    success_threshold: int
    failure_threshold: int
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
        """Record a failed probe; return :data:`FAILED` when the endpoint just became failed."""
        self.candidate, self.successes = None, 0
        self.failures += 1
        if self.failures < self.failure_threshold or self.effective == FAILED:
            return None
        self.effective = FAILED
        return FAILED

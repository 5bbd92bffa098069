"""Up/down with Kubernetes-probe thresholds: from probe outcomes to the *effective* state.

* The endpoint becomes reachable after ``successThreshold`` consecutive successful probes and
  unreachable after ``failureThreshold`` consecutive failed ones; one odd probe never flips it.
* The first effective state is reached the same way (there is no "assumed up" at start), so
  ``failureThreshold x probeIntervalSeconds`` is also the grace a booting game gets beyond
  ``startDelaySeconds``.
* A success breaks a streak of failures and vice versa, so an endpoint that alternates keeps
  its effective state.

Plain data, no I/O and no clock: the plugin keeps one per endpoint across its restarts, so a
restarted plugin does not announce a state that did not change.
"""

from __future__ import annotations

import attrs


@attrs.define
class UpDown:
    """Consecutive-outcome counting for one endpoint; ``up`` is ``None`` until first known."""

    success_threshold: int
    failure_threshold: int
    up: bool | None = None
    successes: int = 0
    failures: int = 0

    def observe(self, ok: bool) -> bool | None:
        """Record one probe; return the new effective value when it changed, else ``None``."""
        if ok:
            self.failures = 0
            self.successes = min(self.successes + 1, self.success_threshold)
            if self.up is not True and self.successes >= self.success_threshold:
                self.up = True
                return True
        else:
            self.successes = 0
            self.failures = min(self.failures + 1, self.failure_threshold)
            if self.up is not False and self.failures >= self.failure_threshold:
                self.up = False
                return False
        return None

"""The ``rollout`` section of hot_update's config: how this pod follows ``kidecar rollout``."""

from __future__ import annotations

import attrs

from kidecar_core import field, non_negative, positive


@attrs.frozen
class RolloutFollowConfig:
    """Follow ``kidecar rollout`` for this pod's workload (GameServerSet, StatefulSet or
    Deployment): the desired version in the ConfigMap ``kidecar-rollout`` of the pod's namespace
    is applied with hot_update's own update, at most ``maxUnavailable`` pods at a time."""

    enabled: bool = field(
        default=True,
        doc="Follow rollouts. With `false` the Role needs no Lease rules and the sidecar makes "
        "no rollout requests.",
    )
    poll_seconds: float = field(
        key="pollSeconds",
        default=10.0,
        validator=positive,
        doc="How often the rollout ConfigMap is read: the only request while nothing rolls "
        "(a rollout starts on a pod within this time). A pod that takes a slot reads it again "
        "first, so a pause holds at once. The API cost is measured in docs/benchmarks.md.",
    )
    retry_seconds: float = field(
        key="retrySeconds",
        default=2.0,
        validator=positive,
        doc="While this pod waits to update: how often it tries a slot, and reads its "
        "GameServer under `--when idle` (jittered by ±50%).",
    )
    verify_seconds: float = field(
        key="verifySeconds",
        default=30.0,
        validator=non_negative,
        doc="After an update, how long this pod keeps its slot and watches its probes: a probe "
        "result in `failedStates` within the window rolls the pod back to the version it had "
        "and pauses the rollout. Longer than the probe's `failureThreshold` x period.",
    )
    failed_states: tuple[str, ...] = field(
        key="failedStates",
        factory=lambda: ("Failed",),
        doc="Probe states that count as a failed update (http_probe's state after "
        "`failureThreshold` failures is `Failed`).",
    )
    probe_plugins: tuple[str, ...] = field(
        key="probePlugins",
        factory=tuple,
        doc="Plugins whose results are watched (e.g. `[http_probe]`); empty: every plugin but "
        "hot_update itself.",
    )
    lease_seconds: int = field(
        key="leaseSeconds",
        default=60,
        validator=positive,
        doc="Duration of a slot's Lease, renewed every third of it while held. A slot whose "
        "Lease has not changed for this long (its pod died) is taken over.",
    )

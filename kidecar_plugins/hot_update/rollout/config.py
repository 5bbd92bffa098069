"""The ``rollout`` section of hot_update's config: how this pod follows ``kidecar rollout``."""

from __future__ import annotations

from typing import Any

import attrs

from kidecar_core import field, non_negative

MIN_PERIOD_SECONDS = 1.0
"""The shortest ``pollSeconds`` and ``retrySeconds``: every pod of the fleet makes a request
each period (while polling, or waiting for a slot), so a period of a millisecond is a thousand
requests per second per pod."""
MAX_LEASE_SECONDS = 2**31 - 1
"""A Lease's ``spec.leaseDurationSeconds`` is an int32: the API server refuses more."""


def at_least_a_second(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    """attrs validator: ``value >= MIN_PERIOD_SECONDS``."""
    if value < MIN_PERIOD_SECONDS:
        raise ValueError(
            f"must be >= {MIN_PERIOD_SECONDS:g}, got {value:g} (each period is a request by "
            "every pod of the fleet)",
            attribute,
        )


def lease_duration(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    """attrs validator: a Lease duration the API server accepts (1 to 2^31-1 seconds)."""
    if not 0 < value <= MAX_LEASE_SECONDS:
        raise ValueError(f"must be between 1 and {MAX_LEASE_SECONDS} (an int32), got {value}",
                         attribute)  # fmt: skip


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
        validator=at_least_a_second,
        doc="The rollout ConfigMap is watched (a new rollout reaches the pod at once; at rest "
        "one request per 30-60 minutes). Only when the Role does not allow `watch` on "
        "`kidecar-rollout` (a Role older than this kidecar: one warning names the missing "
        "rule) is it read every `pollSeconds` instead (at least 1), the watch tried again every "
        "10 minutes. A pod that takes a slot reads it again first, so a pause holds at once. "
        "The API cost is measured in docs/benchmarks.md.",
    )
    retry_seconds: float = field(
        key="retrySeconds",
        default=2.0,
        validator=at_least_a_second,
        doc="While this pod waits for a slot: how often it tries one (after 0.75-1.5x this, "
        "backing off to 3-6x while the slots stay busy; at least 1). Under `--when idle` the "
        "GameServer is watched (it updates as soon as it is released); only when it cannot be "
        "watched is it read this often (±50%).",
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
        validator=lease_duration,
        doc="Duration of a slot's Lease, renewed every third of it while held. A slot whose "
        "Lease has not changed for this long (its pod died) is taken over. 1 to 2147483647 (a "
        "Lease's int32).",
    )

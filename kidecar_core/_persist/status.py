"""How writing an object goes, as ``/readyz`` reports it."""

from __future__ import annotations

import enum


class ObjectStatus(enum.StrEnum):
    """The status of one object kidecar writes (the applier keeps one per object)."""

    OK = "ok"
    """Written, or nothing to write."""
    WAITING = "waiting"
    """The object does not exist yet (a GameServer is created after its pod)."""
    DEGRADED = "degraded"
    """Writes fail for now (API server away, 5xx, conflicts); retried with backoff."""
    FORBIDDEN = "forbidden"
    """RBAC denies the write; ``/readyz`` fails until the Role is fixed."""

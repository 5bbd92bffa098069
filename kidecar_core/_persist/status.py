"""How writing an object goes, as ``/readyz`` reports it."""

from __future__ import annotations

import enum


class ObjectStatus(enum.StrEnum):
    """The status of one object kidecar writes (the applier keeps one per object)."""

    OK = "ok"
    """Written, or nothing to write."""
    WAITING = "waiting"
    """The object does not exist yet (a GameServer is created after its pod)."""
    MISSING = "missing"
    """The object still does not exist after a while (``missing_timeout``), or its type is not
    served: the writes cannot land (logged once, an Event); written if it ever appears."""
    DEGRADED = "degraded"
    """Writes fail for now (API server away, 5xx, conflicts); retried with backoff."""
    FORBIDDEN = "forbidden"
    """RBAC denies the write; ``/readyz`` fails until the Role is fixed."""

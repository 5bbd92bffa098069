"""Read the API server's audit log (`TestCluster(audit=True)`): who wrote what, and when.

The log has one JSON object per line (an `audit.k8s.io/v1` Event) for every write request, at
stage ResponseComplete (see `tests.support.apiserver.AUDIT_POLICY`). Writes to GameServers
and Pods also carry the object the write produced (`responseObject`), which is how a revert is
told from a repair.

`AuditLog.mark()` returns the log's current end; counting `since=` a mark looks only at the
requests made after it, which is how a test measures a window (e.g. steady state).

This module deliberately does not import pytest: benchmark scripts may use it too.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.apiserver import WRITE_VERBS


@dataclass(frozen=True)
class AuditEvent:
    """One request of the audit log.

    `user`: the authenticated user name (`system:serviceaccount:<ns>:<name>` for a
    ServiceAccount); `resource`: plural resource name with `/subresource` when there is one
    (`gameservers`, `gameservers/status`, `pods/status`); `time`: when the response was complete
    (UTC); `code`: HTTP status; `obj`: the resulting object where the policy records it.
    """

    user: str
    verb: str
    resource: str
    namespace: str
    name: str
    code: int
    time: datetime.datetime
    obj: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        """Whether the request changed (or could have changed) the object: a 2xx answer."""
        return 200 <= self.code < 300

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEvent:
        """Build one from a decoded audit Event."""
        ref = data.get("objectRef") or {}
        resource = str(ref.get("resource", ""))
        if ref.get("subresource"):
            resource += "/" + str(ref["subresource"])
        obj = data.get("responseObject")
        return cls(
            user=str((data.get("user") or {}).get("username", "")),
            verb=str(data.get("verb", "")),
            resource=resource,
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            code=int((data.get("responseStatus") or {}).get("code", 0)),
            time=_parse_time(str(data.get("stageTimestamp", ""))),
            obj=obj if isinstance(obj, dict) and obj.get("kind") != "Status" else None,
        )


def _parse_time(text: str) -> datetime.datetime:
    """RFC 3339 with microseconds, as the API server writes `stageTimestamp`."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class AuditLog:
    """The audit log file of a test cluster (it may not exist yet: then it is empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The current end of the log (a byte offset) to count from later with `since=`."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, since: int = 0) -> Iterator[AuditEvent]:
        """The requests logged after `since` (a `mark()`), oldest first. A line still being
        written (no newline yet) is left for the next call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(since)
                for line in f:
                    if line.endswith(b"\n"):
                        yield AuditEvent.from_json(json.loads(line))
        except FileNotFoundError:
            return

    def writes(
        self, since: int = 0, *, namespace: str | None = None, succeeded_only: bool = True
    ) -> list[AuditEvent]:
        """The write requests (create/update/patch/delete) after `since`, optionally only those
        in `namespace`, by default only those that succeeded."""
        return [
            e
            for e in self.events(since)
            if e.verb in WRITE_VERBS
            and (namespace is None or e.namespace == namespace)
            and (e.succeeded or not succeeded_only)
        ]

    def count_writes(
        self, since: int = 0, *, namespace: str | None = None
    ) -> Counter[tuple[str, str]]:
        """Successful writes after `since` per `(user, resource)`, e.g.
        `{("system:serviceaccount:kruise-game-system:kruise-game-controller-manager",
        "gameservers/status"): 3}`."""
        return Counter((e.user, e.resource) for e in self.writes(since, namespace=namespace))

    def writes_by(self, user: str, since: int = 0, *, namespace: str | None = None) -> int:
        """How many successful writes `user` made after `since`."""
        return sum(1 for e in self.writes(since, namespace=namespace) if e.user == user)

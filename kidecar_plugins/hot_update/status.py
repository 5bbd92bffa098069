"""What ``GET /hot-update`` shows: the applied version, the last result, the update running.

The JSON shape is the ``HotUpdateStatus`` schema of ``openapi.yaml``.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from kidecar_plugins.hot_update.record import Applied


class UpdateOutcome(enum.StrEnum):
    """The ``status`` of a ``lastResult`` (and of the ``kind: hot-update`` result's data)."""

    SUCCESS = "success"
    FAILED = "failed"


@attrs.frozen
class LastResult:
    """How the last update ended: ``code`` is its HTTP status, ``at`` an RFC 3339 UTC time."""

    version: str
    status: UpdateOutcome
    code: int
    message: str
    at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "status": str(self.status),
            "code": self.code,
            "message": self.message,
            "at": self.at,
        }


@attrs.frozen
class InProgress:
    """The update running now; ``url`` is redacted, ``trigger`` is ``api``, ``replay``, ..."""

    version: str
    url: str
    trigger: str
    since: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "trigger": self.trigger,
            "since": self.since,
        }


@attrs.define
class UpdateStatus:
    """The plugin's status; :meth:`to_json` is the body of ``GET /hot-update``."""

    current: Applied | None = None
    last: LastResult | None = None
    in_progress: InProgress | None = None

    def to_json(self) -> dict[str, Any]:
        cur = self.current
        return {
            "version": cur.version if cur else None,
            "url": cur.url if cur else None,  # stored redacted
            "sha256": cur.sha256 if cur else None,
            "file": cur.file if cur else None,
            "updatedAt": cur.updated_at if cur else None,
            "lastResult": self.last.to_json() if self.last else None,
            "inProgress": self.in_progress.to_json() if self.in_progress else None,
        }

    def busy_message(self, wait_for_process_seconds: float) -> str:
        """The 409 message while :attr:`in_progress` runs."""
        what = self.in_progress
        version = what.version if what else None
        if what is not None and what.trigger == "replay":
            return (
                f"busy: re-applying {version} after a restart (waiting up to "
                f"{wait_for_process_seconds:g}s for the game); try again later"
            )
        return f"busy: the update to {version} is in progress; try again later"

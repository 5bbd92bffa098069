"""Why a game API request was refused, with the HTTP status it is answered with."""

from __future__ import annotations

from typing import Any

from aiohttp import web

REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    413: "request too large",
    415: "unsupported media type",
    503: "unavailable",
}
"""HTTP status → the short ``reason`` of the answer (and the ``code`` label of the metric)."""


class ApiError(Exception):
    """A refused request: ``status`` (a key of :data:`REASONS`) and a ``message`` for the game's
    developer that says what was wrong and what to do."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def reason(self) -> str:
        return REASONS.get(self.status, "error")

    def response(self) -> web.Response:
        """``{"status": "error", "code", "reason", "message"}`` with the status; 401 adds
        ``WWW-Authenticate``, 503 ``Retry-After``."""
        headers: dict[str, str] = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="kidecar"'
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        body: dict[str, Any] = {
            "status": "error",
            "code": self.status,
            "reason": self.reason,
            "message": self.message,
        }
        return web.json_response(body, status=self.status, headers=headers)

"""Why an update did not happen, with the HTTP status the API answers for it."""

from __future__ import annotations

from kidecar_core import redact_text

RESULT_LABELS = {
    200: "success",
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    408: "bad_request",
    409: "busy",
    413: "too_large",
    422: "checksum_mismatch",
    500: "error",
    502: "download_failed",
    503: "notify_failed",
}
"""HTTP status → the ``result`` label of the ``kidecar_hot_update_updates_total`` metric."""


class UpdateError(Exception):
    """An update that was refused or failed.

    ``status`` is the HTTP status of the answer, ``reason`` the short text of the pod annotation
    (``v2: Update failed: <reason>``), ``message`` the full explanation for the caller and logs.
    Both are redacted (:func:`kidecar_core.redact_text`): they go to the API answer, the log,
    the Event and the pod annotation, and may quote a URL (an error text of aiohttp does).
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        message = redact_text(message)
        super().__init__(message)
        self.status = status
        self.reason = redact_text(reason)
        self.message = message

    @property
    def label(self) -> str:
        """The ``result`` label of the updates metric for this error (:data:`RESULT_LABELS`)."""
        return RESULT_LABELS.get(self.status, "error")

    def with_message(self, message: str) -> UpdateError:
        """A copy of this error (same class, status and reason) saying ``message`` instead."""
        copy = UpdateError.__new__(type(self))
        UpdateError.__init__(copy, self.status, self.reason, message)
        return copy


class BadRequest(UpdateError):
    """400: the request (or its URL) is not a valid update."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(400, reason, message)


class Unauthorized(UpdateError):
    """401: no bearer token, or not one of the ``Bearer`` scheme."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message)


class Forbidden(UpdateError):
    """403: refused for who asks (a wrong bearer token) or for what is asked (a URL)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(403, reason, message)


class UrlNotAllowed(Forbidden):
    """403 ``url not allowed``: not http(s), not under ``allowedUrlPrefixes``, or a refused
    address (link-local, metadata service) without ``allowLinkLocal``."""

    def __init__(self, message: str) -> None:
        super().__init__("url not allowed", message)


class RequestTimeout(UpdateError):
    """408: the request body did not arrive in time."""

    def __init__(self, message: str) -> None:
        super().__init__(408, "request timeout", message)


class Busy(UpdateError):
    """409: another update is in progress."""

    def __init__(self, message: str) -> None:
        super().__init__(409, "busy", message)


class TooLarge(UpdateError):
    """413: the request body or the download is larger than allowed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(413, reason, message)


class ChecksumMismatch(UpdateError):
    """422: the downloaded file does not have the requested sha256."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(422, reason, message)


class DownloadFailed(UpdateError):
    """502: the download did not complete (connection, HTTP status, timeout)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(502, reason, message)


class NotifyFailed(UpdateError):
    """503 (the game is not there or did not take it) or 500: notifying the game failed."""

    def __init__(self, reason: str, message: str, status: int = 503) -> None:
        super().__init__(status, reason, message)


class NotRunning(UpdateError):
    """503: the plugin is stopping or restarting; the update is refused or cancelled."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(503, reason, message)


class InternalError(UpdateError):
    """500: a failure that is not the caller's (a bug, an unreadable file)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(500, reason, message)

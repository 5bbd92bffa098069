"""Logging: one line per event, JSON (default in a pod) or text.  Never log secrets.

Every line passes :func:`kidecar_core.redact.redact_text` in the formatter, so a URL with
credentials or a bearer token never reaches the log, whoever logged it. What clients get wrong
(a malformed HTTP request, a missing token) is logged on one line, without a traceback, and at
most ``burst`` times per minute per kind (:class:`LogBudget`): a client that repeats it cannot
flood the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp.http_exceptions import HttpProcessingError

from kidecar_core.redact import redact_text

LogFormat = Literal["text", "json"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """``12:00:00 INFO    kidecar: message``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class LogBudget:
    """At most ``burst`` log lines per ``per`` seconds for one kind of line.

    :meth:`allow` says whether to log now and how many lines were held back since the last one
    logged (to say so in it). The clock is injectable for tests.
    """

    def __init__(
        self, burst: int = 10, per: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per = per
        self._clock = clock
        self._times: list[float] = []
        self.suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """(log this line?, lines suppressed since the last one logged)."""
        now = self._clock()
        self._times = [t for t in self._times if now - t < self.per]
        if len(self._times) >= self.burst:
            self.suppressed += 1
            return False, 0
        self._times.append(now)
        held, self.suppressed = self.suppressed, 0
        return True, held


class ClientErrorFilter(logging.Filter):
    """For the ``aiohttp.server`` logger: a malformed request is the client's mistake.

    aiohttp logs it as ERROR with a traceback; this turns it into one WARNING line without the
    traceback, within a :class:`LogBudget`. Errors of kidecar's own handlers keep their
    traceback (they are bugs).
    """

    def __init__(self, budget: LogBudget | None = None) -> None:
        super().__init__()
        self.budget = budget or LogBudget()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        allowed, held = self.budget.allow()
        if not allowed:
            return False
        message = getattr(error, "message", "") or str(error)
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
        more = f" ({held} more since the last one not logged)" if held else ""
        record.msg = "malformed HTTP request from %s: %s%s"
        first = message.splitlines()[0][:200] if message else type(error).__name__
        record.args = (peer, first, more)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def default_format(env: Mapping[str, str]) -> LogFormat:
    """JSON in a pod (where logs are collected), text on a terminal."""
    return "json" if env.get("KUBERNETES_SERVICE_HOST") else "text"


def setup(fmt: LogFormat, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The kubernetes client and aiohttp are chatty at INFO; their errors reach us as exceptions.
    for noisy in ("urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, ClientErrorFilter)]
    server.addFilter(ClientErrorFilter())

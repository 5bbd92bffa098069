"""Configuration of the ``http_probe`` plugin (``plugins[].config``).

Go-compatible keys first (``startDelaySeconds``, ``probeIntervalSeconds``, ``endpoints[]`` with
``url``, ``method``, ``timeout``, ``expectedStatusCode``, ``jsonPathConfig``, ``storageConfig``),
plus Kubernetes-probe style ``successThreshold``/``failureThreshold`` and a few safety limits.
Keys match case-insensitively, so the Go version's spellings load unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import attrs
from yarl import URL

from kidecar_core import FieldError, StorageConfig, field, non_negative, positive
from kidecar_plugins.http_probe.extract import StatePath, compile_path

MIN_PERIOD = 0.1
"""Shortest time between the starts of two probes of one endpoint, in seconds.

``probeIntervalSeconds: 0`` (and anything below this) means "probe continuously": the next probe
starts as soon as the previous one ended, but never more often than every ``MIN_PERIOD``, so a
fast local game cannot make the sidecar burn a CPU core on probing.
"""

DEFAULT_MAX_BODY = 1024 * 1024

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


# attrs validators (instance, attribute, value): the config loader runs them one by one, so that
# every bad value is reported at once.


def _check_path(_: object, __: object, text: str) -> None:
    try:
        compile_path(text)
    except ValueError as e:
        raise FieldError("jsonPath", str(e)) from None


def _check_status(_: object, __: object, code: int) -> None:
    if not 100 <= code <= 599:
        raise FieldError("expectedStatusCode", "must be an HTTP status code (100-599)")


def _check_headers(_: object, __: object, headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise FieldError(f"headers.{name}", "is not a valid HTTP header name")
        if "\r" in value or "\n" in value or "\0" in value:
            raise FieldError(f"headers.{name}", "must not contain line breaks or NUL")


def _check_url(_: object, __: object, url: str) -> None:
    try:
        parsed = URL(url)
    except ValueError as e:
        raise FieldError("url", f"{url!r} is not a valid URL: {e}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FieldError("url", f"{url!r}: expected http://HOST[:PORT]/PATH or https://...")


@attrs.frozen
class JsonPathConfig:
    """Where the state is in a JSON answer."""

    json_path: str = field(
        key="jsonPath",
        validator=_check_path,
        doc="gjson-style path (`data.state`, `players.#` for a count) or a JSONPath starting "
        "with `$` (`$.data.state`). The value found, stringified (`3`, `2.5`, `true`, `null`, "
        "compact JSON for objects), is the state; a missing path is a failed probe.",
    )

    def compile(self) -> StatePath:
        """The compiled path (valid: it was checked when the config was loaded)."""
        return compile_path(self.json_path)


@attrs.frozen
class Endpoint:
    """One HTTP endpoint of the game that tells its state."""

    url: str = field(
        validator=_check_url,
        doc="`http://` or `https://` URL of the game's state endpoint.",
    )
    method: Method = field(default="GET", doc="HTTP method.")
    headers: Mapping[str, str] = field(
        factory=dict, validator=_check_headers, doc="Request headers."
    )
    body: str | None = field(
        default=None, doc="Request body, sent as UTF-8 (usually with POST or PUT)."
    )
    timeout: float = field(
        default=5.0,
        validator=positive,
        doc="Seconds a probe may take in all (connect, answer, body) before it counts as failed.",
    )
    expected_status_code: int = field(
        key="expectedStatusCode",
        default=200,
        validator=_check_status,
        doc="The status code of a successful probe.",
    )
    success_threshold: int = field(
        key="successThreshold",
        default=1,
        validator=positive,
        doc="Consecutive probes that must answer a new state before it takes effect.",
    )
    failure_threshold: int = field(
        key="failureThreshold",
        default=3,
        validator=positive,
        doc="Consecutive failed probes (error, timeout, unexpected status, body without the "
        "state) after which the state is `Failed`.",
    )
    json_path_config: JsonPathConfig | None = field(
        key="jsonPathConfig",
        default=None,
        doc="Take the state from a JSON answer; without it the state is the trimmed body.",
    )
    max_body_bytes: int = field(
        key="maxBodyBytes",
        default=DEFAULT_MAX_BODY,
        validator=positive,
        doc="Largest answer read; a longer one is a failed probe.",
    )
    storage_config: StorageConfig | None = field(
        key="storageConfig",
        default=None,
        doc="Where the state goes (`InKube`: pod labels/annotations, GameServer opsState via "
        "`markerPolicies`; `HTTPMetric`: a Prometheus gauge).",
    )


@attrs.frozen
class HttpProbeConfig:
    """Poll the game's HTTP state endpoints and record the state (GameServer opsState, ...)."""

    endpoints: tuple[Endpoint, ...] = field(doc="The endpoints to probe, each on its own.")
    start_delay_seconds: float = field(
        key="startDelaySeconds",
        default=0.0,
        validator=non_negative,
        doc="Seconds to wait after the sidecar starts before the first probe (game boot time).",
    )
    probe_interval_seconds: float = field(
        key="probeIntervalSeconds",
        default=5.0,
        validator=non_negative,
        doc="Period of the probes of each endpoint (start to start). `0` probes continuously: "
        f"each probe starts when the previous one ended, at most every {MIN_PERIOD}s.",
    )

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise FieldError("endpoints", "must list at least one endpoint")

    @property
    def period(self) -> float:
        """The effective probe period of each endpoint, in seconds."""
        return max(self.probe_interval_seconds, MIN_PERIOD)

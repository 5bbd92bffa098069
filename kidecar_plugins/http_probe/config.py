"""Configuration of the ``http_probe`` plugin (``plugins[].config``).

Go-compatible keys first (``startDelaySeconds``, ``probeIntervalSeconds``, ``endpoints[]`` with
``url``, ``method``, ``timeout``, ``expectedStatusCode``, ``jsonPathConfig``, ``storageConfig``),
plus Kubernetes-probe style ``successThreshold``/``failureThreshold`` (the probe kit's timing
fields), redirects and TLS the way kubelet handles them, and a few safety limits.  Keys match
case-insensitively, so the Go version's spellings load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs
from yarl import URL

from kidecar_core import (
    MIN_PROBE_PERIOD,
    FieldError,
    ProbeSchedule,
    ProbeTiming,
    StorageConfig,
    field,
    http_headers,
    positive,
)
from kidecar_plugins.http_probe.extract import StatePath, compile_path
from kidecar_plugins.http_probe.status import StatusCodes, StatusSpec, parse_status_codes

MIN_PERIOD = MIN_PROBE_PERIOD
"""Shortest time between the starts of two probes of one endpoint (the probe kit's)."""

DEFAULT_MAX_BODY = 1024 * 1024

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
Redirects = Literal["SameHost", "Always", "Never"]

# attrs validators (instance, attribute, value): the config loader runs them one by one, so that
# every bad value is reported at once.


def _check_path(_: object, __: object, text: str) -> None:
    try:
        compile_path(text)
    except ValueError as e:
        raise FieldError("jsonPath", str(e)) from None


def _check_status(_: object, __: object, spec: StatusSpec) -> None:
    try:
        parse_status_codes(spec)
    except ValueError as e:
        raise FieldError("expectedStatusCode", str(e)) from None


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
class Endpoint(ProbeTiming):
    """One HTTP endpoint of the game that tells its state."""

    url: str = field(
        validator=_check_url,
        doc="`http://` or `https://` URL of the game's state endpoint.",
    )
    method: Method = field(default="GET", doc="HTTP method.")
    headers: Mapping[str, str] = field(factory=dict, validator=http_headers, doc="Request headers.")
    body: str | None = field(
        default=None, doc="Request body, sent as UTF-8 (usually with POST or PUT)."
    )
    expected_status_code: int | str | tuple[int | str, ...] = field(
        key="expectedStatusCode",
        default=200,
        validator=_check_status,
        doc="The status codes whose answer holds the state: a code (`200`), a range "
        "(`200-399`, kubelet's success rule) or a list of both (`[200, 503]`). Any other "
        "status is a failed probe. List a non-2xx status to read a state from it: a draining "
        'game answering `503` with `{"state": "draining"}`; such an answer whose body holds '
        "no state is a failed probe, like any other.",
    )
    follow_redirects: Redirects | None = field(
        key="followRedirects",
        default=None,
        doc="`SameHost` (the default): follow redirects (at most 10) while they stay on the "
        "URL's host name (any port), kubelet's rule (`RedirectChecker`, kubernetes/kubernetes "
        "`pkg/probe/http/http.go`); a redirect elsewhere is not followed and its 3xx answer is "
        "what `expectedStatusCode` is checked against. `Always`: follow them anywhere "
        "(`Authorization` and `Cookie` headers are dropped when the host changes). `Never`: the "
        "first answer counts. When a 3xx is expected (`expectedStatusCode: 301`, or a range "
        "that includes 3xx such as `200-399`) redirects are never followed: the 3xx answer is "
        "read.",
    )
    insecure_skip_verify: bool = field(
        key="insecureSkipVerify",
        default=False,
        doc="HTTPS: accept any server certificate (what kubelet does for its HTTPS probes). "
        "Off by default: the state decides whether the server may be deleted, so kidecar "
        "verifies the certificate like the Go version did; prefer `caFile` for a self-signed one.",
    )
    ca_file: str | None = field(
        key="caFile",
        default=None,
        doc="HTTPS: PEM file of the CA certificate(s) that signed the game's certificate, "
        "trusted instead of the system's. Read when the sidecar starts (a missing or invalid "
        "file stops it with exit code 2).",
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

    def __attrs_post_init__(self) -> None:
        if self.insecure_skip_verify and self.ca_file is not None:
            raise FieldError(
                "caFile", "is not used with insecureSkipVerify: true; keep one of the two"
            )
        if self.follow_redirects in ("SameHost", "Always") and self.statuses.expects_redirect:
            raise FieldError(
                "followRedirects",
                f"expectedStatusCode {self.statuses} expects a redirect, so redirects are never "
                "followed; leave followRedirects out (or set Never)",
            )

    @property
    def statuses(self) -> StatusCodes:
        """The parsed ``expectedStatusCode`` (valid: it was checked when the config was loaded)."""
        return parse_status_codes(self.expected_status_code)

    @property
    def redirects(self) -> Redirects:
        """The effective redirect policy: ``Never`` when a 3xx is expected, else as configured."""
        if self.statuses.expects_redirect:
            return "Never"
        return self.follow_redirects or "SameHost"


@attrs.frozen
class HttpProbeConfig(ProbeSchedule):
    """Poll the game's HTTP state endpoints and record the state (GameServer opsState, ...)."""

    endpoints: tuple[Endpoint, ...] = field(doc="The endpoints to probe, each on its own.")

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise FieldError("endpoints", "must list at least one endpoint")

"""Configuration of the ``tcp_probe`` plugin (``plugins[].config``).

The shape follows kidecar's ``http_probe``: the timing fields are kidecar's probe kit
(``startDelaySeconds`` and ``probeIntervalSeconds`` from :class:`~kidecar_core.ProbeSchedule`,
each endpoint's ``timeout``, ``successThreshold`` and ``failureThreshold`` from
:class:`~kidecar_core.ProbeTiming`), so a team that knows one knows the other.  Keys match
case-insensitively.
"""

from __future__ import annotations

import re

import attrs
from kidecar_core import (
    MIN_PROBE_PERIOD,
    FieldError,
    ProbeSchedule,
    ProbeTiming,
    StorageConfig,
    field,
    non_empty,
    positive,
)

MIN_PERIOD = MIN_PROBE_PERIOD
"""Shortest time between the starts of two probes of one endpoint (kidecar's probe kit's)."""

REACHABLE = "Reachable"
UNREACHABLE = "Unreachable"


def _check_port(_: object, __: object, port: int) -> None:
    if not 1 <= port <= 65535:
        raise FieldError("port", f"must be a TCP port (1-65535); got {port}")


def _check_hex(_: object, __: object, text: str | None) -> None:
    if text is None:
        return
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        raise FieldError("sendHex", f"is not hexadecimal bytes (e.g. 'ff ff 01'): {e}") from None
    if not data:
        raise FieldError("sendHex", "must not be empty")


def _check_expect(_: object, __: object, pattern: str | None) -> None:
    if pattern is None:
        return
    if not pattern:
        raise FieldError("expect", "must not be empty (leave it out to accept any reply)")
    try:
        re.compile(pattern.encode())
    except re.error as e:
        raise FieldError("expect", f"is not a valid regular expression: {e}") from None


def _check_state(_: object, attribute: attrs.Attribute[str | None], state: str | None) -> None:
    if state is not None and not state.strip():
        key = "upState" if attribute.name == "up_state" else "downState"
        raise FieldError(key, "must not be empty")


@attrs.frozen
class Endpoint(ProbeTiming):
    """One TCP port of the game."""

    port: int = field(validator=_check_port, doc="TCP port the game listens on.")
    host: str = field(
        default="127.0.0.1",
        validator=non_empty,
        doc="Host to connect to. The game runs in the same pod, so the default is loopback.",
    )
    # The probe kit's timeout, redefined: a connect on the pod's loopback needs less than an
    # HTTP answer (the thresholds are the kit's as they are).
    timeout: float = field(
        default=1.0,
        validator=positive,
        doc="Seconds a probe may take in all (connect, send, expected reply) before it fails.",
    )
    send: str | None = field(
        default=None,
        doc='Text sent (UTF-8) once connected, e.g. `"PING\\n"`. Use `sendHex` for binary.',
    )
    send_hex: str | None = field(
        key="sendHex",
        default=None,
        validator=_check_hex,
        doc='Bytes sent once connected, in hexadecimal (`"ff ff ff ff 54"`); not with `send`.',
    )
    expect: str | None = field(
        default=None,
        validator=_check_expect,
        doc="Regular expression searched in the reply (a plain word is a substring match); "
        "written as text, matched against the reply's bytes, so `\\xff` matches byte 0xff. "
        "Without it, an accepted connection is a success.",
    )
    max_reply_bytes: int = field(
        key="maxReplyBytes",
        default=4096,
        validator=positive,
        doc="Most bytes of the reply read while looking for `expect`; beyond that the probe fails.",
    )
    up_state: str | None = field(
        key="upState",
        default=None,
        validator=_check_state,
        doc="State recorded while reachable (default: the plugin's `upState`).",
    )
    down_state: str | None = field(
        key="downState",
        default=None,
        validator=_check_state,
        doc="State recorded while unreachable (default: the plugin's `downState`).",
    )
    storage_config: StorageConfig | None = field(
        key="storageConfig",
        default=None,
        doc="Where the state goes (`InKube`: pod annotation/label, GameServer opsState via "
        "`markerPolicies`; `HTTPMetric`: a gauge, with numeric up/down states).",
    )

    def __attrs_post_init__(self) -> None:
        if self.send is not None and self.send_hex is not None:
            raise FieldError("sendHex", "give either `send` or `sendHex`, not both")
        if self.up_state is not None and self.up_state == self.down_state:
            raise FieldError("downState", "must differ from upState")

    @property
    def payload(self) -> bytes:
        """The bytes sent after connecting (empty: send nothing)."""
        if self.send_hex is not None:
            return bytes.fromhex(self.send_hex)
        return (self.send or "").encode()

    @property
    def pattern(self) -> re.Pattern[bytes] | None:
        """The compiled ``expect`` (it was checked when the config was loaded)."""
        return re.compile(self.expect.encode()) if self.expect is not None else None

    @property
    def address(self) -> str:
        """``host:port`` for logs and results (``[::1]:port`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class TcpProbeConfig(ProbeSchedule):
    """Probe the game's TCP ports and record whether they are reachable."""

    endpoints: tuple[Endpoint, ...] = field(doc="The ports to probe, each on its own.")
    up_state: str = field(
        key="upState",
        default=REACHABLE,
        validator=non_empty,
        doc="State recorded while an endpoint is reachable (matched by `markerPolicies`).",
    )
    down_state: str = field(
        key="downState",
        default=UNREACHABLE,
        validator=non_empty,
        doc="State recorded while an endpoint is unreachable (matched by `markerPolicies`).",
    )

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise FieldError("endpoints", "must list at least one endpoint")
        if self.up_state == self.down_state:
            raise FieldError("downState", "must differ from upState")
        for i, endpoint in enumerate(self.endpoints):
            up, down = self.states(endpoint)
            if up == down:
                raise FieldError(f"endpoints[{i}].downState", f"must differ from upState ({up!r})")

    def states(self, endpoint: Endpoint) -> tuple[str, str]:
        """The (up, down) states of ``endpoint``: its own, else the plugin's."""
        return endpoint.up_state or self.up_state, endpoint.down_state or self.down_state

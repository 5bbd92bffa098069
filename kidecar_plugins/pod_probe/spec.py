"""The probes a pod must run: Kruise's ``kruise.io/podprobe`` entries, parsed and checked.

Kruise (≥ 1.8, feature gate ``EnablePodProbeMarkerOnServerless``) writes into a serverless pod's
annotation ``kruise.io/podprobe`` a JSON list of its PodProbeMarkers' probes, one entry per
probe::

    [{"containerName": "game", "name": "idle", "podConditionType": "game.kruise.io/idle",
      "probe": {"exec": {"command": ["/check.sh"]}, "periodSeconds": 5, ...}}]

where ``probe`` is a core/v1 ``Probe``.  :func:`parse_probe_list` reads that list (and the same
shape from kidecar's config and from PodProbeMarkers) into :class:`PodProbe` objects, reporting
every bad entry as a :class:`SpecProblem` with its path, so that one bad probe never stops the
others.  Keys match case-insensitively (as Go's JSON decoder matches them); unknown keys are
ignored in the annotation (newer Kruise fields) and errors in kidecar's config (typos).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core import describe_value, is_dns1123_subdomain

HANDLERS = ("exec", "tcpSocket", "httpGet")
"""The probe handlers ``pod_probe`` runs.  (``grpc`` is refused with a clear message.)"""

_TIMING_KEYS = (
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
)
_PROBE_KEYS = frozenset(k.lower() for k in ("exec", "tcpSocket", "httpGet", "grpc", *_TIMING_KEYS))
_ENTRY_KEYS = ("name", "containerName", "podConditionType", "probe", "markerPolicy")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST = re.compile(r"^[A-Za-z0-9._:%-]+$")
MAX_INT32 = 2**31 - 1
"""The largest value of a probe's counts (``int32`` fields of core/v1 ``Probe``)."""

RESERVED_CONDITION_TYPES = frozenset(
    {
        "PodScheduled",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodReadyToStartContainers",
        "DisruptionTarget",
        "PodResizePending",
        "PodResizeInProgress",
        "KruisePodReady",
        "InPlaceUpdateReady",
    }
)
"""Pod condition types that the kubelet, the scheduler or Kruise write: a probe writing one of
them would fight its owner (``Ready=False`` takes the pod out of its Services).  Kruise's
PodProbeMarker webhook refuses these names (``k8sNativePodConditions``); kidecar refuses them as
``podConditionType``."""


@attrs.frozen
class SpecProblem:
    """One bad piece of a probe list: where (``[1].probe.periodSeconds``) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """Raised inside the parser; collected into :class:`SpecProblem` entries."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.problem = SpecProblem(path, message)


@attrs.frozen
class ExecAction:
    """Run ``command`` (no shell) in the sidecar's container; exit code 0 is success."""

    command: tuple[str, ...]


@attrs.frozen
class TCPSocketAction:
    """Open a TCP connection to ``host:port`` (``host`` empty: the pod's IP)."""

    port: int | str
    host: str = ""


@attrs.frozen
class HTTPGetAction:
    """``GET scheme://host:port/path`` with ``headers``; 200 ≤ status < 400 is success."""

    port: int | str
    host: str = ""
    scheme: str = "HTTP"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


Handler = ExecAction | TCPSocketAction | HTTPGetAction


@attrs.frozen
class Timing:
    """A probe's timing, as given (seconds / counts); the ``effective_*`` values are what
    kruise-daemon's worker uses: anything below 1 counts as 1."""

    initial_delay_seconds: int = 0
    period_seconds: int = 0
    timeout_seconds: int = 0
    success_threshold: int = 0
    failure_threshold: int = 0

    @property
    def effective_initial_delay(self) -> int:
        return max(1, self.initial_delay_seconds)

    @property
    def effective_period(self) -> int:
        return max(1, self.period_seconds)

    @property
    def effective_timeout(self) -> int:
        return max(1, self.timeout_seconds)

    @property
    def effective_success_threshold(self) -> int:
        return max(1, self.success_threshold)

    @property
    def effective_failure_threshold(self) -> int:
        return max(1, self.failure_threshold)


@attrs.frozen
class PodProbe:
    """One probe of the pod and the condition type its result goes to.

    Two probes are the same probe when their :attr:`key` (container and name) is; a probe whose
    other fields change is restarted.  ``source`` (where it was read, for messages) does not
    take part in comparisons.
    """

    name: str
    container_name: str
    condition_type: str
    handler: Handler
    timing: Timing = attrs.field(factory=Timing)
    source: str = attrs.field(default="", eq=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.container_name, self.name)

    @property
    def kind(self) -> str:
        """``exec``, ``tcpSocket`` or ``httpGet``."""
        return {ExecAction: "exec", TCPSocketAction: "tcpSocket", HTTPGetAction: "httpGet"}[
            type(self.handler)
        ]


def parse_probe_list(
    value: Any, source: str, *, strict: bool = False
) -> tuple[list[PodProbe], list[SpecProblem]]:
    """The probes of a ``kruise.io/podprobe``-shaped list, and the problems of the bad entries.

    ``source`` names where the list comes from (``annotation kruise.io/podprobe``) and is kept
    on each probe.  A problem's path is relative to the list (``[0].probe.exec.command``).
    Entries after the first with the same condition type, or the same container and name, are
    problems too (Kruise's webhook drops them the same way).
    """
    if not isinstance(value, list):
        return [], [SpecProblem("", f"expected a JSON list of probes, got {_describe(value)}")]
    probes: list[PodProbe] = []
    problems: list[SpecProblem] = []
    for i, item in enumerate(value):
        try:
            probe = parse_entry(item, f"[{i}]", strict=strict, source=f"{source}[{i}]")
            _check_unique(probe, probes, f"[{i}]")
        except SpecError as e:
            problems.append(e.problem)
            continue
        probes.append(probe)
    return probes, problems


def _check_unique(probe: PodProbe, seen: list[PodProbe], path: str) -> None:
    for other in seen:
        if other.condition_type == probe.condition_type:
            raise SpecError(
                f"{path}.podConditionType",
                f"{probe.condition_type!r} is already written by probe {other.name!r}",
            )
        if other.key == probe.key:
            raise SpecError(
                f"{path}.name", f"probe {probe.name!r} of container {probe.container_name!r} "
                "is listed twice",
            )  # fmt: skip


def parse_entry(item: Any, path: str, *, strict: bool, source: str = "") -> PodProbe:
    """One ``{"containerName", "name", "podConditionType", "probe"}`` entry (``SpecError``)."""
    fields = _fields(item, _ENTRY_KEYS, path, strict)
    name = _string(fields, "name", path, required=True)
    if "#" in name or not name.isprintable():
        raise SpecError(f"{path}.name", f"{name!r} must not contain '#' (Kruise's rule) or "
                        "control characters")  # fmt: skip
    container = _string(fields, "containerName", path, required=True)
    if not _CONTAINER_NAME.match(container):
        raise SpecError(f"{path}.containerName", f"{container!r} is not a container name (a DNS "
                        "label: a-z, 0-9, '-', at most 63 characters)")  # fmt: skip
    condition = _string(fields, "podConditionType", path, required=True)
    _check_condition_type(condition, f"{path}.podConditionType")
    probe_path = f"{path}.probe"
    raw = fields.get("probe")
    probe = _fields(raw, (*HANDLERS, "grpc", *_TIMING_KEYS), probe_path, strict)
    timing = Timing(
        *(_count(probe, key, probe_path) for key in _TIMING_KEYS[:5]),
    )
    _count(probe, "terminationGracePeriodSeconds", probe_path)  # checked, not used
    handler = _handler(probe, raw, probe_path, strict)
    return PodProbe(name, container, condition, handler, timing, source)


def _handler(probe: Mapping[str, Any], raw: Any, path: str, strict: bool) -> Handler:
    """The one handler of ``probe`` (``raw``: the probe as written, to name unknown keys)."""
    given = [key for key in (*HANDLERS, "grpc") if probe.get(key) is not None]
    if not given:
        unknown = sorted(str(k) for k in raw if str(k).lower() not in _PROBE_KEYS)
        also = f" (unknown key(s): {', '.join(unknown)})" if unknown else ""
        raise SpecError(path, f"no handler: expected one of exec, tcpSocket, httpGet{also}")
    if len(given) > 1:
        raise SpecError(path, f"exactly one handler allowed, got {', '.join(given)}")
    kind = given[0]
    if kind == "grpc":
        raise SpecError(f"{path}.grpc", "grpc probes are not supported (exec, tcpSocket and "
                        "httpGet are)")  # fmt: skip
    if kind == "exec":
        return _exec(probe[kind], f"{path}.exec", strict)
    if kind == "tcpSocket":
        return _tcp(probe[kind], f"{path}.tcpSocket", strict)
    return _http(probe[kind], f"{path}.httpGet", strict)


def _exec(value: Any, path: str, strict: bool) -> ExecAction:
    fields = _fields(value, ("command",), path, strict)
    command = fields.get("command")
    if not isinstance(command, list) or not command:
        raise SpecError(f"{path}.command", "must be a non-empty list of strings")
    if not all(isinstance(arg, str) for arg in command) or not command[0]:
        raise SpecError(f"{path}.command", "must be a list of strings, the first not empty")
    return ExecAction(tuple(command))


def _tcp(value: Any, path: str, strict: bool) -> TCPSocketAction:
    fields = _fields(value, ("port", "host"), path, strict)
    return TCPSocketAction(_port(fields, path), _host(fields, path))


def _http(value: Any, path: str, strict: bool) -> HTTPGetAction:
    fields = _fields(value, ("port", "host", "scheme", "path", "httpHeaders"), path, strict)
    scheme = _string(fields, "scheme", path) or "HTTP"
    if scheme.upper() not in ("HTTP", "HTTPS"):
        raise SpecError(f"{path}.scheme", f"must be HTTP or HTTPS, got {scheme!r}")
    request_path = _string(fields, "path", path) or "/"
    if any(c in request_path for c in "\r\n\0"):
        raise SpecError(f"{path}.path", "must not contain line breaks or NUL")
    headers = _headers(fields.get("httpHeaders"), f"{path}.httpHeaders", strict)
    host = _host(fields, path)
    return HTTPGetAction(_port(fields, path), host, scheme.upper(), request_path, headers)


def _headers(value: Any, path: str, strict: bool) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(path, f"expected a list of {{name, value}}, got {_describe(value)}")
    headers: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        fields = _fields(item, ("name", "value"), f"{path}[{i}]", strict)
        name = _string(fields, "name", f"{path}[{i}]", required=True)
        text = _string(fields, "value", f"{path}[{i}]")
        if not _HEADER_NAME.match(name):
            raise SpecError(f"{path}[{i}].name", f"{name!r} is not a valid HTTP header name")
        if any(c in text for c in "\r\n\0"):
            raise SpecError(f"{path}[{i}].value", "must not contain line breaks or NUL")
        headers.append((name, text))
    return tuple(headers)


def _host(fields: Mapping[str, Any], path: str) -> str:
    """A probe's ``host``: a host name or an IP address, nothing that would change the URL."""
    host = _string(fields, "host", path)
    if host and (not _HOST.match(host) or len(host) > 253):
        raise SpecError(
            f"{path}.host", f"{host!r} is not a host name or an IP address (no '/', '@', '?', "
            "'#', spaces or brackets; the port goes in port)",
        )  # fmt: skip
    return host


def _port(fields: Mapping[str, Any], path: str) -> int | str:
    port = fields.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 < port < 65536:
            raise SpecError(f"{path}.port", f"{port} is not in 1-65535")
        return port
    if isinstance(port, str) and port:
        if not (port.isdigit() or (_PORT_NAME.match(port) and len(port) <= 15)):
            raise SpecError(f"{path}.port", f"{port!r} is neither a port number nor a port name")
        return port
    raise SpecError(f"{path}.port", "required: a port number or the name of a container port")


def _count(fields: Mapping[str, Any], key: str, path: str) -> int:
    value = fields.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}", f"expected an integer, got {_describe(value)}")
    if value < 0:
        raise SpecError(f"{path}.{key}", f"must be >= 0, got {value}")
    if value > MAX_INT32:
        raise SpecError(f"{path}.{key}", f"must be at most {MAX_INT32} (an int32), got {value}")
    return value


def _string(fields: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = fields.get(key)
    if value is None or value == "":
        if required:
            raise SpecError(f"{path}.{key}", "required (a non-empty string)")
        return ""
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key}", f"expected a string, got {_describe(value)}")
    return value


def _check_condition_type(value: str, path: str) -> None:
    """A pod condition type must be a qualified name (``[prefix/]name``), as the API server
    checks for conditions other than the kubelet's."""
    if value in RESERVED_CONDITION_TYPES:
        raise SpecError(
            path, f"{value!r} is a condition the kubelet or Kruise writes; use a type of your "
            "own (game.kruise.io/<name> for OKG)",
        )  # fmt: skip
    prefix, _, name = value.rpartition("/")
    ok = len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))
    if prefix:
        ok = ok and is_dns1123_subdomain(prefix)
    if not ok:
        raise SpecError(
            path,
            f"{value!r} is not a qualified name ([DNS-subdomain/]name, the name at most 63 "
            "characters of A-Z, a-z, 0-9, '-', '_', '.')",
        )


def _fields(value: Any, known: tuple[str, ...], path: str, strict: bool) -> dict[str, Any]:
    """``value`` as a mapping keyed by the known spellings (matched case-insensitively)."""
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected an object, got {_describe(value)}")
    spelled = {k.lower(): k for k in known}
    fields: dict[str, Any] = {}
    for raw, item in value.items():
        key = spelled.get(str(raw).lower())
        if key is None:
            if strict:
                raise SpecError(f"{path}.{raw}", f"unknown key (known: {', '.join(known)})")
            continue
        fields[key] = item
    return fields


def _describe(value: Any) -> str:
    return describe_value(value, json=True)  # the annotation is JSON: "an object"


def resolve_port(port: int | str, container: str, pod: Mapping[str, Any]) -> int:
    """A probe's port as a number: a name is looked up in the container's ``ports`` (as the
    kubelet does; a name that is not there but is all digits is taken as the number).

    Raises :class:`SpecError` (path ``port``) when the name is not found.
    """
    if isinstance(port, int):
        return port
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if isinstance(c, Mapping) and c.get("name") == container:
            for p in c.get("ports") or []:
                if isinstance(p, Mapping) and p.get("name") == port:
                    number = p.get("containerPort")
                    if isinstance(number, int) and 0 < number < 65536:
                        return number
    if port.isdigit() and 0 < int(port) < 65536:
        return int(port)
    raise SpecError("port", f"container {container!r} has no port named {port!r}")

"""Configuration of the ``hot_update`` plugin (``plugins[].config``).

The Go predecessor's keys come first (``loadPatchType``, ``signal``, ``fileDir``,
``storageConfig``) so that its configs load unchanged; the rest are kidecar's additions, each with
a safe default.
"""

from __future__ import annotations

import ipaddress
import re
import signal as signals
from collections.abc import Mapping
from typing import Literal

import attrs
from yarl import URL

from kidecar_core import (
    BearerAuth,
    ConfigError,
    FieldError,
    Problem,
    StorageConfig,
    field,
    http_headers,
    is_dns1123_subdomain,
    non_negative,
    parse_listen,
    positive,
    redact_url,
)
from kidecar_plugins.hot_update.rollout.config import RolloutFollowConfig
from kidecar_plugins.hot_update.urls import refused_address

DEFAULT_FILE_DIR = "/app/downloads"
DEFAULT_LISTEN = ":5000"
DEFAULT_CONFIGMAP = "sidecar-result"
DEFAULT_MAX_BYTES = 1024**3

_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:_-]*[A-Za-z0-9])?$")
_METHODS = ("GET", "POST", "PUT", "PATCH")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def signal_number(name: str) -> int:
    """``SIGHUP``, ``HUP`` or ``sighup`` → the signal's number; ``ValueError`` if unknown."""
    canonical = name.strip().upper()
    if not canonical.startswith("SIG"):
        canonical = "SIG" + canonical
    try:
        return int(signals.Signals[canonical])
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (e.g. SIGHUP, SIGUSR1, USR2)") from None


@attrs.frozen
class SignalConfig:
    """Notify the game by sending a signal to its process (the Go ``loadPatchType: signal``)."""

    process_name: str = field(
        key="processName",
        doc="The game process's command line as `ps -o args` shows it (arguments joined by single "
        "spaces; a rewritten title such as `nginx: master process nginx` as shown). Matched "
        "exactly, or as a regular expression with `processNameRegex: true`. PID 1 and the "
        "sidecar's own processes never match. The pod needs `shareProcessNamespace: true`.",
    )
    signal_name: str = field(
        key="signalName",
        default="SIGHUP",
        doc="Signal to send, with or without `SIG` (`SIGHUP`, `USR1`). The game must handle it: "
        "a process that does not catch the signal is not sent it (that would terminate it).",
    )
    process_name_regex: bool = field(
        key="processNameRegex",
        default=False,
        doc="Treat `processName` as a Python regular expression that must match the whole "
        "command line (`re.fullmatch`).",
    )

    def __attrs_post_init__(self) -> None:
        if not self.process_name.strip():
            raise FieldError("processName", "must not be empty (it would match every process)")
        try:
            number = signal_number(self.signal_name)
        except ValueError as e:
            raise FieldError("signalName", str(e)) from None
        if signals.Signals(number).name in _UNCATCHABLE:
            raise FieldError(
                "signalName",
                f"{self.signal_name} cannot be handled by a game, so it cannot "
                "trigger a reload; use SIGHUP, SIGUSR1 or SIGUSR2",
            )
        if self.process_name_regex:
            try:
                re.compile(self.process_name)
            except re.error as e:
                raise FieldError("processName", f"invalid regular expression: {e}") from None

    @property
    def signum(self) -> int:
        return signal_number(self.signal_name)

    @property
    def signame(self) -> str:
        return signals.Signals(self.signum).name


@attrs.frozen
class RequestConfig:
    """Notify the game with an HTTP request (``loadPatchType: request``).

    The endpoint is ``url``, or ``address`` and ``port`` (the Go predecessor's keys), which mean
    ``http://<address>:<port>/``. The Go version accepted such a config but never sent the
    request (its request mode was a stub that answered 200); kidecar sends it.
    """

    url: str | None = field(
        default=None,
        doc="The game's reload endpoint, e.g. `http://127.0.0.1:8080/reload`. Or give `address` "
        "and `port`.",
    )
    address: str | None = field(
        default=None,
        doc="Go-compatible: the host of the reload endpoint (`127.0.0.1`, `localhost`); with "
        "`port`, the request goes to `http://<address>:<port>/`.",
    )
    port: int | None = field(
        default=None, doc="Go-compatible: the port of the reload endpoint (with `address`)."
    )
    method: str = field(
        default="POST",
        doc="HTTP method: GET, POST, PUT or PATCH. Other than GET, the body is JSON "
        '`{"version", "url", "file", "sha256"}` (`url` without credentials: no userinfo, no '
        "query); GET passes `version` and `file` as query parameters.",
    )
    timeout_seconds: float = field(
        key="timeoutSeconds", default=5.0, validator=positive, doc="Timeout of one attempt."
    )
    retries: int = field(
        default=3,
        validator=non_negative,
        doc="Further attempts after a failed one (connection error or non-2xx answer), with "
        "backoff. The update fails (503) when none answered 2xx.",
    )
    headers: Mapping[str, str] = field(
        factory=dict,
        validator=http_headers,
        doc="Extra request headers (no CR/LF in values; not Content-Length, Transfer-Encoding, "
        "Connection).",
    )

    def __attrs_post_init__(self) -> None:
        if self.url is None and self.address is None:
            raise FieldError("url", "required: the reload endpoint (or `address` and `port`)")
        if self.url is not None and (self.address is not None or self.port is not None):
            raise FieldError("url", "give `url`, or `address` and `port` (Go), not both")
        if self.url is not None:
            if not re.match(r"^https?://[^/?#]+", self.url, re.IGNORECASE):
                raise FieldError("url", f"{self.url!r} must be an http:// or https:// URL")
            try:
                URL(self.url)
            except ValueError as e:
                raise FieldError("url", f"{self.url!r} is not a valid URL: {e}") from None
        else:
            self._check_address()
        if self.method.upper() not in _METHODS:
            raise FieldError("method", f"must be one of {', '.join(_METHODS)}; got {self.method!r}")

    def _check_address(self) -> None:
        assert self.address is not None
        if "://" in self.address or "/" in self.address:
            raise FieldError(
                "address",
                f"{self.address!r} must be a host name or IP address; use `url` for a URL",
            )
        host = self.address.strip("[]")
        if not _HOST.match(host) and not _is_ip(host):
            raise FieldError("address", f"{self.address!r} is not a host name or IP address")
        if self.port is None:
            raise FieldError("port", "required with `address` (the reload endpoint's port)")
        if not 0 < self.port <= 65535:
            raise FieldError("port", f"must be 1-65535, got {self.port}")

    @property
    def endpoint(self) -> URL:
        """The reload endpoint's URL."""
        if self.url is not None:
            return URL(self.url)
        host = self.address or ""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        return URL(f"http://{host}:{self.port}/")


@attrs.frozen
class AuthConfig(BearerAuth):
    """Who may call ``POST /hot-update``: a bearer token (``Authorization: Bearer <token>``).

    Without a token the endpoint listens on 127.0.0.1 only (reachable from inside the pod).
    """


@attrs.frozen
class PersistenceConfig:
    """Where the last applied version is kept for restarts and new replicas."""

    enabled: bool = field(
        default=True,
        doc="Record updates in the ConfigMap and replay them on restart. With `false`, "
        "nothing is replayed and the Role needs no ConfigMap rules.",
    )
    config_map_name: str = field(
        key="configMapName",
        default=DEFAULT_CONFIGMAP,
        doc="ConfigMap in the pod's namespace holding `pod.<pod>` and "
        "`workload.<kind>.<name>` entries (JSON: version, url, sha256, file, updatedAt). "
        "The Role of deploy/base/rbac.yaml names this ConfigMap: change both together.",
    )

    def __attrs_post_init__(self) -> None:
        if not is_dns1123_subdomain(self.config_map_name):
            raise FieldError(
                "configMapName", f"{self.config_map_name!r} is not a valid ConfigMap name"
            )


@attrs.frozen
class HotUpdateConfig:
    """Put new files into the running game and tell it to reload, without restarting the pod.

    ``POST /hot-update`` with ``version`` and ``url`` downloads the file into ``fileDir``,
    replaces the previous one atomically and notifies the game (signal or HTTP request).
    """

    load_patch_type: Literal["signal", "request"] = field(
        key="loadPatchType",
        default="signal",
        doc="How the game learns about a new file: `signal` (see `signal`) or `request` "
        "(see `request`).",
    )
    signal: SignalConfig | None = field(default=None, doc="Required with `loadPatchType: signal`.")
    request: RequestConfig | None = field(
        default=None, doc="Required with `loadPatchType: request`."
    )
    file_dir: str = field(
        key="fileDir",
        default=DEFAULT_FILE_DIR,
        doc="Directory (shared with the game container) that receives the files. A file keeps "
        "the base name of its URL (`.../v2/index.html` → `index.html`).",
    )
    storage_config: StorageConfig | None = field(
        key="storageConfig",
        default=None,
        doc="Where each attempt's result is recorded, e.g. `type: InKube` with "
        "`inKube.annotationKey`: the pod annotation becomes `v2: Update success` or "
        "`v2: Update failed: <reason>` (the Go format).",
    )
    listen: str = field(
        default=DEFAULT_LISTEN,
        doc="Address of the hot-update HTTP server. Without `auth`, only 127.0.0.1 (same port) "
        "is used, whatever this says.",
    )
    auth: AuthConfig = field(factory=AuthConfig, doc="Bearer-token authentication.")
    allowed_url_prefixes: tuple[str, ...] = field(
        key="allowedUrlPrefixes",
        factory=tuple,
        doc="Only download URLs under one of these (scheme, host and port equal; the path the "
        "prefix's or below it: `https://cdn/game` allows `/game/v2.pak`, not `/gamehack`), "
        "redirects included. Empty: any http/https URL.",
    )
    allow_link_local: bool = field(
        key="allowLinkLocal",
        default=False,
        doc="Allow downloads from link-local addresses (169.254.0.0/16, fe80::/10) and cloud "
        "metadata endpoints (100.100.100.200, 100.96.0.96, fd00:ec2::254), refused by default.",
    )
    max_bytes: int = field(
        key="maxBytes",
        default=DEFAULT_MAX_BYTES,
        validator=positive,
        doc="Largest file accepted (bytes); larger downloads are refused with 413.",
    )
    download_timeout_seconds: float = field(
        key="downloadTimeoutSeconds",
        default=300.0,
        validator=positive,
        doc="Time allowed for one whole download (connect, headers and body).",
    )
    persistence: PersistenceConfig = field(
        factory=PersistenceConfig, doc="The result ConfigMap (restart replay, new replicas)."
    )
    wait_for_process_seconds: float = field(
        key="waitForProcessSeconds",
        default=300.0,
        validator=non_negative,
        doc="After a restart, how long the replay of the last applied version waits for the "
        "game (its process handling the signal, or its endpoint answering) before giving up.",
    )
    rollout: RolloutFollowConfig = field(
        factory=RolloutFollowConfig,
        doc="How this pod follows `kidecar rollout` (docs/rollout.md).",
    )

    def __attrs_post_init__(self) -> None:
        """Every problem of the keys below at once (SPEC §3), as :class:`ConfigError`."""
        problems = [
            Problem(key, message)
            for key, message in (
                *self._mode_problems(),
                *self._prefix_problems(),
                *self._place_problems(),
            )
        ]
        if problems:
            raise ConfigError(problems)

    def _mode_problems(self) -> list[tuple[str, str]]:
        if self.load_patch_type == "signal" and self.signal is None:
            return [("signal", "required with loadPatchType: signal (processName, ...)")]
        if self.load_patch_type == "request" and self.request is None:
            return [("request", "required with loadPatchType: request (url, ...)")]
        if self.request is not None and not self.allow_link_local:
            reason = refused_address(self.request.endpoint.host or "")
            if reason:
                key = "request.url" if self.request.url is not None else "request.address"
                return [(key, f"refused: {reason}; set allowLinkLocal to allow it")]
        return []

    def _prefix_problems(self) -> list[tuple[str, str]]:
        """Each ``allowedUrlPrefixes`` entry an http(s) URL that :class:`Prefix` can parse (a bad
        port or IPv6 literal would otherwise stop the plugin when it starts)."""
        problems = []
        for i, prefix in enumerate(self.allowed_url_prefixes):
            key = f"allowedUrlPrefixes[{i}]"
            if not re.match(r"^https?://[^/?#]+", prefix, re.IGNORECASE):
                problems.append((key, f"{prefix!r} must be an http:// or https:// URL"))
                continue
            try:
                url = URL(prefix)
                url.port  # noqa: B018 - raises ValueError for a port out of range
            except ValueError as e:
                shown = redact_url(prefix) if "@" in prefix or "?" in prefix else prefix
                problems.append((key, f"{shown!r} is not a valid URL: {e}"))
                continue
            if url.user is not None or url.password is not None or url.raw_query_string:
                problems.append(
                    (key, f"{redact_url(prefix)!r}: a prefix has no userinfo and no query string")
                )
        return problems

    def _place_problems(self) -> list[tuple[str, str]]:
        problems = []
        if not self.file_dir.startswith("/"):
            problems.append(("fileDir", f"{self.file_dir!r} must be an absolute path"))
        try:
            parse_listen(self.listen)
        except FieldError as e:
            problems.append((e.key, e.message))
        return problems

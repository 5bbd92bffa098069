"""Listen addresses (``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT``): parsed in this one place for
every server kidecar starts (the admin server, ``hot_update``, ``game_api``, any plugin route with
``listen=``), so every config key accepts the same forms and reports the same errors."""

from __future__ import annotations

import ipaddress
import re

import attrs

from kidecar_core._config.schema import FieldError

FORMS = "expected HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:5001"
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


@attrs.frozen
class ListenAddress:
    """Where a server listens: ``host`` (``""`` means every interface) and ``port`` (0: any free
    port, where the caller allows it)."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Reachable only from inside the pod: ``localhost`` or a loopback IP (``127.0.0.0/8``,
        ``::1``).  Every interface (``:PORT``) and any other name are not."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, key: str = "listen", *, any_port: bool = False) -> ListenAddress:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface).

    ``HOST`` is a host name or an IPv4 address, or an IPv6 address in brackets; ``PORT`` is
    1-65535 (0 too with ``any_port``: the system picks one).  Raises
    :class:`~kidecar_core.FieldError` naming ``key`` (the config key, or the option and
    environment variable) with the reason and the accepted forms.
    """
    if not isinstance(text, str) or not text:
        raise FieldError(key, f"must not be empty: {FORMS}")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise FieldError(key, f"{text!r}: {FORMS} (no port given)")
    if not port_text.isascii() or not port_text.isdigit():
        raise FieldError(key, f"{text!r}: port {port_text!r} is not a number: {FORMS}")
    port = int(port_text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise FieldError(key, f"{text!r}: port {port} is not in 1-65535")
    return ListenAddress(_host(text, host, key), port)


def _host(text: str, host: str, key: str) -> str:
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1]
        if not (host.startswith("[") and host.endswith("]")) or not _is_ipv6(inner):
            raise FieldError(key, f"{text!r}: {host!r} is not an IPv6 address in brackets")
        return inner
    if ":" in host:
        raise FieldError(key, f"{text!r}: an IPv6 address needs brackets, e.g. [::1]:5001")
    if host and not _HOST_NAME.match(host):
        raise FieldError(key, f"{text!r}: {host!r} is not a host name or IP address: {FORMS}")
    return host


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def loopback_only(listen: str) -> bool:
    """Whether ``listen`` (``HOST:PORT``) names a loopback host (``127.0.0.1``, ``[::1]``,
    ``localhost``); ``:PORT`` (every interface), any other host and an invalid address are not."""
    try:
        return parse_listen(listen, any_port=True).loopback
    except FieldError:
        return False

"""Which URLs the sidecar may download, and under which file name.

Checks, in order: the URL is absolute http/https (400 otherwise), it names a file whose base
name is safe to create in ``fileDir`` (400), it is under one of ``allowedUrlPrefixes`` (403) and
its host is not a link-local or cloud-metadata address (403). Every redirect target passes the
same checks before it is followed. Host names are checked when they are resolved, by
:class:`GuardedResolver`, so a name that resolves to a metadata address (or is re-pointed to one
between the check and the connection) is refused too.

A prefix holds for **every way an origin server may read the path** (:func:`path_readings`):
as sent, and percent-decoded once, twice and three times, each with ``\\`` read as ``/``,
``;parameters`` dropped from segments (Tomcat, Jetty) and dot segments resolved. So
``/good/..%2fevil/x`` is not under ``/good`` (Python's ``http.server`` decodes ``%2F`` before
resolving ``..`` and serves ``/evil/x``), nor are ``/good/%252e%252e/evil/x`` (decoded twice)
or ``/good/..;/evil/x``.
"""

from __future__ import annotations

import ipaddress
import posixpath
import socket
from collections.abc import Sequence
from urllib.parse import unquote

import attrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from kidecar_core import redact_url
from kidecar_plugins.hot_update.errors import BadRequest, UrlNotAllowed

MAX_URL_LENGTH = 4096
MAX_DECODES = 3
"""Percent-decoding rounds a path is checked for (a server that decodes more is broken)."""
TEMP_SUFFIX = ".kidecar-tmp"
BACKUP_SUFFIX = ".kidecar-prev"
MAX_NAME_BYTES = 255 - len(".") - len(".12345678") - len(TEMP_SUFFIX)
"""Longest file name (UTF-8 bytes): its temporary file ``.<name>.<8 random>.kidecar-tmp``
must fit in the 255 bytes a file name may have (Linux ``NAME_MAX``)."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "100.100.100.200",  # Alibaba Cloud (ECI/ACS)
        "100.96.0.96",  # Volcengine (VCI)
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
"""Cloud metadata endpoints outside the link-local ranges (169.254.169.254 is link-local)."""


def parse_url(text: str) -> URL:
    """The download URL, normalised (dot segments resolved); 400 when it is not one."""
    if len(text) > MAX_URL_LENGTH:
        raise BadRequest("bad url", f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        url = URL(text.strip())
    except (ValueError, TypeError) as e:
        raise BadRequest("bad url", f"url {text!r} is not a valid URL: {e}") from None
    if url.scheme.lower() not in ("http", "https"):
        raise BadRequest("bad url", f"url must be http:// or https://, got {redact_url(url)!r}")
    if not url.host:
        raise BadRequest("bad url", f"url {redact_url(url)!r} has no host")
    readings = path_readings(url.raw_path)
    if any(_control(c) for reading in readings for c in reading):
        raise BadRequest("bad url", f"url {redact_url(url)!r} has control characters in its path")
    if any(c in _OVERLONG for reading in readings for c in reading):
        raise BadRequest(
            "bad url",
            f"url {redact_url(url)!r} has an overlong UTF-8 sequence in its path (%C0 or %C1, "
            "never valid UTF-8: old servers read %C0%AE as '.')",
        )
    return url


_OVERLONG = frozenset(("\udcc0", "\udcc1"))
"""Bytes 0xC0 and 0xC1 as :func:`path_readings` keeps them (surrogate escapes): they only start
overlong UTF-8 forms such as ``%C0%AE`` for ``.``, which some servers decode (CVE-2000-0884,
CVE-2008-2938), so ``/game/%C0%AE%C0%AE/admin`` could escape a prefix."""


def _control(c: str) -> bool:
    return ord(c) < 0x20 or ord(c) == 0x7F


def file_name(url: URL) -> str:
    """The base name of the URL's path: the name of the file in ``fileDir``; 400 if unsafe."""
    name = url.name
    problem = None
    if not name:
        problem = "does not name a file (its path ends with '/')"
    elif name in (".", "..") or "/" in name or "\\" in name:
        problem = f"names {name!r}, which is not a plain file name"
    elif any(_control(c) for c in name):
        problem = "names a file with control characters"
    elif name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX)):
        problem = f"names {name!r}, which kidecar reserves for its temporary files"
    elif len(name.encode()) > MAX_NAME_BYTES:
        problem = f"names a file longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise BadRequest("bad url", f"url {redact_url(url)!r} {problem}")
    return name


def path_readings(raw_path: str) -> list[str]:
    """The paths an origin server may read from ``raw_path`` (as sent on the wire).

    The path as sent and percent-decoded up to :data:`MAX_DECODES` times (until it no longer
    changes), each normalised: ``\\`` read as ``/``, repeated slashes merged, dot segments
    resolved; and each of those again with ``;parameters`` dropped from every segment.
    """
    forms = [raw_path]
    current = raw_path
    for _ in range(MAX_DECODES):
        decoded = unquote(current, errors="surrogateescape")
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    readings: list[str] = []
    for form in forms:
        for variant in (form, "/".join(seg.split(";", 1)[0] for seg in form.split("/"))):
            normal = normalise_path(variant)
            if normal not in readings:
                readings.append(normal)
    return readings


def normalise_path(path: str) -> str:
    """``\\`` as ``/``, slashes merged, dot segments resolved; a trailing slash kept."""
    path = path.replace("\\", "/")
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    normal = "/" + posixpath.normpath("/" + path).lstrip("/")
    if trailing and not normal.endswith("/"):
        normal += "/"
    return normal


@attrs.frozen
class Prefix:
    """One ``allowedUrlPrefixes`` entry, compared component by component.

    A plain string prefix would let ``https://cdn.example.com`` allow
    ``https://cdn.example.com.attacker.net/``. The path is compared in every reading
    (:func:`path_readings`) of both.
    """

    scheme: str
    host: str
    port: int | None
    paths: tuple[str, ...]
    """The readings of the prefix's own path (:func:`path_readings`)."""

    @classmethod
    def parse(cls, text: str) -> Prefix:
        url = URL(text)
        paths = tuple(path_readings(url.raw_path or "/"))
        return cls(url.scheme.lower(), (url.host or "").lower(), url.port, paths)

    def same_origin(self, url: URL) -> bool:
        return (
            url.scheme.lower() == self.scheme
            and (url.host or "").lower() == self.host
            and url.port == self.port
        )

    def holds(self, reading: str) -> bool:
        """Whether a reading of a path (:func:`path_readings`) is under this prefix."""
        return any(path_allows(reading, prefix) for prefix in self.paths)


def path_allows(path: str, prefix: str) -> bool:
    """The path is the prefix's or below it: ``/game`` allows ``/game`` and ``/game/x``, not
    ``/gamehack/x``; a prefix ending in ``/`` allows what starts with it."""
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or len(path) == len(prefix) or path[len(prefix)] == "/"


def refused_address(address: str) -> str | None:
    """Why connecting to this IP address is refused (``None``: it is allowed)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (where cloud metadata services live)"
    return None


@attrs.frozen
class UrlPolicy:
    """``allowedUrlPrefixes`` and ``allowLinkLocal`` applied to a URL (403 when refused)."""

    prefixes: tuple[Prefix, ...] = ()
    allow_link_local: bool = False

    @classmethod
    def from_config(cls, prefixes: Sequence[str], allow_link_local: bool) -> UrlPolicy:
        return cls(tuple(Prefix.parse(p) for p in prefixes), allow_link_local)

    def check(self, url: URL, what: str = "url") -> None:
        if url.scheme.lower() not in ("http", "https"):
            raise UrlNotAllowed(f"{what} {redact_url(url)!r} is not http:// or https://")
        if self.prefixes:
            self._check_prefixes(url, what)
        if not self.allow_link_local and url.host:
            reason = refused_address(url.host)
            if reason:
                raise UrlNotAllowed(
                    f"{what} {redact_url(url)!r} refused: {reason}; set allowLinkLocal to allow it",
                )

    def _check_prefixes(self, url: URL, what: str) -> None:
        same_origin = [p for p in self.prefixes if p.same_origin(url)]
        readings = path_readings(url.raw_path or "/")
        outside = [
            r
            for r in readings
            if not any(p.holds(r) for p in same_origin) or _OVERLONG.intersection(r)
        ]
        if not same_origin or outside:
            read_as = ""
            if same_origin and outside[0] != readings[0]:
                read_as = f" (a server may read its path as {outside[0]!r})"
            raise UrlNotAllowed(
                f"{what} {redact_url(url)!r} is not under allowedUrlPrefixes{read_as}",
            )


class AddressRefusedError(OSError):
    """A host name resolved only to refused addresses (raised inside aiohttp's connector)."""


class GuardedResolver(AbstractResolver):
    """DNS resolution that drops refused addresses, so the checked address is the one used."""

    def __init__(self, allow_link_local: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_link_local = allow_link_local

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_link_local:
            return results
        kept = [r for r in results if refused_address(r["host"]) is None]
        if not kept and results:
            reason = refused_address(results[0]["host"])
            raise AddressRefusedError(
                f"host {host} resolves to {results[0]['host']}: {reason}; "
                "set allowLinkLocal to allow it"
            )
        return kept

    async def close(self) -> None:
        await self._inner.close()

"""Which URLs the sidecar may download, and under which file name.

Checks, in order: the URL is absolute http/https (400 otherwise), it names a file whose base
name is safe to create in ``fileDir`` (400), it is under one of ``allowedUrlPrefixes`` (403) and
its host is not a link-local or cloud-metadata address (403). Every redirect target passes the
same checks before it is followed. Host names are checked when they are resolved, by
:class:`GuardedResolver`, so a name that resolves to a metadata address (or is re-pointed to one
between the check and the connection) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import attrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from kidecar_plugins.hot_update.errors import UpdateError

MAX_URL_LENGTH = 4096
TEMP_SUFFIX = ".kidecar-tmp"
BACKUP_SUFFIX = ".kidecar-prev"

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
        raise UpdateError(400, "bad url", f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        url = URL(text.strip())
    except (ValueError, TypeError) as e:
        raise UpdateError(400, "bad url", f"url {text!r} is not a valid URL: {e}") from None
    if url.scheme.lower() not in ("http", "https"):
        raise UpdateError(400, "bad url", f"url must be http:// or https://, got {redact(url)!r}")
    if not url.host:
        raise UpdateError(400, "bad url", f"url {redact(url)!r} has no host")
    return url


def file_name(url: URL) -> str:
    """The base name of the URL's path: the name of the file in ``fileDir``; 400 if unsafe."""
    name = url.name
    problem = None
    if not name:
        problem = "does not name a file (its path ends with '/')"
    elif name in (".", "..") or "/" in name or "\\" in name:
        problem = f"names {name!r}, which is not a plain file name"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        problem = "names a file with control characters"
    elif name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX)):
        problem = f"names {name!r}, which kidecar reserves for its temporary files"
    elif len(name.encode()) > 255:
        problem = "names a file longer than 255 bytes"
    if problem:
        raise UpdateError(400, "bad url", f"url {redact(url)!r} {problem}")
    return name


def redact(url: URL | str) -> str:
    """The URL without password and query values, for logs, events and annotations.

    Presigned download URLs carry their credentials in the query string.
    """
    try:
        u = url if isinstance(url, URL) else URL(url)
        if u.password is not None:
            u = u.with_password("***")
        if u.query_string:
            u = u.with_query({k: "***" for k in u.query})
        return str(u.with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


@attrs.frozen
class Prefix:
    """One ``allowedUrlPrefixes`` entry, compared component by component.

    A plain string prefix would let ``https://cdn.example.com`` allow
    ``https://cdn.example.com.attacker.net/``.
    """

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> Prefix:
        url = URL(text)
        return cls(url.scheme.lower(), (url.host or "").lower(), url.port, url.raw_path or "/")

    def allows(self, url: URL) -> bool:
        return (
            url.scheme.lower() == self.scheme
            and (url.host or "").lower() == self.host
            and url.port == self.port
            and self.path_allows(url.raw_path)
        )

    def path_allows(self, path: str) -> bool:
        """The path is the prefix's or below it: ``/game`` allows ``/game`` and ``/game/x``,
        not ``/gamehack/x``; a prefix ending in ``/`` allows what starts with it."""
        if not path.startswith(self.path):
            return False
        return self.path.endswith("/") or len(path) == len(self.path) or path[len(self.path)] == "/"


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
            raise UpdateError(
                403, "url not allowed", f"{what} {redact(url)!r} is not http:// or https://"
            )
        if self.prefixes and not any(p.allows(url) for p in self.prefixes):
            raise UpdateError(
                403,
                "url not allowed",
                f"{what} {redact(url)!r} is not under allowedUrlPrefixes",
            )
        if not self.allow_link_local and url.host:
            reason = refused_address(url.host)
            if reason:
                raise UpdateError(
                    403,
                    "url not allowed",
                    f"{what} {redact(url)!r} refused: {reason}; set allowLinkLocal to allow it",
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

"""One call of the game's reload endpoint (``loadPatchType: request``), within limits.

* **The answer is read up to** :data:`MAX_ANSWER_BYTES`, then the connection is closed: an
  endpoint that answers forever costs nothing (its status is what counts; the first bytes are
  quoted in an error).
* **Redirects stay on the configured origin** (scheme, host and port of ``request.url``): one
  that leaves it is not followed (the call fails and says where it pointed); one that stays is
  followed, at most :data:`MAX_REDIRECTS` times, with **the same method and body** (a reload is
  never turned into a GET).
* **The address policy of downloads applies**: link-local and cloud-metadata addresses are
  refused unless ``allowLinkLocal`` (for names, when they are resolved: the session's
  :class:`~.urls.GuardedResolver`).
* Nothing is decoded: the request asks for ``Accept-Encoding: identity`` and the session never
  decompresses (a small compressed answer cannot expand in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
from yarl import URL

from kidecar_core import redact_url
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.urls import AddressRefusedError, GuardedResolver, UrlPolicy

MAX_ANSWER_BYTES = 4096
"""Bytes of the reload answer read at most."""
MAX_REDIRECTS = 5
EXCERPT_CHARS = 200
_REDIRECTS = (301, 302, 303, 307, 308)


class ReloadCallError(Exception):
    """The call did not get an answer (connection refused, redirect refused, ...)."""


@attrs.frozen
class ReloadAnswer:
    """The endpoint's final answer: its status and the first bytes of its body."""

    status: int
    excerpt: str
    url: URL


def make_session(*, allow_link_local: bool, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    """The session for reload calls: guarded resolution, no decompression, no cookies kept."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(allow_link_local)),
        headers={**headers, "Accept-Encoding": "identity"},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    policy: UrlPolicy,
    timeout: float,
    headers: Mapping[str, str],
    **body: Any,
) -> ReloadAnswer:
    """Send ``method url`` (``body``: aiohttp's ``json=`` or ``params=``) and read the answer
    within the limits above. Raises :class:`ReloadCallError` or ``aiohttp.ClientError`` /
    ``TimeoutError`` when there is no answer to judge."""
    current = url
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    for _ in range(MAX_REDIRECTS + 1):
        _check(policy, current, url)
        try:
            async with session.request(
                method,
                current,
                allow_redirects=False,
                timeout=client_timeout,
                headers=dict(headers),
                **body,
            ) as response:
                if response.status in _REDIRECTS and response.headers.get("Location"):
                    current = current.join(URL(response.headers["Location"]))
                    response.close()
                    continue
                data = await response.content.read(MAX_ANSWER_BYTES)
                response.close()  # never read (or drain) the rest
                return ReloadAnswer(response.status, excerpt(data), current)
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefusedError):
                raise ReloadCallError(str(e.os_error)) from None
            raise
    raise ReloadCallError(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")


def _check(policy: UrlPolicy, target: URL, configured: URL) -> None:
    if (target.scheme, target.host, target.port) != (
        configured.scheme,
        configured.host,
        configured.port,
    ):
        raise ReloadCallError(
            f"redirected to {redact_url(target)}, off the configured origin "
            f"{configured.scheme}://{configured.host}:{configured.port}: not followed"
        )
    try:
        policy.check(target, "reload url")
    except UpdateError as e:  # the address policy refused it
        raise ReloadCallError(e.message) from None


def excerpt(data: bytes) -> str:
    """The first characters of an answer, printable, for an error message."""
    text = data.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return "".join(c if c.isprintable() else " " for c in text).strip()

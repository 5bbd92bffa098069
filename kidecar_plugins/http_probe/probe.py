"""One probe of one endpoint: an HTTP request, bounded in time and size, and its state.

:func:`probe_once` never raises for anything the game or the network does: a timeout, a refused
connection, an unexpected status, a body that is too large or holds no state are all a failed
:class:`ProbeOutcome` with a reason.  Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import aiohttp
import attrs
from yarl import URL

from kidecar_plugins.http_probe.config import Endpoint
from kidecar_plugins.http_probe.extract import ExtractFailure, StatePath, extract_state

Outcome = Literal["success", "timeout", "error", "status", "body"]
"""``success``; ``timeout``; ``error`` (connection, protocol); ``status`` (not the expected
code); ``body`` (too large, not text/JSON, path not found)."""

OUTCOMES: tuple[Outcome, ...] = ("success", "timeout", "error", "status", "body")
_CHUNK = 64 * 1024


@attrs.frozen
class ProbeOutcome:
    """What one probe found: the state (``None`` if it failed), why it failed, how long it took."""

    outcome: Outcome
    state: str | None = None
    reason: str = ""
    status: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state is not None


def display_url(url: str) -> str:
    """The URL for logs and metrics: without credentials or query (they may hold tokens)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "<invalid url>"


def make_session() -> aiohttp.ClientSession:
    """The HTTP client of one plugin run: no cookies, no proxy from the environment.

    Each probe carries its own deadline (``asyncio.timeout``), so the session has none.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "kidecar-http-probe"},
        trust_env=False,
    )


async def probe_once(
    session: aiohttp.ClientSession, endpoint: Endpoint, path: StatePath | None
) -> ProbeOutcome:
    """Send one request to ``endpoint`` and extract its state; see the module docstring."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(endpoint.timeout):
            outcome = await _request(session, endpoint, path)
    except TimeoutError:
        outcome = ProbeOutcome("timeout", reason=f"no complete answer within {endpoint.timeout:g}s")
    except aiohttp.ClientError as e:
        outcome = ProbeOutcome("error", reason=_describe(e))
    except OSError as e:
        outcome = ProbeOutcome("error", reason=_describe(e))
    except Exception as e:
        # The game's HTTP server is untrusted input: a malformed answer can make the client
        # raise errors outside its documented hierarchy (e.g. a ValueError from a header
        # parser).  A probe that went wrong is a failed probe, not a crashed plugin.
        outcome = ProbeOutcome("error", reason=_describe(e))
    return attrs.evolve(outcome, seconds=loop.time() - started)


async def _request(
    session: aiohttp.ClientSession, endpoint: Endpoint, path: StatePath | None
) -> ProbeOutcome:
    data = endpoint.body.encode() if endpoint.body is not None else None
    async with session.request(
        endpoint.method, endpoint.url, headers=dict(endpoint.headers), data=data
    ) as response:
        if response.status != endpoint.expected_status_code:
            return ProbeOutcome(
                "status",
                reason=f"status {response.status}, expected {endpoint.expected_status_code}",
                status=response.status,
            )
        body = await _read_capped(response, endpoint.max_body_bytes)
        if body is None:
            return ProbeOutcome(
                "body",
                reason=f"answer larger than {endpoint.max_body_bytes} bytes",
                status=response.status,
            )
    state = extract_state(body, path)
    if isinstance(state, ExtractFailure):
        return ProbeOutcome("body", reason=state.reason, status=response.status)
    return ProbeOutcome("success", state=state, status=response.status)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it exceeds ``limit`` bytes (the rest is never read)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _describe(error: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, short enough for a log line or an Event."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    name = type(error).__name__
    return f"{name}: {text}" if text else name

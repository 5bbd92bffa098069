"""One probe of one endpoint: an HTTP request, bounded in time and size, and its state.

:func:`probe_once` never raises for anything the game or the network does: a timeout, a refused
connection, an untrusted certificate, an unexpected status, a body that is too large or holds no
state are all a failed :class:`~kidecar_core.ProbeOutcome` with a reason.  Only cancellation
propagates.

Redirects follow kubelet's HTTP probes (kubernetes/kubernetes ``pkg/probe/http/http.go``,
``RedirectChecker``): followed while the new URL's host name equals the first request's, at most
10 in a row; a redirect to another host is not followed and its 3xx answer is the one checked
against ``expectedStatusCode``.  Method and body change like Go's client (``net/http``
``redirectBehavior``): 301/302/303 turn a request other than GET/HEAD into a GET without body,
307/308 repeat it as it was.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict
from yarl import URL

from kidecar_core import ProbeOutcome, read_regular_file
from kidecar_plugins.http_probe.config import Endpoint, Redirects
from kidecar_plugins.http_probe.extract import ExtractFailure, StatePath, extract_state
from kidecar_plugins.http_probe.status import StatusCodes

OUTCOMES: tuple[str, ...] = ("success", "timeout", "error", "status", "body")
"""``success``; ``timeout``; ``error`` (connection, TLS, protocol, too many redirects);
``status`` (not an expected code); ``body`` (too large, not text/JSON, path not found)."""

MAX_REDIRECTS = 10
"""Redirects followed in a row before the probe fails (kubelet's and Go's limit)."""

_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")


@attrs.frozen
class HttpTarget:
    """An endpoint ready to be probed: its compiled path, parsed status codes and TLS setting.

    ``tls`` is what aiohttp's ``ssl=`` takes: ``True`` (verify with the system's CAs), ``False``
    (``insecureSkipVerify``) or a context trusting ``caFile``.
    """

    endpoint: Endpoint
    path: StatePath | None
    statuses: StatusCodes
    redirects: Redirects
    tls: ssl.SSLContext | bool = True

    @classmethod
    def prepare(cls, endpoint: Endpoint) -> HttpTarget:
        """Compile what the config holds; ``ValueError`` (with the reason) if ``caFile`` is bad."""
        path = endpoint.json_path_config.compile() if endpoint.json_path_config else None
        return cls(endpoint, path, endpoint.statuses, endpoint.redirects, tls_setting(endpoint))


MAX_CA_FILE_BYTES = 1024 * 1024
"""Largest ``caFile`` read (a bundle of every public CA is ~220 KiB)."""


def tls_setting(endpoint: Endpoint) -> ssl.SSLContext | bool:
    """``False`` with ``insecureSkipVerify``, a context trusting ``caFile``, else ``True``.

    Raises ``ValueError`` naming the problem when ``caFile`` cannot be read or holds no PEM
    certificate.
    """
    if endpoint.insecure_skip_verify:
        return False
    if endpoint.ca_file is None:
        return True
    try:
        # Read here (a regular file only, at most 1 MiB): OpenSSL would wait on a FIFO for ever.
        data = read_regular_file(endpoint.ca_file, MAX_CA_FILE_BYTES)
        if len(data) > MAX_CA_FILE_BYTES:
            raise ValueError(
                f"cannot load {endpoint.ca_file}: larger than {MAX_CA_FILE_BYTES // 1024} KiB"
            )
        return ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except OSError as e:
        # ssl.SSLError is an OSError too; its strerror is None and its text is in args.
        reason = e.strerror if e.strerror and not isinstance(e, ssl.SSLError) else str(e)
        raise ValueError(f"cannot load {endpoint.ca_file}: {reason}") from None


def display_url(url: str | URL) -> str:
    """The URL for logs and metrics: without credentials or query (they may hold tokens)."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
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


async def probe_once(session: aiohttp.ClientSession, target: HttpTarget) -> ProbeOutcome:
    """Send one request (following redirects per the target) and extract its state."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout = target.endpoint.timeout
    try:
        async with asyncio.timeout(timeout):
            outcome = await _request(session, target)
    except TimeoutError:
        outcome = ProbeOutcome("timeout", reason=f"no complete answer within {timeout:g}s")
    except aiohttp.ClientConnectorCertificateError as e:
        outcome = ProbeOutcome("error", reason=_certificate_reason(e))
    except (aiohttp.ClientError, OSError) as e:
        outcome = ProbeOutcome("error", reason=_describe(e))
    except Exception as e:
        # The game's HTTP server is untrusted input: a malformed answer can make the client
        # raise errors outside its documented hierarchy (e.g. a ValueError from a header
        # parser).  A probe that went wrong is a failed probe, not a crashed plugin.
        outcome = ProbeOutcome("error", reason=_describe(e))
    return attrs.evolve(outcome, seconds=loop.time() - started)


@attrs.define
class _Hop:
    """The request being sent: changes along a chain of redirects."""

    method: str
    url: URL
    headers: CIMultiDict[str]
    data: bytes | None
    host: str | None


async def _request(session: aiohttp.ClientSession, target: HttpTarget) -> ProbeOutcome:
    endpoint = target.endpoint
    data = endpoint.body.encode() if endpoint.body is not None else None
    url = URL(endpoint.url)
    hop = _Hop(endpoint.method, url, CIMultiDict(endpoint.headers), data, url.host)
    for _ in range(MAX_REDIRECTS + 1):
        async with session.request(
            hop.method,
            hop.url,
            headers=hop.headers,
            data=hop.data,
            allow_redirects=False,
            ssl=target.tls,
        ) as response:
            location = _redirect_location(response)
            if location is None:
                return await _answer(response, target)
            if not _may_follow(target.redirects, hop, location):
                note = f" (redirect to {display_url(location)} not followed)"
                return await _answer(response, target, note)
        _redirect(hop, response.status, location)
    return ProbeOutcome("error", reason=f"stopped after {MAX_REDIRECTS} redirects")


def _redirect_location(response: aiohttp.ClientResponse) -> URL | None:
    """Where a redirect points (absolute), or ``None`` for an answer that is not a redirect."""
    if response.status not in _REDIRECT_STATUSES:
        return None
    location = response.headers.get("Location")
    if not location:
        return None
    return response.url.join(URL(location))


def _may_follow(policy: Redirects, hop: _Hop, location: URL) -> bool:
    if policy == "Never":
        return False
    if location.scheme not in ("http", "https"):
        return False
    return policy == "Always" or location.host == hop.host


def _redirect(hop: _Hop, status: int, location: URL) -> None:
    """Turn ``hop`` into the request a redirect asks for (Go's rules, see the module doc)."""
    if status in (301, 302, 303) and hop.method not in ("GET", "HEAD"):
        hop.method, hop.data = "GET", None
        hop.headers.popall("Content-Type", None)
    if location.host != hop.url.host:
        for name in _CREDENTIAL_HEADERS:
            hop.headers.popall(name, None)
    hop.url = location


async def _answer(
    response: aiohttp.ClientResponse, target: HttpTarget, note: str = ""
) -> ProbeOutcome:
    """The outcome of the final answer: its status checked, its body read and extracted."""
    status = response.status
    detail: dict[str, Any] = {"status": status}
    if status not in target.statuses:
        reason = f"status {status}{note}, expected {target.statuses}"
        return ProbeOutcome("status", reason=reason, detail=detail)
    limit = target.endpoint.max_body_bytes
    body = await _read_capped(response, limit)
    if body is None:
        return ProbeOutcome("body", reason=f"answer larger than {limit} bytes", detail=detail)
    state = extract_state(body, target.path)
    if isinstance(state, ExtractFailure):
        return ProbeOutcome("body", reason=state.reason, detail=detail)
    return ProbeOutcome("success", state=state, detail=detail)


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


def _certificate_reason(error: aiohttp.ClientConnectorCertificateError) -> str:
    cause = getattr(error.certificate_error, "verify_message", None) or error.certificate_error
    return (
        f"TLS certificate of {error.host} not trusted ({cause}): set caFile to the CA that signed "
        "it, or insecureSkipVerify: true (what kubelet does for its HTTPS probes)"
    )


def _describe(error: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, short enough for a log line or an Event."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    name = type(error).__name__
    return f"{name}: {text}" if text else name

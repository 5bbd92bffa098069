"""``tcpSocket`` and ``httpGet`` probes, with the kubelet's semantics.

The sidecar shares the pod's network namespace, so it reaches the game as the kubelet does.
The host defaults to the **pod's IP** (``status.podIP``, what the kubelet and kruise-daemon
probe), and to ``127.0.0.1`` while the pod has none (local mode); a probe's ``host`` wins.

``tcpSocket``: success when a TCP connection opens within ``timeoutSeconds``; the message is
empty, or the error (``dial tcp 10.0.0.7:7777: connect: connection refused``).

``httpGet`` (``k8s.io/kubernetes/pkg/probe/http``): ``GET`` with the probe's headers
(``User-Agent: kube-probe`` and ``Accept: */*`` unless given; an empty ``Accept`` removes it;
a ``Host`` header sets the request's host), HTTPS without certificate verification, no
keep-alive, no proxy, no cookies.  Redirects are followed to the same host only, at most 10;
a redirect to another host ends the probe with that 3xx answer.  ``timeoutSeconds`` bounds the
whole exchange.  Status 200-299: success, message = the body (first 10 KiB); 300-399 (a redirect
not followed): success, message ``Probe terminated redirects, Response body: ...`` (the kubelet's
"warning", which Kruise counts as success); anything else: failure, message
``HTTP probe failed with statuscode: N``; no answer: failure, message = the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from kidecar_plugins.pod_probe.outcome import MAX_OUTPUT_BYTES, Outcome, decode

USER_AGENT = "kube-probe"
"""The product token of the probes' ``User-Agent``: kruise-daemon sends
``kruise-daemon/<version> kube-probe`` and the kubelet ``kube-probe/<version>``, so a game that
recognises probes looks for ``kube-probe`` (kruise-daemon's ``prober.go``, ``userAgent``)."""

MAX_REDIRECTS = 10
"""Go's http.Client default, kept by the kubelet's same-host redirect checker."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address (Go's ``net.JoinHostPort``)."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


async def run_tcp(host: str, port: int, timeout: float) -> Outcome:
    """Open and close one TCP connection to ``host:port``."""
    address = host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(False, f"dial tcp {address}: i/o timeout", "timed out")
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        text = f"dial tcp {address}: connect: {reason.lower()}"
        return Outcome(False, text, text)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(True, "")


def make_session() -> aiohttp.ClientSession:
    """The HTTP client of the probes: no certificate checks, keep-alive, proxies or cookies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=False, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def probe_url(scheme: str, host: str, port: int, path: str) -> URL:
    """The URL of an ``httpGet`` probe (``path`` as given, ``/`` added in front if missing)."""
    if not path.startswith("/"):
        path = "/" + path
    return URL(f"{scheme.lower()}://{host_port(host, port)}{path}")


def request_headers(given: tuple[tuple[str, str], ...]) -> tuple[CIMultiDict[str], set[str]]:
    """The probe's headers with the kubelet's defaults, and the headers aiohttp must not add."""
    headers: CIMultiDict[str] = CIMultiDict(given)
    skip: set[str] = set()
    headers.setdefault("User-Agent", USER_AGENT)
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif not headers.get("Accept"):
        del headers["Accept"]
        skip.add("Accept")
    return headers, skip


async def run_http(
    session: aiohttp.ClientSession,
    url: URL,
    headers: tuple[tuple[str, str], ...],
    timeout: float,
) -> Outcome:
    """One ``httpGet`` probe of ``url``; never raises for an error of the target."""
    sent, skip = request_headers(headers)
    current = url
    try:
        async with asyncio.timeout(timeout):
            for hop in range(MAX_REDIRECTS + 1):
                status, location, body = await _get(session, current, sent, skip)
                target = current.join(URL(location)) if location else None
                if status not in _REDIRECTS or target is None or target.host != url.host:
                    return _judge(status, body)
                if hop + 1 >= MAX_REDIRECTS:
                    break
                current = target
    except TimeoutError:
        return _failed(current, f"timed out after {timeout:g}s (Client.Timeout exceeded)")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return _failed(current, str(e) or type(e).__name__)
    return _failed(current, f"stopped after {MAX_REDIRECTS} redirects")


async def _get(
    session: aiohttp.ClientSession, url: URL, headers: CIMultiDict[str], skip: set[str]
) -> tuple[int, str | None, bytes]:
    async with session.get(
        url, headers=headers, skip_auto_headers=skip, allow_redirects=False
    ) as response:
        body = bytearray()
        while len(body) < MAX_OUTPUT_BYTES:
            chunk = await response.content.read(MAX_OUTPUT_BYTES - len(body))
            if not chunk:
                break
            body += chunk
        return response.status, response.headers.get("Location"), bytes(body)


def _judge(status: int, body: bytes) -> Outcome:
    text = decode(body)
    if 200 <= status < 300:
        return Outcome(True, text)
    if 300 <= status < 400:
        return Outcome(True, f"Probe terminated redirects, Response body: {text}")
    message = f"HTTP probe failed with statuscode: {status}"
    return Outcome(False, message, message)


def _failed(url: URL, reason: str) -> Outcome:
    text = f'Get "{url}": {reason}'
    return Outcome(False, text, text)

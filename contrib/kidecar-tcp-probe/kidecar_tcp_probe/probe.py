"""One TCP probe: connect, optionally send a payload and wait for the expected reply.

The whole probe (name resolution, connect, send, reply) runs under the endpoint's ``timeout``.
The outcome (kidecar's :class:`~kidecar_core.ProbeOutcome`) says how it ended (``success``,
``refused``, ``error``, ``timeout``, ``reply``) and why, in words a game operator can act on.
The connection is always closed, gracefully when the peer lets us and by abort otherwise, so that
a probe never leaks a socket.
"""

from __future__ import annotations

import asyncio
import re
import time

from kidecar_core import ProbeOutcome

from kidecar_tcp_probe.config import REACHABLE, Endpoint

CLOSE_GRACE = 0.5
"""Seconds a graceful close may take before the connection is aborted."""

OUTCOMES = ("success", "refused", "error", "timeout", "reply")


class _ReplyMismatch(Exception):
    """The reply ended (or grew too long) without matching ``expect``."""


def preview(data: bytes, limit: int = 40) -> str:
    """A short, printable rendering of reply bytes for messages."""
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


async def probe_once(endpoint: Endpoint, up_state: str = REACHABLE) -> ProbeOutcome:
    """Probe ``endpoint`` once; a success reports ``up_state``.  Never raises (except
    ``CancelledError``)."""
    started = time.monotonic()
    received = bytearray()
    phase = "connecting"
    writer: asyncio.StreamWriter | None = None

    def done(outcome: str, reason: str) -> ProbeOutcome:
        state = up_state if outcome == "success" else None
        return ProbeOutcome(outcome, state, reason, time.monotonic() - started)

    try:
        async with asyncio.timeout(endpoint.timeout):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            payload = endpoint.payload
            if payload:
                phase = "sending"
                writer.write(payload)
                await writer.drain()
            pattern = endpoint.pattern
            if pattern is not None:
                phase = "waiting for the reply"
                await _expect(reader, pattern, endpoint.max_reply_bytes, received)
        return done("success", "")
    except TimeoutError:
        reason = f"no answer within {endpoint.timeout:g}s while {phase}"
        if phase == "waiting for the reply":
            got = preview(bytes(received)) if received else "nothing"
            reason += f" (got {got}, expected /{endpoint.expect}/)"
        return done("timeout", reason)
    except _ReplyMismatch as e:
        return done("reply", str(e))
    except ConnectionRefusedError:
        return done("refused", "connection refused (nothing listens on the port)")
    except OSError as e:
        return done("error", f"{phase}: {e.strerror or e}")
    except (ValueError, UnicodeError) as e:  # a host name the resolver refuses outright
        return done("error", f"{phase}: {e}")
    finally:
        if writer is not None:
            await _close(writer)


async def _expect(
    reader: asyncio.StreamReader, pattern: re.Pattern[bytes], limit: int, received: bytearray
) -> None:
    """Read until ``pattern`` is found in the reply; raise ``_ReplyMismatch`` when it cannot be."""
    while True:
        chunk = await reader.read(min(4096, limit - len(received) + 1))
        if not chunk:
            raise _ReplyMismatch(
                f"connection closed; reply {preview(bytes(received))} "
                f"does not match /{pattern.pattern.decode(errors='replace')}/"
            )
        received.extend(chunk)
        if pattern.search(received):
            return
        if len(received) > limit:
            raise _ReplyMismatch(
                f"no match for /{pattern.pattern.decode(errors='replace')}/ in the first "
                f"{limit} bytes of the reply ({preview(bytes(received))})"
            )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        # A peer that does not read (its buffer is full) would hold a graceful close forever.
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise

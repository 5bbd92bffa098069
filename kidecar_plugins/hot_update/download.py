"""Downloading a file into a temporary file next to its destination.

The body is streamed into a temporary file in ``fileDir`` (never held in memory), hashed and
counted on the way, against an overall timeout. The file holds **the bytes the server sent**:
the request says ``Accept-Encoding: identity`` and nothing is decoded (a ``.tar.gz`` served with
``Content-Encoding: gzip`` stays the ``.tar.gz``, as ``curl -o`` stores it), so its sha256 is
the served file's. Only a ``200`` is a download: a ``206`` is a part of a file, a ``204`` no
file. The temporary file is removed on every failure; :mod:`.files` swaps a complete one in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import aiohttp
import attrs
from yarl import URL

from kidecar_core import redact_url
from kidecar_plugins.hot_update.errors import (
    ChecksumMismatch,
    DownloadFailed,
    TooLarge,
    UrlNotAllowed,
)
from kidecar_plugins.hot_update.files import discard, unwritable
from kidecar_plugins.hot_update.urls import (
    TEMP_SUFFIX,
    AddressRefusedError,
    GuardedResolver,
    UrlPolicy,
)

log = logging.getLogger("kidecar.plugin.hot_update")

MAX_REDIRECTS = 5
WRITE_BATCH = 1024 * 1024
"""Chunks are written (and hashed) in a worker thread once this many bytes are buffered."""
READ_CHUNK = 256 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
"""The file is stored as sent: ask for it unencoded (the session also never decodes)."""


@attrs.frozen
class Downloaded:
    """A complete download, still in its temporary file."""

    temp: Path
    sha256: str
    size: int
    seconds: float


async def download(
    session: aiohttp.ClientSession,
    url: URL,
    *,
    directory: Path,
    name: str,
    policy: UrlPolicy,
    max_bytes: int,
    timeout: float,
    expected_sha256: str | None,
    on_bytes: Callable[[int], None] | None = None,
) -> Downloaded:
    """Download ``url`` into a temporary file in ``directory``; raise :class:`UpdateError`.

    Statuses: 403 (a redirect or the resolved address is refused by ``policy``), 413 (larger
    than ``max_bytes``), 422 (checksum mismatch), 502 (connection failure, timeout, an answer
    other than 200, too many redirects), 500 (the file cannot be written: disk full, also when
    reported at close, fileDir gone). The temporary file is removed on every failure.
    """
    started = time.monotonic()
    temp, out = open_temporary(directory, name)
    sink = _Sink(out)
    try:
        try:
            async with asyncio.timeout(timeout):
                rest, size = await _fetch(session, url, sink, policy, max_bytes, on_bytes)
        except BaseException:
            with contextlib.suppress(OSError):
                out.close()  # the file is discarded: its last bytes do not matter
            raise
        # The last batch, the fsync and the close: one hand-off to a thread, not two.
        await asyncio.to_thread(sink.finish, rest)
        digest = sink.digest.hexdigest()
    except _WriteError as e:
        discard(temp)
        raise unwritable(directory, e.error) from None
    except TimeoutError:
        discard(temp)
        raise DownloadFailed(
            "download timed out",
            f"download of {redact_url(url)} took longer than {timeout:g}s",
        ) from None
    except BaseException:
        discard(temp)
        raise
    if expected_sha256 is not None and digest != expected_sha256:
        discard(temp)
        raise ChecksumMismatch(
            "checksum mismatch",
            f"sha256 of the downloaded file is {digest}, expected {expected_sha256}; "
            "the previous file is kept",
        )
    return Downloaded(temp, digest, size, time.monotonic() - started)


def make_session(*, allow_link_local: bool, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    """The session for downloads: guarded resolution (:class:`~.urls.GuardedResolver`), the
    body never decoded (``auto_decompress=False``), no cookies kept, no overall timeout (the
    caller's ``downloadTimeoutSeconds`` applies)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(allow_link_local)),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        headers={**headers, **REQUEST_HEADERS},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def open_temporary(directory: Path, name: str) -> tuple[Path, IO[bytes]]:
    """A new temporary file for ``name`` in ``directory`` (500 when it cannot be created)."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as e:
        raise unwritable(directory, e) from None
    return Path(temp_name), os.fdopen(fd, "wb")


def close_synced(f: IO[bytes]) -> None:
    """Flush, fsync and close ``f``. Any of them may fail with ENOSPC (a network file system
    reports a full disk at close): :class:`_WriteError`, which becomes ``cannot write file``."""
    error: OSError | None = None
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        error = e
    try:
        f.close()
    except OSError as e:
        error = error or e
    if error is not None:
        raise _WriteError(error)


def start_writeback(out: IO[bytes], offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` of ``out`` to disk now, without waiting.

    ``POSIX_FADV_DONTNEED`` on dirty pages starts their writeback (Linux ``mm/fadvise.c``:
    ``WB_SYNC_NONE``) and drops them from the page cache once clean.  Without it the kernel
    writes a file smaller than its dirty-background threshold (10 % of RAM) only at the final
    ``fsync``: the disk would wait for the whole download, then the download for the disk.  With
    it they overlap, the final ``fsync`` waits for the last batch only, and a large download
    does not fill the page cache.  Advisory: where it is not supported, nothing happens.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or length <= 0:
        return
    with contextlib.suppress(OSError):
        advise(out.fileno(), offset, length, os.POSIX_FADV_DONTNEED)


class _Sink:
    """Where the body goes: hashed and written batch by batch (in a worker thread)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, chunks: list[bytes]) -> None:
        """Hash and write ``chunks``, then start their writeback. Blocking."""
        length = sum(map(len, chunks))
        try:
            for chunk in chunks:
                self.digest.update(chunk)
                self.out.write(chunk)
            self.out.flush()
        except OSError as e:  # disk full, file system gone: not the download's fault
            raise _WriteError(e) from None
        start_writeback(self.out, self.written, length)
        self.written += length

    def finish(self, chunks: list[bytes]) -> None:
        """Write the last ``chunks``, then flush, fsync and close the file (closed also when
        the write fails). Blocking."""
        if chunks:
            try:
                self.write(chunks)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.out.close()  # the file is discarded: its last bytes do not matter
                raise
        close_synced(self.out)


class _WriteError(Exception):
    """Writing the temporary file failed (kept apart from the network's OSErrors)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def _fetch(
    session: aiohttp.ClientSession,
    url: URL,
    sink: _Sink,
    policy: UrlPolicy,
    max_bytes: int,
    on_bytes: Callable[[int], None] | None,
) -> tuple[list[bytes], int]:
    """Follow redirects (each target checked by ``policy``) and stream the body into ``sink``;
    return the last batch (not yet written, at most ``WRITE_BATCH`` + ``READ_CHUNK`` bytes) and
    the size."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with session.get(
                current, allow_redirects=False, headers=REQUEST_HEADERS
            ) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise _failed(url, f"HTTP {response.status} without a Location")
                    current = current.join(URL(location))
                    policy.check(current, f"redirect from {redact_url(url)} to")
                    continue
                if response.status != 200:
                    raise _failed(url, _not_a_download(response.status), f"HTTP {response.status}")
                length = response.content_length
                if length is not None and length > max_bytes:
                    raise _too_large(url, max_bytes, f"Content-Length is {length}")
                return await _stream(response, url, sink, max_bytes, on_bytes)
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefusedError):
                raise UrlNotAllowed(str(e.os_error)) from None
            raise _failed(url, f"cannot connect: {e.os_error}") from None
        except (aiohttp.ClientError, ValueError, OSError) as e:
            raise _failed(url, f"{type(e).__name__}: {e}") from None
    raise _failed(url, f"more than {MAX_REDIRECTS} redirects")


async def _stream(
    response: aiohttp.ClientResponse,
    url: URL,
    sink: _Sink,
    max_bytes: int,
    on_bytes: Callable[[int], None] | None,
) -> tuple[list[bytes], int]:
    size = 0
    batch: list[bytes] = []
    buffered = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(url, max_bytes, f"more than {max_bytes} bytes arrived")
        if on_bytes is not None:
            on_bytes(len(chunk))
        # A full batch is written when more arrives: the last one is left to sink.finish().
        if buffered >= WRITE_BATCH:
            await asyncio.to_thread(sink.write, batch)
            batch, buffered = [], 0
        batch.append(chunk)
        buffered += len(chunk)
    return batch, size


def _not_a_download(status: int) -> str:
    if status == 206:
        return "HTTP 206 Partial Content: a part of the file, not the file (only 200 is a download)"
    if 200 <= status <= 299:
        return f"HTTP {status} is not a download (only 200 is)"
    return f"HTTP {status}"


def _failed(url: URL, detail: str, short: str = "") -> DownloadFailed:
    reason = f"download failed: {short}" if short else "download failed"
    return DownloadFailed(reason, f"download of {redact_url(url)} failed: {detail}")


def _too_large(url: URL, max_bytes: int, detail: str) -> TooLarge:
    return TooLarge(
        "file too large", f"{redact_url(url)} is larger than maxBytes ({max_bytes}): {detail}"
    )

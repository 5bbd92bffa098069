"""Downloading a file next to its destination, and swapping it in atomically.

The body is streamed into a temporary file in ``fileDir`` (never held in memory), hashed and
counted on the way, against an overall timeout. Only a complete, verified file is renamed over
the previous one; the previous one is kept as a hard link until the game has been notified, so
that a failed notification can put it back. Temporary files are removed on every failure and, in
case the sidecar was killed, when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import aiohttp
import attrs
from yarl import URL

from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.urls import (
    BACKUP_SUFFIX,
    TEMP_SUFFIX,
    AddressRefusedError,
    UrlPolicy,
    redact,
)

log = logging.getLogger("kidecar.plugin.hot_update")

MAX_REDIRECTS = 5
WRITE_BATCH = 1024 * 1024
"""Chunks are written (and hashed) in a worker thread once this many bytes are buffered."""
READ_CHUNK = 256 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)


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
    than ``max_bytes``), 422 (checksum mismatch), 502 (connection failure, timeout, non-2xx
    answer, too many redirects), 500 (the file cannot be written: disk full, fileDir gone).
    The temporary file is removed on every failure.
    """
    started = time.monotonic()
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as e:
        raise _unwritable(directory, e) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            async with asyncio.timeout(timeout):
                digest, size = await _fetch(session, url, f, policy, max_bytes, on_bytes)
            try:
                await asyncio.to_thread(_sync, f)
            except OSError as e:
                raise _WriteError(e) from None
    except _WriteError as e:
        _discard(temp)
        raise _unwritable(directory, e.error) from None
    except TimeoutError:
        _discard(temp)
        raise UpdateError(
            502, "download timed out", f"download of {redact(url)} took longer than {timeout:g}s"
        ) from None
    except BaseException:
        _discard(temp)
        raise
    if expected_sha256 is not None and digest != expected_sha256:
        _discard(temp)
        raise UpdateError(
            422,
            "checksum mismatch",
            f"sha256 of the downloaded file is {digest}, expected {expected_sha256}; "
            "the previous file is kept",
        )
    return Downloaded(temp, digest, size, time.monotonic() - started)


class _WriteError(Exception):
    """Writing the temporary file failed (kept apart from the network's OSErrors)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _sync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


async def _fetch(
    session: aiohttp.ClientSession,
    url: URL,
    out: IO[bytes],
    policy: UrlPolicy,
    max_bytes: int,
    on_bytes: Callable[[int], None] | None,
) -> tuple[str, int]:
    """Follow redirects (each target checked by ``policy``) and stream the body into ``out``."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with session.get(current, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise _failed(url, f"HTTP {response.status} without a Location")
                    current = current.join(URL(location))
                    policy.check(current, f"redirect from {redact(url)} to")
                    continue
                if not 200 <= response.status <= 299:
                    raise _failed(url, f"HTTP {response.status}", short=f"HTTP {response.status}")
                length = response.content_length
                if length is not None and length > max_bytes:
                    raise _too_large(url, max_bytes, f"Content-Length is {length}")
                return await _stream(response, url, out, max_bytes, on_bytes)
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefusedError):
                raise UpdateError(403, "url not allowed", str(e.os_error)) from None
            raise _failed(url, f"cannot connect: {e.os_error}") from None
        except (aiohttp.ClientError, ValueError, OSError) as e:
            raise _failed(url, f"{type(e).__name__}: {e}") from None
    raise _failed(url, f"more than {MAX_REDIRECTS} redirects")


async def _stream(
    response: aiohttp.ClientResponse,
    url: URL,
    out: IO[bytes],
    max_bytes: int,
    on_bytes: Callable[[int], None] | None,
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    batch: list[bytes] = []
    buffered = 0

    def write(chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        except OSError as e:  # disk full, file system gone: not the download's fault
            raise _WriteError(e) from None

    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(url, max_bytes, f"more than {max_bytes} bytes arrived")
        if on_bytes is not None:
            on_bytes(len(chunk))
        batch.append(chunk)
        buffered += len(chunk)
        if buffered >= WRITE_BATCH:
            await asyncio.to_thread(write, batch)
            batch, buffered = [], 0
    if batch:
        await asyncio.to_thread(write, batch)
    return digest.hexdigest(), size


def _failed(url: URL, detail: str, short: str = "") -> UpdateError:
    reason = f"download failed: {short}" if short else "download failed"
    return UpdateError(502, reason, f"download of {redact(url)} failed: {detail}")


def _unwritable(directory: Path, error: OSError) -> UpdateError:
    return UpdateError(
        500, "cannot write file", f"cannot write into {directory}: {error.strerror or error}"
    )


def _too_large(url: URL, max_bytes: int, detail: str) -> UpdateError:
    return UpdateError(
        413, "file too large", f"{redact(url)} is larger than maxBytes ({max_bytes}): {detail}"
    )


# -- installing -----------------------------------------------------------------------------


@attrs.frozen
class Installation:
    """A file swapped in, with what it replaced kept until :meth:`commit` or :meth:`rollback`."""

    target: Path
    backup: Path | None

    def commit(self) -> None:
        """The game has the new file: drop the previous one."""
        if self.backup is not None:
            self.backup.unlink(missing_ok=True)

    def rollback(self) -> None:
        """Put the previous file back (or remove the new one when there was none)."""
        if self.backup is not None:
            os.replace(self.backup, self.target)
        else:
            self.target.unlink(missing_ok=True)
        fsync_dir(self.target.parent)


def install(temp: Path, target: Path) -> Installation:
    """Atomically replace ``target`` with ``temp`` (already fsynced), keeping a backup link.

    Blocking (file system calls): run it in a thread.
    """
    link = target.parent / f".{target.name}{BACKUP_SUFFIX}"
    link.unlink(missing_ok=True)
    try:
        previous = target.lstat()
    except FileNotFoundError:
        previous = None
    backup: Path | None = None
    if previous is not None:
        if stat.S_ISDIR(previous.st_mode):
            raise UpdateError(500, "target is a directory", f"{target} is a directory")
        try:
            os.link(target, link, follow_symlinks=False)
        except OSError:  # a file system without hard links: a copy does the same job
            shutil.copy2(target, link, follow_symlinks=False)
        backup = link
    # The game container may run as another user: the file must stay readable for it.
    mode = stat.S_IMODE(previous.st_mode) if previous and stat.S_ISREG(previous.st_mode) else 0o644
    os.chmod(temp, mode)
    os.replace(temp, target)
    fsync_dir(target.parent)
    return Installation(target, backup)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str | None:
    """sha256 of a regular file (``None`` when it does not exist). Blocking."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(WRITE_BATCH):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return digest.hexdigest()


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary and backup files a killed sidecar left behind. Blocking."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed

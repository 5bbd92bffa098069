"""The files in ``fileDir``: swapping a download in, hashing what is there, cleaning up.

kidecar only ever replaces, hashes or removes **regular files** (a symlink at the target name is
replaced as a link, never followed for writing). Anything else at a name kidecar would use (a
directory, a FIFO, a socket, a device) is refused with a clear error, or skipped with a warning
when cleaning up, and never opened: ``open()`` of a FIFO blocks until someone writes to it.

Every function here blocks (file-system calls): the updater runs them with :func:`blocking`,
which bounds the time they may take, so that a file system that stops answering fails the update
instead of holding the update lock forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs

from kidecar_plugins.hot_update.errors import InternalError
from kidecar_plugins.hot_update.urls import BACKUP_SUFFIX, TEMP_SUFFIX

log = logging.getLogger("kidecar.plugin.hot_update")

FILE_TIMEOUT = 60.0
"""Seconds one file-system step (install, hash, cleanup) may take before the update fails."""
READ_CHUNK = 1024 * 1024
T = TypeVar("T")


FILE_SYSTEM = ("file system not responding", "the file system of fileDir does not answer")
"""What :func:`blocking` says by default when its call takes too long: (reason, cause)."""


async def blocking(
    call: Callable[[], T],
    what: str,
    timeout: float = FILE_TIMEOUT,
    *,
    stuck: tuple[str, str] = FILE_SYSTEM,
) -> T:
    """Run the blocking ``call`` in a thread; 500 when it takes longer than ``timeout``, with
    ``stuck``'s reason and cause (default: the file system of ``fileDir``).

    The thread cannot be stopped: it is left behind (the process still exits on SIGTERM, see
    :mod:`kidecar_core._runtime.eventloop`), the update fails and the lock is released.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(call), timeout)
    except TimeoutError:
        reason, cause = stuck
        raise InternalError(reason, f"{what} took longer than {timeout:g}s: {cause}") from None


def kind_of(mode: int) -> str:
    """``a directory``, ``a FIFO``... for a file mode (``st_mode``)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


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

    ``target`` must be absent, a regular file or a symlink (replaced as a link): anything else
    is 500 ``target is not a regular file``. A failing file-system call is 500 ``cannot write
    file``; ``temp`` is left for the caller to remove.
    """
    try:
        previous = target.lstat()
    except FileNotFoundError:
        previous = None
    except OSError as e:
        raise unwritable(target.parent, e) from None
    if previous is not None and not (
        stat.S_ISREG(previous.st_mode) or stat.S_ISLNK(previous.st_mode)
    ):
        raise InternalError(
            "target is not a regular file",
            f"{target} is {kind_of(previous.st_mode)}: kidecar only replaces regular files; "
            "remove it (or download to another file name)",
        )
    link = target.parent / f".{target.name}{BACKUP_SUFFIX}"
    _check_backup_name(link, target)
    try:
        link.unlink(missing_ok=True)
        backup: Path | None = None
        if previous is not None:
            try:
                os.link(target, link, follow_symlinks=False)
            except OSError:  # a file system without hard links: a copy does the same job
                shutil.copy2(target, link, follow_symlinks=False)
            backup = link
        # The game container may run as another user: the file must stay readable for it.
        regular = previous is not None and stat.S_ISREG(previous.st_mode)
        os.chmod(temp, stat.S_IMODE(previous.st_mode) if previous and regular else 0o644)
        os.replace(temp, target)
        fsync_dir(target.parent)
    except OSError as e:
        raise unwritable(target.parent, e) from None
    return Installation(target, backup)


def _check_backup_name(link: Path, target: Path) -> None:
    """500 naming the entry when a directory holds the backup's name (``unlink`` would fail with
    a bare "Is a directory"; a FIFO or socket there is simply removed)."""
    try:
        mode = link.lstat().st_mode
    except OSError:
        return  # absent (or unreadable: the unlink reports it)
    if stat.S_ISDIR(mode):
        raise InternalError(
            "cannot write file",
            f"{link} is {kind_of(mode)}, where kidecar keeps the previous {target.name} during "
            "an update: remove it",
        )


def unwritable(directory: Path, error: OSError) -> InternalError:
    """500 ``cannot write file``: disk full, read-only, fileDir gone (the download was fine).
    The message names the entry the call failed on, when the error says which."""
    where = error.filename if isinstance(error.filename, str) else None
    shown = f"{directory} ({where})" if where and where != str(directory) else str(directory)
    return InternalError(
        "cannot write file", f"cannot write into {shown}: {error.strerror or error}"
    )


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str | None:
    """sha256 of the regular file at ``path`` (a symlink to one is followed); ``None`` when
    nothing is there. Anything else is 500 ``target is not a regular file``: it is opened
    non-blocking and never read, so a FIFO cannot block the caller."""
    try:
        _must_be_regular(path, os.stat(path).st_mode)  # a socket cannot even be opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InternalError("cannot read file", f"cannot read {path}: {e.strerror}") from None
    try:
        _must_be_regular(path, os.fstat(fd).st_mode)  # replaced since the stat?
        os.set_blocking(fd, True)
        digest = hashlib.sha256()
        while chunk := os.read(fd, READ_CHUNK):
            digest.update(chunk)
    except OSError as e:
        raise InternalError("cannot read file", f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    return digest.hexdigest()


def _must_be_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise InternalError(
            "target is not a regular file",
            f"{path} is {kind_of(mode)}: kidecar only replaces regular files; remove it",
        )


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary and backup files a killed sidecar left behind.

    Only regular files and symlinks named like kidecar's temporaries are removed; anything else
    with such a name (a directory, a FIFO) is left alone with a warning, and an entry that
    cannot be removed is logged. Never raises.
    """
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError as e:
        log.warning("cannot list %s to remove stale temporary files: %s", directory, e)
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX))):
            continue
        try:
            mode = entry.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                log.warning(
                    "left %s alone: named like a kidecar temporary file, but it is %s",
                    entry,
                    kind_of(mode),
                )
                continue
            entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("cannot remove %s, left behind by an interrupted update: %s", entry, e)
            continue
        removed.append(entry)
    return removed


def discard(path: Path) -> None:
    """Remove a temporary file; never raises (it is cleaned up at the next start otherwise)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)

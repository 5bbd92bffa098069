"""Reading small files kidecar is pointed at (its config, a token file), safely.

Such files live in shared volumes (a mounted ConfigMap or Secret) that anyone with write access
to the volume may replace with something else: a FIFO nobody writes to would block the read
forever (and, in the event loop, the whole sidecar, SIGTERM included), a device such as
``/dev/zero`` never ends. :func:`read_regular_file` refuses both without reading them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFileError(OSError):
    """The path names a directory, FIFO, socket or device (``strerror`` says so)."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (symlinks followed).

    A caller that gets more than ``limit`` bytes knows the file is too large. Raises
    :class:`OSError` when the file cannot be opened or read, :class:`NotRegularFileError` (an
    ``OSError``) when it is not a regular file; never blocks on a FIFO.
    """
    # O_NONBLOCK: opening a FIFO for reading would wait for a writer otherwise.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(0, "not a regular file (a directory, FIFO, socket or device)")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)

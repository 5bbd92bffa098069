"""Returning start-up memory to the operating system once the sidecar runs.

Start-up (imports, configuration, plugin set-up, the first probes) allocates and frees many
small objects; glibc keeps the freed memory in its heaps (one per thread that allocated:
worker threads of the default executor have their own arenas), so it stays resident.  After
start-up :func:`release_startup_memory` collects garbage once and asks glibc to give the free
pages of every arena back (``malloc_trim(0)``, glibc's own call for this, ``man 3 malloc_trim``).
It changes no object and no allocator setting: memory allocated later is allocated as before.
Measured effect and the reasons for what remains: docs/benchmarks.md (issue 17).
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("kidecar")

_trim: Callable[[int], int] | None = None
_looked_up = False


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (``None`` with another C library, e.g. musl, which has none)."""
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            libc = ctypes.CDLL(None)  # the symbols already loaded: the C library's
            function = libc.malloc_trim
        except (OSError, AttributeError):
            return None
        function.argtypes = [ctypes.c_size_t]
        function.restype = ctypes.c_int
        _trim = function
    return _trim


def release_startup_memory() -> bool:
    """Collect garbage, then return free heap pages to the OS (glibc only).

    Returns whether ``malloc_trim`` ran (``False`` without glibc: only the collection ran).
    Blocking for about a millisecond (it walks the heaps); call it once start-up is over.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

"""Returning start-up memory to the operating system once the sidecar runs.

Start-up (imports, configuration, plugin set-up) allocates and frees many
small objects; glibc keeps the freed memory in its heaps (one per thread that allocated:
worker threads of the default executor have their own arenas), so it stays resident.  After
start-up :func:`release_startup_memory` asks glibc to give the free pages of every arena back
(``malloc_trim(0)``, glibc's own call for this, ``man 3 malloc_trim``; ~0.3 ms).  It changes no
object and no allocator setting: memory allocated later is allocated as before.  A
``gc.collect()`` first was measured and left out: the same RSS, and 20-90 ms with the event loop
blocked.  Measured effect and what remains: docs/benchmarks.md (issue 17).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (``None`` with another C library, e.g. musl, which has none)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: the C library's
        function = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


def release_startup_memory() -> bool:
    """Return the free pages of the C heaps to the OS (glibc only).

    Returns whether ``malloc_trim`` ran (``False`` without glibc, e.g. musl: nothing is done).
    Blocking for under a millisecond (it walks the heaps); call it once start-up is over.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

"""The base layer: one backoff for every retry loop, typed plugin state, guarded tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random

import pytest

from kidecar_core import Backoff, PluginState, StateKey
from kidecar_core._base.memory import release_startup_memory
from kidecar_core._base.tasks import guarded


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial=0.5, cap=3.0, jitter=False)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_stays_in_the_upper_half_of_each_ceiling() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, random=random.Random(7))
    for ceiling in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert ceiling / 2 <= backoff.next() <= ceiling


def test_backoff_rejects_non_positive_times() -> None:
    with pytest.raises(ValueError, match="initial > 0"):
        Backoff(initial=0)


def test_state_keys_are_typed_and_compared_by_identity() -> None:
    state = PluginState()
    first, other = StateKey[int]("count"), StateKey[int]("count")
    state[first] = 1
    assert first in state and other not in state
    assert state.get(other) is None and state.get(other, 5) == 5
    assert state.setdefault(first, 9) == 1
    assert state.setdefault_factory(other, lambda: 2) == 2
    assert state.pop(first) == 1 and state.pop(first) is None
    with pytest.raises(KeyError, match="count is not in the plugin's state"):
        state[first]


def test_a_guarded_task_that_dies_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[BaseException] = []

    async def boom() -> None:
        raise RuntimeError("broken on purpose")

    async def main() -> None:
        task = guarded(boom(), "kidecar-test", on_failure=failures.append)
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop

    with caplog.at_level(logging.ERROR, logger="kidecar"):
        asyncio.run(main())
    assert [str(e) for e in failures] == ["broken on purpose"]
    assert "task kidecar-test failed: RuntimeError: broken on purpose" in caplog.text


def test_a_cancelled_guarded_task_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[BaseException] = []

    async def main() -> None:
        task = guarded(asyncio.sleep(3600), "kidecar-test", on_failure=failures.append)
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert failures == [] and "failed" not in caplog.text


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_startup_memory_returns_freed_heap_pages_to_the_os() -> None:
    if platform.libc_ver()[0] != "glibc":
        # malloc_trim exists in glibc only (musl, e.g. Alpine images, has none): nothing done.
        assert release_startup_memory() is False
        return
    # ~40 MiB of 2 KiB blocks (malloc'ed, not pymalloc), one in 200 kept: the heap stays
    # fragmented, so glibc keeps the freed pages resident until malloc_trim.
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(20_000)]
    kept = blocks[::200]
    del blocks
    before = _resident_mib()
    assert release_startup_memory() is True
    after = _resident_mib()
    assert before - after >= 20, f"RSS {before:.1f} -> {after:.1f} MiB: freed pages kept"
    assert len(kept) == 100

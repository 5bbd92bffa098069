"""The base layer: one backoff for every retry loop, typed plugin state, guarded tasks."""

from __future__ import annotations

import asyncio
import logging
import platform
import random
import weakref

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


class _Cycle:
    """An object in a reference cycle: freed only by the garbage collector."""

    def __init__(self) -> None:
        self.me = self


def test_release_startup_memory_collects_cycles_and_trims_the_glibc_heap() -> None:
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    trimmed = release_startup_memory()
    assert gone() is None, "the start-up garbage (a reference cycle) was not collected"
    # malloc_trim exists in glibc only (musl, e.g. Alpine images, has none: nothing to trim).
    assert trimmed is (platform.libc_ver()[0] == "glibc")

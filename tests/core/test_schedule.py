"""``every``: the period loop behind plugin ticks and probes.

Time is a :class:`ManualClock`, so the periods are exact and no assertion reads the wall clock
(the wall-clock version of these tests failed on a busy machine: a gap of 0.0856 s for 0.1 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kidecar_core import ManualClock, every


def run(scenario: Callable[[ManualClock], Awaitable[None]]) -> None:
    async def main() -> None:
        await scenario(ManualClock())

    asyncio.run(main())


def test_period_is_start_to_start_and_the_delay_comes_first() -> None:
    async def scenario(clock: ManualClock) -> None:
        starts: list[float] = []

        async def work() -> None:
            starts.append(clock.now())
            await clock.sleep(0.04)  # each run takes 0.04 s

        task = asyncio.create_task(every(0.1, work, delay=0.15, clock=clock))
        await clock.advance(0.45)
        task.cancel()
        assert starts == pytest.approx([0.15, 0.25, 0.35, 0.45])

    run(scenario)


def test_an_overrun_is_followed_at_once_and_missed_periods_are_not_made_up() -> None:
    async def scenario(clock: ManualClock) -> None:
        starts: list[float] = []
        durations = iter([0.35, 0.01, 0.01, 0.01])

        async def work() -> None:
            starts.append(clock.now())
            await clock.sleep(next(durations, 0.01))

        task = asyncio.create_task(every(0.1, work, clock=clock))
        await clock.advance(0.6)
        task.cancel()
        assert starts == pytest.approx([0.0, 0.35, 0.45, 0.55])

    run(scenario)


def test_period_zero_runs_back_to_back() -> None:
    async def scenario(clock: ManualClock) -> None:
        starts: list[float] = []
        done = asyncio.Event()

        async def work() -> None:
            starts.append(clock.now())
            if len(starts) == 50:
                done.set()

        task = asyncio.create_task(every(0.0, work, clock=clock))
        await asyncio.wait_for(done.wait(), timeout=10)
        task.cancel()
        assert len(starts) >= 50 and set(starts) == {0.0}  # back to back, yielding between runs

    run(scenario)

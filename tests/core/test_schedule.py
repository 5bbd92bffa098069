"""``every``: the period loop behind plugin ticks and probes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from kidecar_core import every


def run_for(period: float, durations: list[float], delay: float = 0.0) -> list[float]:
    """Start times (relative to the call) of runs that take ``durations`` seconds each."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        starts: list[float] = []
        done = asyncio.Event()

        async def work() -> None:
            starts.append(loop.time() - t0)
            await asyncio.sleep(durations[len(starts) - 1])
            if len(starts) == len(durations):
                done.set()
                await asyncio.sleep(3600)

        task = asyncio.ensure_future(every(period, work, delay=delay))
        await done.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return starts

    return asyncio.run(main())


def test_period_is_start_to_start_and_the_delay_comes_first() -> None:
    starts = run_for(0.1, [0.04, 0.04, 0.04], delay=0.15)
    assert starts[0] >= 0.15
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 0.099 for g in gaps), gaps


def test_an_overrun_is_followed_at_once_and_missed_periods_are_not_made_up() -> None:
    starts = run_for(0.1, [0.35, 0.01, 0.01, 0.01])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.35  # the slow run ends, the next starts right after it ...
    assert all(g >= 0.099 for g in gaps[1:]), gaps  # ... and no burst catches up afterwards


def test_period_zero_runs_back_to_back() -> None:
    starts = run_for(0.0, [0.0] * 50)
    assert len(starts) == 50

"""The rollout slot is given back after an update: retried with kidecar_core.Backoff (up to 1,
2, 4, then 5 s, with jitter) while the API server refuses, once only when the sidecar is
stopping. A refusing API server cannot be had on demand at chosen times, so the slots are a
stand-in here; the real Lease calls are tested in tests/rollout/test_sidecar_parts.py."""

from __future__ import annotations

import asyncio
import functools
import logging
from types import SimpleNamespace

import pytest

from kidecar_core import Backoff, ObjectRef, Rollout, RolloutTarget
from kidecar_core.testing import ManualClock
from kidecar_plugins.hot_update.rollout import run as run_module
from kidecar_plugins.hot_update.rollout.run import UpdateRun
from kidecar_plugins.hot_update.rollout.slots import Held


class RefusingSlots:
    """``release`` fails ``refusals`` times, then succeeds; each call's clock time is kept."""

    def __init__(self, clock: ManualClock, refusals: int) -> None:
        self.clock = clock
        self.refusals = refusals
        self.calls: list[float] = []

    async def release(self, held: Held) -> None:
        self.calls.append(self.clock.now())
        if len(self.calls) <= self.refusals:
            raise ConnectionError("connection refused")


def update_run(clock: ManualClock, slots: RefusingSlots) -> UpdateRun:
    follower = SimpleNamespace(slots=slots, ctx=SimpleNamespace(clock=clock))
    lease = ObjectRef("coordination.k8s.io", "v1", "leases", "default", "gss-rollout-0")
    held = Held(lease, 0, "1", 1)
    # Giving the slot back reads neither the rollout nor the target.
    rollout, target = Rollout.__new__(Rollout), RolloutTarget.__new__(RolloutTarget)
    return UpdateRun(follower, held, rollout, target)  # type: ignore[arg-type]


def test_release_delays_double_from_one_second_up_to_five(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without jitter, for exact times (the sidecar draws each delay from the upper half of its
    # step; kidecar_core.Backoff's own tests cover that).
    monkeypatch.setattr(run_module, "Backoff", functools.partial(Backoff, jitter=False))

    async def scenario() -> list[float]:
        clock = ManualClock()
        slots = RefusingSlots(clock, refusals=5)
        releasing = asyncio.ensure_future(update_run(clock, slots)._release(retry=True))
        while len(slots.calls) < 6:  # half-second steps: each retry is seen at its own time
            await clock.wait_for_sleepers(1)
            await clock.advance(0.5)
        await asyncio.wait_for(releasing, 30)
        return slots.calls

    assert asyncio.run(scenario()) == [0.0, 1.0, 3.0, 7.0, 12.0, 17.0]


def test_a_stopping_sidecar_gives_the_slot_back_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    slots = RefusingSlots(clock, refusals=1)
    with caplog.at_level(logging.WARNING, "kidecar.plugin.hot_update"):
        asyncio.run(update_run(clock, slots)._release(retry=False))
    assert slots.calls == [0.0]
    assert "could not give the rollout slot back (connection refused): it expires" in caplog.text

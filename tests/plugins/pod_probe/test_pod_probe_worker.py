"""kruise-daemon's worker semantics, on a fake clock and a scripted prober (pure logic): initial
delay, thresholds with the result kept in between, container states."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from kidecar_core import ManualClock
from kidecar_plugins.pod_probe.outcome import FAILED, SUCCEEDED, Outcome, condition_message
from kidecar_plugins.pod_probe.spec import ExecAction, PodProbe, Timing
from kidecar_plugins.pod_probe.worker import ProbeWorker, Thresholds, Update, container_state

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Script:
    """Answers each probe with the next scripted outcome (``"S"``/``"F"`` or an Outcome)."""

    def __init__(self, *answers: str | Outcome) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, probe: PodProbe, pod: Mapping[str, Any]) -> Outcome:
        self.calls += 1
        item = self.answers.pop(0)
        if isinstance(item, Outcome):
            return item
        return Outcome(item == "S", f"out-{self.calls}" if item == "S" else f"err-{self.calls}")


def probe(**timing: int) -> PodProbe:
    return PodProbe("p", "game", "game.kruise.io/p", ExecAction(("true",)), Timing(**timing))


class Rig:
    def __init__(self, script: Script, pod: dict[str, Any] | None = None, **timing: int) -> None:
        self.clock = FakeClock()
        self.pod: dict[str, Any] = pod or {}
        self.updates: list[Update] = []
        self.script = script
        self.worker = ProbeWorker(
            probe(**timing),
            pod=lambda: self.pod,
            prober=script,
            report=self.updates.append,
            clock=self.clock,
        )

    def tick(self, after: float = 0.0) -> list[tuple[str, str]]:
        """Advance the clock, tick once; the updates reported by this tick."""
        self.clock.advance(after)
        before = len(self.updates)
        asyncio.run(self.worker.tick())
        return [(u.state, u.message) for u in self.updates[before:]]


def running_since(seconds_ago: float, name: str = "game") -> dict[str, Any]:
    stamp = dt.datetime.fromtimestamp(T0 - seconds_ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {"containerStatuses": [{"name": name, "state": {"running": {
        "startedAt": stamp}}}]}}  # fmt: skip


def test_thresholds_keep_the_state_until_reached() -> None:
    t = Thresholds(success=2, failure=3)
    states = {"S": SUCCEEDED, "F": FAILED}
    seen = [t.observe(states[s]) for s in "SSFFSFFFFSS"]
    assert seen == [False, True, False, False, False, False, False, True, True, False, True]


def test_the_first_probe_waits_for_the_initial_delay_from_the_workers_start() -> None:
    rig = Rig(Script("S"), initial_delay_seconds=3, period_seconds=1)
    assert rig.tick() == []  # at start: 0 < 3
    assert rig.tick(1) == [] and rig.tick(1) == []
    assert rig.script.calls == 0
    assert rig.tick(1) == [(SUCCEEDED, "out-1")]
    assert rig.updates[0].probe_time == T0 + 3


def test_an_initial_delay_below_one_second_counts_as_one() -> None:
    rig = Rig(Script("S"), initial_delay_seconds=0)
    assert rig.tick() == [] and rig.script.calls == 0
    assert rig.tick(1) == [(SUCCEEDED, "out-1")]


def test_the_initial_delay_counts_from_the_containers_start_in_the_pod_status() -> None:
    rig = Rig(Script("S", "S"), running_since(100), initial_delay_seconds=30)
    assert rig.tick() == [(SUCCEEDED, "out-1")]  # the game has run for 100 s already
    young = Rig(Script("S"), running_since(5), initial_delay_seconds=30)
    assert young.tick() == [] and young.tick(24) == []
    assert young.tick(1) == [(SUCCEEDED, "out-1")]


def test_success_and_failure_thresholds_with_the_result_kept_in_between() -> None:
    rig = Rig(Script(*"SSFFSFFF"), running_since(60),
              success_threshold=2, failure_threshold=3)  # fmt: skip
    got = [rig.tick(1) for _ in range(8)]
    assert got == [
        [], [(SUCCEEDED, "out-2")],  # two successes in a row
        [], [],                      # two failures: below 3, still Succeeded
        [],                          # one success: below 2, nothing new
        [], [], [(FAILED, "err-8")],  # three failures in a row
    ]  # fmt: skip


def test_past_its_threshold_every_result_is_reported_with_its_message() -> None:
    # The condition writer writes only when status or message differ; the worker reports all.
    rig = Rig(Script("S", "S", Outcome(True, "  players=3 \n")), running_since(60))
    assert [rig.tick(1) for _ in range(3)] == [
        [(SUCCEEDED, "out-1")], [(SUCCEEDED, "out-2")], [(SUCCEEDED, "players=3")],
    ]  # fmt: skip


def test_the_cap_counts_characters_and_cuts_bytes_like_kruise_daemon() -> None:
    # prober.go: utf8 length > 1024 → msg[:1024] (bytes). 1000 "é" (2000 bytes) stay whole.
    assert condition_message("é" * 1000) == "é" * 1000
    assert condition_message("é" * 1025).encode() == ("é" * 512).encode()


def test_a_long_message_is_capped_like_kruise_daemon() -> None:
    long = "é" * 600 + "x" * 600  # 1200 characters, 1800 bytes
    rig = Rig(Script(Outcome(True, long)), running_since(60))
    ((_, message),) = rig.tick()
    assert message.encode() == long.encode()[:1024]  # 512 "é": cut at a character boundary


def test_a_stopped_container_is_failed_at_once_without_probing() -> None:
    pod = {"status": {"containerStatuses": [{"name": "game", "restartCount": 1,
           "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}  # fmt: skip
    rig = Rig(Script(), pod, failure_threshold=3)
    assert rig.tick() == [(FAILED, "Container(game) is Non-running")]
    rig.pod = {"status": {"containerStatuses": [{"name": "game", "state": {"terminated": {}}}]}}
    assert rig.tick(1) == [(FAILED, "Container(game) is Non-running")]
    assert rig.script.calls == 0


@pytest.mark.parametrize(
    "statuses",
    [
        [{"name": "game", "state": {"waiting": {"reason": "ContainerCreating"}}}],
        [{"name": "other", "state": {"running": {}}}],
    ],
)
def test_a_container_not_started_yet_is_not_probed(statuses: list[dict[str, Any]]) -> None:
    rig = Rig(Script(), {"status": {"containerStatuses": statuses}})
    assert rig.tick() == [] and rig.tick(5) == [] and rig.script.calls == 0


def test_container_state_reads_native_sidecars_too() -> None:
    pod = {"status": {"initContainerStatuses": [{"name": "kidecar", "state": {"running": {
        "startedAt": "2024-01-01T00:00:00Z"}}}]}}  # fmt: skip
    state = container_state(pod, "kidecar")
    assert state is not None and state.running and state.started_at == 1704067200.0
    assert container_state({}, "game") is None


def test_the_worker_loop_ticks_at_once_then_every_period_until_cancelled() -> None:
    async def main() -> list[float]:
        ticker = ManualClock()
        ticks: list[float] = []
        script = Script(*"SSSS")
        worker = ProbeWorker(
            probe(period_seconds=0),  # effective period: 1 s
            pod=lambda: running_since(60),
            prober=script,
            report=lambda u: ticks.append(ticker.now()),
            clock=lambda: T0 + ticker.now(),
            ticker=ticker,
        )
        task = asyncio.create_task(worker.run())
        await ticker.advance(0)
        await ticker.advance(0.5)
        await ticker.advance(0.5)
        await ticker.advance(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert script.calls == len(ticks)
        return ticks

    assert asyncio.run(main()) == [0.0, 1.0, 2.0, 3.0]

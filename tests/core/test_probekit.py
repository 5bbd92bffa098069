"""The probe kit (timing fields, threshold machine, endpoint loop) and the manual clock.

Time is a :class:`ManualClock`: every assertion about periods and delays is exact, none reads
the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from kidecar_core import (
    MIN_PROBE_PERIOD,
    PROBE_FAILED,
    ConfigError,
    ManualClock,
    Metrics,
    ProbeChange,
    ProbeLoop,
    ProbeMetrics,
    ProbeOutcome,
    ProbeSchedule,
    ProbeThresholds,
    ProbeTiming,
    field,
    first_probe_delay,
    positive,
    process_start,
)
from kidecar_core._config.schema import make_converter

# -- the threshold machine ----------------------------------------------------------------------


def feed(machine: ProbeThresholds, outcomes: list[str | None]) -> list[str | None]:
    """Feed outcomes (a state, or None for a failed probe); return what each one changed."""
    return [machine.success(o) if o is not None else machine.failure() for o in outcomes]


def test_defaults_take_a_new_state_at_once_and_fail_after_three() -> None:
    m = ProbeThresholds(success_threshold=1, failure_threshold=3)
    assert feed(m, ["None", "None", "Allocated"]) == ["None", None, "Allocated"]
    assert feed(m, [None, None, None, None]) == [None, None, PROBE_FAILED, None]
    assert m.effective == PROBE_FAILED and m.failed
    assert feed(m, ["WaitToBeDeleted"]) == ["WaitToBeDeleted"]


def test_a_new_state_needs_success_threshold_answers_in_a_row() -> None:
    m = ProbeThresholds(success_threshold=3, failure_threshold=3)
    assert feed(m, ["idle", "idle", "idle"]) == [None, None, "idle"]
    # One odd answer (or two) never flips the effective state.
    assert feed(m, ["busy", "idle", "busy", "busy", "idle"]) == [None] * 5
    assert m.effective == "idle"
    assert feed(m, ["busy", "busy", "busy"]) == [None, None, "busy"]


def test_a_failure_breaks_a_streak_of_successes_and_the_reverse() -> None:
    m = ProbeThresholds(success_threshold=2, failure_threshold=5)
    assert feed(m, ["a", None, "a", None, "a"]) == [None] * 5
    assert m.effective is None
    assert feed(m, ["a"]) == ["a"]
    m = ProbeThresholds(success_threshold=1, failure_threshold=3)
    assert feed(m, ["ok", None, None, "ok", None, None, "ok"]) == ["ok"] + [None] * 6
    assert feed(m, [None, None, None]) == [None, None, PROBE_FAILED]


def test_failed_before_any_success_and_recovery_needs_the_success_threshold() -> None:
    m = ProbeThresholds(success_threshold=2, failure_threshold=2)
    assert feed(m, [None, None, "up", "up"]) == [None, PROBE_FAILED, None, "up"]


def test_a_changing_candidate_restarts_the_count() -> None:
    m = ProbeThresholds(success_threshold=2, failure_threshold=3)
    assert feed(m, ["a", "b", "c", "c"]) == [None, None, None, "c"]


def test_the_failed_state_can_be_named_and_counters_stay_bounded() -> None:
    m = ProbeThresholds(2, 3, failed_state="Unreachable")
    feed(m, ["Reachable"] * 1000)
    assert (m.effective, m.successes) == ("Reachable", 0)
    assert feed(m, [None] * 1000)[:3] == [None, None, "Unreachable"]
    assert (m.failures, m.successes, m.effective) == (3, 0, "Unreachable")


# -- the timing fields ----------------------------------------------------------------------------


@attrs.frozen
class Port(ProbeTiming):
    port: int = field(doc="A required field of the plugin's own, before the kit's fields.")
    timeout: float = field(
        default=1.0, validator=positive, doc="Redefined: a connect needs less time."
    )


@attrs.frozen
class PortProbe(ProbeSchedule):
    ports: tuple[Port, ...] = field(doc="Ports.")


def structure(raw: dict[str, Any]) -> PortProbe:
    return make_converter().structure(raw, PortProbe, "config")


def test_timing_fields_load_with_their_go_spellings_and_defaults() -> None:
    config = structure(
        {
            "startDelaySeconds": 10,
            "probeintervalseconds": 0,
            "ports": [{"port": 7777, "successThreshold": 2}, {"port": 1, "timeout": 3}],
        }
    )
    assert (config.start_delay_seconds, config.probe_interval_seconds) == (10.0, 0.0)
    assert config.period == MIN_PROBE_PERIOD  # 0 = continuously, but bounded
    first, second = config.ports
    assert (first.timeout, first.success_threshold, first.failure_threshold) == (1.0, 2, 3)
    assert second.timeout == 3.0
    assert PortProbe(ports=(), probe_interval_seconds=7).period == 7


def test_timing_fields_report_every_bad_value_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        structure(
            {
                "startDelaySeconds": -1,
                "ports": [{"port": 1, "timeout": 0, "failureThreshold": 0, "successthreshold": -2}],
            }
        )
    assert sorted(str(p) for p in caught.value.problems) == [
        "config.ports[0].failureThreshold: must be > 0",
        "config.ports[0].successThreshold: must be > 0",
        "config.ports[0].timeout: must be > 0",
        "config.startDelaySeconds: must be >= 0",
    ]


def test_the_start_delay_counts_from_the_first_start() -> None:
    clock = ManualClock(start=100.0)
    assert first_probe_delay(100.0, 10, clock) == 10
    clock._now = 104.0  # a restart 4 s after the first start
    assert first_probe_delay(100.0, 10, clock) == 6
    clock._now = 130.0
    assert first_probe_delay(100.0, 10, clock) == 0


# -- the manual clock and `every` -----------------------------------------------------------------


def run(scenario: Callable[[ManualClock], Awaitable[None]]) -> None:
    async def main() -> None:
        await scenario(ManualClock())

    asyncio.run(main())


def test_advance_wakes_sleepers_in_deadline_order() -> None:
    async def scenario(clock: ManualClock) -> None:
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.now()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2), ("a", 1), ("c", 5))]
        await asyncio.sleep(0)
        assert clock.sleepers == 3
        await clock.advance(3)
        assert woke == [("a", 1), ("b", 2)] and clock.now() == 3
        await clock.advance(2)
        assert woke[-1] == ("c", 5)
        await asyncio.gather(*tasks)

    run(scenario)


# -- the endpoint loop ----------------------------------------------------------------------------

OUTCOMES = ("success", "timeout", "refused")


class Scripted:
    """A probe that answers from a script (a state, or None for a refused connection)."""

    def __init__(self, clock: ManualClock, *answers: str | None, takes: float = 0.0) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.takes = takes
        self.at: list[float] = []

    async def __call__(self) -> ProbeOutcome:
        self.at.append(self.clock.now())
        if self.takes:
            await self.clock.sleep(self.takes)
        state = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if state is None:
            return ProbeOutcome("refused", reason="connection refused", seconds=self.takes)
        return ProbeOutcome("success", state=state, seconds=self.takes)


def make_loop(
    clock: ManualClock,
    probe: Scripted,
    changes: list[ProbeChange],
    metrics: ProbeMetrics,
    thresholds: ProbeThresholds | None = None,
) -> ProbeLoop:
    return ProbeLoop(
        plugin="demo",
        index=0,
        target="127.0.0.1:7777",
        probe=probe,
        thresholds=thresholds or ProbeThresholds(1, 2),
        on_change=changes.append,
        metrics=metrics,
        clock=clock,
    )


def demo_metrics(registry: Metrics) -> ProbeMetrics:
    return ProbeMetrics.create(registry, "kidecar_demo_probe", "demo probes", OUTCOMES)


def sample(registry: Metrics, name: str, **labels: str) -> float:
    value = registry.registry.get_sample_value(name, {"plugin": "demo", "endpoint": "0", **labels})
    return 0.0 if value is None else value


def test_the_loop_probes_at_its_period_and_reports_changes_only() -> None:
    registry = Metrics()
    changes: list[ProbeChange] = []

    async def scenario(clock: ManualClock) -> None:
        probe = Scripted(clock, "idle", "idle", None, None, "idle", "busy")
        loop = make_loop(clock, probe, changes, demo_metrics(registry))
        task = asyncio.create_task(loop.run(period=5, delay=10))
        await clock.advance(9.9)
        assert probe.at == []  # the start delay comes first
        await clock.advance(25.1)
        assert probe.at == [10, 15, 20, 25, 30, 35]
        task.cancel()

    run(scenario)
    assert [(c.previous, c.state, c.failed) for c in changes] == [
        (None, "idle", False),
        ("idle", PROBE_FAILED, True),
        (PROBE_FAILED, "idle", False),
        ("idle", "busy", False),
    ]
    failed = changes[1]
    assert (failed.failures, failed.outcome.reason) == (2, "connection refused")
    assert sample(registry, "kidecar_demo_probe_probes_total", outcome="success") == 4
    assert sample(registry, "kidecar_demo_probe_probes_total", outcome="refused") == 2
    assert sample(registry, "kidecar_demo_probe_probes_total", outcome="timeout") == 0
    assert sample(registry, "kidecar_demo_probe_duration_seconds_count") == 6
    assert sample(registry, "kidecar_demo_probe_state_changes_total") == 4


def test_a_slow_probe_delays_only_its_own_next_probe() -> None:
    registry = Metrics()
    changes: list[ProbeChange] = []

    async def scenario(clock: ManualClock) -> None:
        slow = Scripted(clock, "x", takes=12)  # longer than the period
        fast = Scripted(clock, "y")
        metrics = demo_metrics(registry)
        loops = [make_loop(clock, p, changes, metrics) for p in (slow, fast)]
        tasks = [asyncio.create_task(loop.run(period=5)) for loop in loops]
        await clock.advance(30)
        for t in tasks:
            t.cancel()
        assert fast.at == [0, 5, 10, 15, 20, 25, 30]
        assert slow.at == [0, 12, 24]  # each overrun is followed at once, none made up

    run(scenario)


def test_only_the_first_failure_of_a_streak_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = Metrics()
    changes: list[ProbeChange] = []
    caplog.set_level(logging.INFO, logger="kidecar.plugin.demo")

    async def scenario(clock: ManualClock) -> None:
        probe = Scripted(clock, *([None] * 50), "up")
        loop = make_loop(clock, probe, changes, demo_metrics(registry))
        for _ in range(51):
            await loop.probe_and_observe()

    run(scenario)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "endpoint 0 (127.0.0.1:7777): probe failed: connection refused",
        "endpoint 0 (127.0.0.1:7777) failed 2 times in a row: connection refused; "
        "state is now Failed",
        "endpoint 0 (127.0.0.1:7777) answers again",
        "endpoint 0 (127.0.0.1:7777): state 'Failed' -> 'up'",
    ]


def test_an_undeclared_outcome_is_a_bug_of_the_plugin() -> None:
    loop = make_loop(ManualClock(), Scripted(ManualClock(), "x"), [], demo_metrics(Metrics()))
    with pytest.raises(ValueError, match="'weird' is not a declared outcome"):
        loop.observe(ProbeOutcome("weird"))


def test_thresholds_kept_across_loops_do_not_report_again() -> None:
    registry = Metrics()
    changes: list[ProbeChange] = []
    kept = ProbeThresholds(1, 3)

    async def scenario(clock: ManualClock) -> None:
        for _ in range(2):  # the plugin restarted: a new loop, the same machine
            loop = make_loop(clock, Scripted(clock, "idle"), changes, demo_metrics(registry), kept)
            await loop.probe_and_observe()

    run(scenario)
    assert [c.state for c in changes] == ["idle"]


def test_process_start_is_the_processes_start_on_the_loop_clock() -> None:
    # A child process that has lived at least 0.3 s must find its start at least 0.3 s back (a
    # lower bound only: no upper bound on a loaded machine).
    code = (
        "import asyncio, time\n"
        "from kidecar_core import LOOP_CLOCK, process_start\n"
        "time.sleep(0.3)\n"
        "async def age():\n"
        "    return LOOP_CLOCK.now() - process_start(LOOP_CLOCK)\n"
        "print(asyncio.run(age()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) >= 0.3


def test_process_start_on_any_other_clock_is_now() -> None:
    clock = ManualClock(start=42.0)
    assert process_start(clock) == 42.0

"""The up/down threshold machine: Kubernetes-probe semantics, changes reported once."""

from __future__ import annotations

from kidecar_tcp_probe.state import UpDown


def feed(machine: UpDown, outcomes: str) -> list[bool | None]:
    """Feed ``+`` (success) and ``-`` (failure); the reported changes, in order."""
    return [machine.observe(c == "+") for c in outcomes]


def test_first_state_needs_its_threshold_too() -> None:
    machine = UpDown(success_threshold=1, failure_threshold=3)
    assert feed(machine, "--") == [None, None]
    assert machine.up is None
    assert feed(machine, "-") == [False]
    assert feed(machine, "--") == [None, None]  # reported once, not on every failure


def test_up_after_success_threshold_down_after_failure_threshold() -> None:
    machine = UpDown(success_threshold=2, failure_threshold=2)
    assert feed(machine, "++") == [None, True]
    assert feed(machine, "-+-+") == [None, None, None, None]  # alternating never flips it
    assert machine.up is True
    assert feed(machine, "--") == [None, False]
    assert feed(machine, "+-++") == [None, None, None, True]


def test_thresholds_of_one_follow_every_probe() -> None:
    machine = UpDown(success_threshold=1, failure_threshold=1)
    assert feed(machine, "+-+") == [True, False, True]


def test_counters_stay_bounded() -> None:
    machine = UpDown(success_threshold=2, failure_threshold=3)
    feed(machine, "+" * 1000)
    assert machine.successes == 2
    feed(machine, "-" * 1000)
    assert (machine.failures, machine.successes) == (3, 0)

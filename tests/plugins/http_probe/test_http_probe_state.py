"""The threshold state machine: no flapping on one odd answer, ``Failed`` after the threshold."""

from __future__ import annotations

from kidecar_plugins.http_probe.state import FAILED, Thresholds


def feed(machine: Thresholds, outcomes: list[str | None]) -> list[str | None]:
    """Feed outcomes (a state, or None for a failed probe); return what each one changed."""
    return [machine.success(o) if o is not None else machine.failure() for o in outcomes]


def test_defaults_take_a_new_state_at_once_and_fail_after_three() -> None:
    m = Thresholds(success_threshold=1, failure_threshold=3)
    assert feed(m, ["None", "None", "Allocated"]) == ["None", None, "Allocated"]
    assert feed(m, [None, None, None, None]) == [None, None, FAILED, None]
    assert m.effective == FAILED
    assert feed(m, ["WaitToBeDeleted"]) == ["WaitToBeDeleted"]


def test_a_new_state_needs_success_threshold_answers_in_a_row() -> None:
    m = Thresholds(success_threshold=3, failure_threshold=3)
    assert feed(m, ["idle", "idle", "idle"]) == [None, None, "idle"]
    # One odd answer (or two) never flips the effective state.
    assert feed(m, ["busy", "idle", "busy", "busy", "idle"]) == [None] * 5
    assert m.effective == "idle"
    assert feed(m, ["busy", "busy", "busy"]) == [None, None, "busy"]


def test_a_failure_breaks_a_streak_of_successes() -> None:
    m = Thresholds(success_threshold=2, failure_threshold=5)
    assert feed(m, ["a", None, "a", None, "a"]) == [None] * 5
    assert m.effective is None
    assert feed(m, ["a"]) == ["a"]


def test_a_success_breaks_a_streak_of_failures() -> None:
    m = Thresholds(success_threshold=1, failure_threshold=3)
    assert feed(m, ["ok", None, None, "ok", None, None, "ok"]) == [
        "ok",
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert m.effective == "ok"
    assert feed(m, [None, None, None]) == [None, None, FAILED]


def test_failed_before_any_success() -> None:
    m = Thresholds(success_threshold=1, failure_threshold=2)
    assert feed(m, [None, None]) == [None, FAILED]


def test_recovery_from_failed_needs_the_success_threshold() -> None:
    m = Thresholds(success_threshold=2, failure_threshold=1)
    assert feed(m, [None, "up", "up"]) == [FAILED, None, "up"]


def test_a_changing_candidate_restarts_the_count() -> None:
    m = Thresholds(success_threshold=2, failure_threshold=3)
    assert feed(m, ["a", "b", "c", "c"]) == [None, None, None, "c"]

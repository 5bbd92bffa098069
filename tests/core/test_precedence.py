"""opsState precedence between sources: pure logic (the end-to-end tests drive real endpoints in
local mode and against the API server, tests/plugins/http_probe/test_http_probe_precedence*.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from kidecar_core import ConfigError, ObjectRef, PodIdentity, Result, Write
from kidecar_core._config.catalog import load_file
from kidecar_core._persist.precedence import DEFAULT_PRECEDENCE, OpsStatePrecedence
from kidecar_core._plugins.manager import Plugins

WHO = PodIdentity("gs-0", "default")
GS = ObjectRef.gameserver(WHO)
POD = ObjectRef.pod(WHO)
A = "plugins[0].config.endpoints[0].storageConfig"
B = "plugins[0].config.endpoints[1].storageConfig"


def ask(arbiter: OpsStatePrecedence, origin: str, value: str | None, **spec: Any) -> list[Any]:
    """One result of ``origin`` asking ``value`` (None: a state without an opsState policy);
    the opsStates the arbiter passes on, in order."""
    writes = [Write(POD, {"metadata": {"annotations": {"example.com/state": str(value)}}})]
    if value is not None or spec:
        patch: dict[str, Any] = dict(spec)
        if value is not None:
            patch["opsState"] = value
        writes.append(Write(GS, {"spec": patch}, f"{origin}.inKube.markerPolicies[0]"))
    out = arbiter.resolve(Result("http_probe", str(value), source=origin), writes)
    assert out[0].target == POD  # other writes always pass
    return [w.patch["spec"].get("opsState") for w in out[1:] if "opsState" in w.patch["spec"]]


def test_one_source_passes_its_changes_through() -> None:
    arbiter = OpsStatePrecedence()
    assert ask(arbiter, A, "None") == ["None"]
    assert ask(arbiter, A, "Allocated") == ["Allocated"]
    assert ask(arbiter, A, "Allocated") == []  # nothing new
    assert ask(arbiter, A, "WaitToBeDeleted") == ["WaitToBeDeleted"]


def test_the_issues_case_unhealthy_holds_whatever_the_other_says() -> None:
    """A says unhealthy (Maintaining), B says idle (WaitToBeDeleted) then busy (None): the last one
    used to win, and a server A still called unhealthy ended at None."""
    arbiter = OpsStatePrecedence()
    assert ask(arbiter, A, "Maintaining") == ["Maintaining"]
    assert ask(arbiter, B, "WaitToBeDeleted") == []
    assert ask(arbiter, B, "None") == []
    # A recovers (its state maps to no opsState): its ask is withdrawn, B's stands.
    assert ask(arbiter, A, None) == ["None"]


def test_nothing_becomes_deletable_while_a_source_reports_allocated() -> None:
    for deletable in ("WaitToBeDeleted", "Kill"):
        arbiter = OpsStatePrecedence()
        assert ask(arbiter, A, "Allocated") == ["Allocated"]
        assert ask(arbiter, B, deletable) == []
        arbiter = OpsStatePrecedence()
        assert ask(arbiter, B, deletable) == [deletable]
        assert ask(arbiter, A, "Allocated") == ["Allocated"]
        assert ask(arbiter, A, "None") == [deletable]  # A no longer reports Allocated


def test_custom_values_rank_at_the_star() -> None:
    arbiter = OpsStatePrecedence()
    assert ask(arbiter, A, "Kill") == ["Kill"]
    assert ask(arbiter, B, "Draining") == ["Draining"]
    assert ask(arbiter, A, "Allocated") == ["Allocated"]
    arbiter = OpsStatePrecedence(("WaitToBeDeleted", "Allocated"))  # no star: custom rank last
    assert ask(arbiter, A, "Draining") == ["Draining"]
    assert ask(arbiter, B, "None") == []  # unlisted too: a tie, the earlier ask holds
    assert ask(arbiter, B, "WaitToBeDeleted") == ["WaitToBeDeleted"]


def test_the_other_fields_of_a_losing_write_still_pass() -> None:
    arbiter = OpsStatePrecedence()
    ask(arbiter, A, "Allocated")
    writes = [Write(GS, {"spec": {"opsState": "Kill", "deletionPriority": 10}}, B)]
    out = arbiter.resolve(Result("http_probe", "x", source=B), writes)
    assert [w.patch for w in out] == [{"spec": {"deletionPriority": 10}}]


def test_only_gameservers_are_arbitrated() -> None:
    other = ObjectRef("example.com", "v1", "widgets", "default", "w")
    arbiter = OpsStatePrecedence()
    writes = [Write(other, {"spec": {"opsState": "Kill"}})]
    assert arbiter.resolve(Result("x", "y", source=A), writes) == writes


def test_a_disagreement_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kidecar.persist")
    arbiter = OpsStatePrecedence()
    ask(arbiter, A, "Maintaining")
    for _ in range(3):
        ask(arbiter, B, "WaitToBeDeleted")
        ask(arbiter, A, "Maintaining")
    (record,) = caplog.records
    assert record.getMessage() == (
        f"sources disagree on the opsState of gameservers.game.kruise.io/default/gs-0: {A} asks "
        f"Maintaining, {B} asks WaitToBeDeleted; Maintaining wins (opsStatePrecedence: "
        "Maintaining > Allocated > * > Kill > WaitToBeDeleted > None)"
    )
    ask(arbiter, B, "None")  # a new disagreement: logged too
    assert len(caplog.records) == 2


def load_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_file(str(path), Plugins.load({}), {}, lenient=False)


def test_the_precedence_is_configurable(tmp_path: Path) -> None:
    assert load_text(tmp_path, "plugins: []").top.ops_state_precedence == DEFAULT_PRECEDENCE
    loaded = load_text(tmp_path, "opsStatePrecedence: [Kill, '*', None]\nplugins: []")
    assert loaded.top.ops_state_precedence == ("Kill", "*", "None")
    for bad, message in {
        "[]": "must list at least one opsState",
        "[Kill, Kill]": "lists 'Kill' twice",
        "['']": "must not hold an empty value",
        "Kill": "expected a list, got a string",
    }.items():
        with pytest.raises(ConfigError) as caught:
            load_text(tmp_path, f"opsStatePrecedence: {bad}\nplugins: []")
        assert [str(p) for p in caught.value.problems] == [f"opsStatePrecedence: {message}"]

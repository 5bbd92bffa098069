"""Local mode keeps what it writes true, like against the API server: a hand edit of the state
file that undoes kidecar's field is repaired, a human's Maintaining holds whatever way of
writing opsState the config uses, and a GameServer that never comes is reported.  Real
``kidecar run --local-state`` processes; the test plugin ``tp_filestate`` plays the probe."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar

STATE_KEY = "kidecar.example.com/state"
ALLOCATED = {"markerPolicies": [{"state": "Allocated", "gameServerOpsState": "Allocated"}]}


def filestate(state_file: Path, inkube: dict[str, Any]) -> dict[str, Any]:
    storage = {"type": "InKube", "inKube": {"annotationKey": STATE_KEY, **inkube}}
    config = {"path": str(state_file), "interval": 0.05, "storageConfig": storage}
    return {"plugins": [{"name": "tp_filestate", "config": config}]}


def edit(sc: Sidecar, change: Callable[[dict[str, Any]], None]) -> None:
    """A human edits the state file (an editor: new file, renamed over the old one)."""
    doc = sc.state()
    change(doc)
    tmp = sc.state_path.with_suffix(".edit")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, sc.state_path)


def annotation(sc: Sidecar) -> str | None:
    value: str | None = sc.state()["pod"]["metadata"].get("annotations", {}).get(STATE_KEY)
    return value


def test_a_hand_edit_that_undoes_kidecars_field_is_repaired(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    state.write_text("Allocated")
    config = filestate(state, ALLOCATED)
    with Sidecar(tmp_path / "sc", config, env=testplugins_env) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: sc.ops_state() == "Allocated", 10, "Allocated")
        sc.wait_for(lambda: annotation(sc) == "Allocated", 10, "the annotation")

        def undo(doc: dict[str, Any]) -> None:
            doc["gameserver"]["spec"]["opsState"] = "None"
            doc["pod"]["metadata"]["annotations"][STATE_KEY] = "edited"

        edit(sc, undo)
        sc.wait_for(lambda: sc.ops_state() == "Allocated", 10, "opsState repaired")
        sc.wait_for(lambda: annotation(sc) == "Allocated", 10, "annotation repaired")
        assert "re-asserting it" in sc.log()
        assert sc.stop() == 0


OVERRIDE = textwrap.dedent(
    """
    from kidecar_core import ObjectRef, Result, RuntimeView, Write, hookimpl


    @hookimpl
    def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write]:
        gs = ObjectRef.gameserver(runtime.identity)
        return [Write(gs, {"spec": {"opsState": result.state}}, "override.opsState")]
    """
)

WAYS = {
    "gameServerOpsState": {"markerPolicies": [{"state": "WaitToBeDeleted",
                                               "gameServerOpsState": "WaitToBeDeleted"}]},
    "jsonPath": {"jsonPath": "/spec/opsState"},
    "jsonPathConfigs": {"markerPolicies": [{"state": "WaitToBeDeleted", "jsonPathConfigs": [
        {"jsonPath": "/spec/opsState", "value": "WaitToBeDeleted"}]}]},
    "override": {},
}  # fmt: skip


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_humans_maintaining_holds_whatever_writes_ops_state(
    tmp_path: Path, testplugins_env: dict[str, str], way: str
) -> None:
    state = tmp_path / "state"
    state.write_text("WaitToBeDeleted")
    args = []
    if way == "override":
        override = tmp_path / "ops_override.py"
        override.write_text(OVERRIDE)
        args = ["--plugin-file", str(override)]
    sc = Sidecar(tmp_path / "sc", filestate(state, WAYS[way]), env=testplugins_env,
                 extra_args=args)  # fmt: skip
    sc.state_path.write_text(json.dumps(_maintaining()))
    with sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: annotation(sc) == "WaitToBeDeleted", 10, "the result on the pod")
        time.sleep(1.0)  # the GameServer write would have followed by now
        assert sc.ops_state() == "Maintaining"

        def done(doc: dict[str, Any]) -> None:
            doc["gameserver"]["spec"]["opsState"] = "None"

        edit(sc, done)  # the human is done: the write lands (proof this way writes the field)
        sc.wait_for(lambda: sc.ops_state() == "WaitToBeDeleted", 10, f"{way} to write opsState")
        assert sc.stop() == 0


def _maintaining() -> dict[str, Any]:
    meta = {"name": "gs-0", "namespace": "default", "labels": {}, "annotations": {}}
    return {
        "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "resourceVersion": "1"}},
        "gameserver": {
            "apiVersion": "game.kruise.io/v1alpha1",
            "kind": "GameServer",
            "metadata": {**meta, "resourceVersion": "1"},
            "spec": {"opsState": "Maintaining"},
        },
    }


def test_a_custom_ops_state_is_written_with_a_warning_through_either_key(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    """Issue 13 item 8 in local mode, as on the real API server (tests/kube/test_persistence.py):
    an opsState OKG does not know (it stores any string) is written, with a warning naming the
    config key, the same through ``gameServerOpsState`` and ``jsonPathConfigs``."""
    state = tmp_path / "state"
    state.write_text("draining")
    policies = {"markerPolicies": [
        {"state": "draining", "gameServerOpsState": "Draining"},
        {"state": "closing",
         "jsonPathConfigs": [{"jsonPath": "/spec/opsState", "value": "Closing"}]},
    ]}  # fmt: skip
    with Sidecar(tmp_path / "sc", filestate(state, policies), env=testplugins_env) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: sc.ops_state() == "Draining", 10, "opsState Draining")
        state.write_text("closing")
        sc.wait_for(lambda: sc.ops_state() == "Closing", 10, "opsState Closing")
        log = sc.log()
        for where in (
            "markerPolicies[0].gameServerOpsState",
            "markerPolicies[1].jsonPathConfigs[0]",
        ):
            assert where in log and "not an opsState OpenKruiseGame knows" in log, log
        assert sc.readyz()["ready"] is True
        assert sc.stop() == 0
    assert "Traceback" not in sc.log()


def test_a_gameserver_that_never_comes_is_reported(
    tmp_path: Path, testplugins_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    state.write_text("Allocated")
    config = filestate(state, ALLOCATED)
    sc = Sidecar(tmp_path / "sc", config, env=testplugins_env)
    doc = _maintaining()
    del doc["gameserver"]  # a Deployment's pod: no GameServer
    sc.state_path.write_text(json.dumps({**doc, "gameserver": None}))
    with sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: annotation(sc) == "Allocated", 10, "the pod write")
        sc.wait_for(lambda: sc.readyz()["persistence"]["waiting"], 10, "waiting")
        (waiting,) = sc.readyz()["persistence"]["waiting"]
        assert waiting.startswith("gameservers.game.kruise.io/default/gs-0")
        assert sc.readyz()["persistence"]["missing"] == []  # after 60 s (unit-tested on a clock)
        assert sc.readyz()["ready"] is True
        assert sc.stop() == 0

"""``contrib/overrides/dry_run_opsstate.py``: opsState writes become a pod annotation."""

from __future__ import annotations

from pathlib import Path

from kidecar_core import Event, FieldNotIn, ObjectRef, PodIdentity, Result, Write
from tests.contrib.overrides.recipes import RunSidecar, filestate, load_recipe

RECIPE = "dry_run_opsstate.py"
dry = load_recipe("dry_run_opsstate")

STORAGE = {
    "type": "InKube",
    "inKube": {
        "markerPolicies": [
            {
                "state": "down",
                "gameServerOpsState": "Maintaining",
                "gameServerLabels": {"example.com/health": "down"},
            },
            {
                "state": "up",
                "gameServerOpsState": "None",
                "gameServerLabels": {"example.com/health": "up"},
            },
        ]
    },
}


def test_opsstate_goes_to_an_annotation_and_the_rest_is_written(
    tmp_path: Path, run_sidecar: RunSidecar
) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("down")
    sc = run_sidecar({"plugins": [filestate(state_file, STORAGE)]}, RECIPE)

    def pod_annotations() -> dict[str, str]:
        annotations: dict[str, str] = sc.state()["pod"]["metadata"].get("annotations", {})
        return annotations

    sc.wait_for(lambda: pod_annotations().get(dry.ANNOTATION) == "Maintaining", what="dry run")
    # The GameServer and the Events are written by their own workers: wait for them too.
    sc.wait_for(
        lambda: "example.com/health" in sc.state()["gameserver"]["metadata"].get("labels", {}),
        what="the GameServer label",
    )
    sc.wait_for(
        lambda: any(e["reason"] == "OpsStateDryRun" for e in sc.state()["events"]),
        what="the dry-run Event",
    )
    gameserver = sc.state()["gameserver"]
    assert gameserver["spec"]["opsState"] == "None"  # untouched
    assert gameserver["metadata"]["labels"]["example.com/health"] == "down"  # written as usual
    reason = pod_annotations()[dry.REASON_ANNOTATION]
    assert reason == (
        "tp_filestate result 'down' would set gameservers.game.kruise.io/default/gs-0 "
        "spec.opsState to 'Maintaining' "
        "(plugins[0].config.storageConfig.inKube.markerPolicies[0].gameServerOpsState)"
    )
    events = sc.state()["events"]
    assert any(e["reason"] == "OpsStateDryRun" and "'Maintaining'" in e["message"] for e in events)
    assert not any(e["reason"] == "OpsStateChanged" for e in events)

    state_file.write_text("up")
    sc.wait_for(lambda: pod_annotations().get(dry.ANNOTATION) == "None", what="dry run: None")
    sc.wait_for(
        lambda: sc.state()["gameserver"]["metadata"]["labels"]["example.com/health"] == "up",
        what="the GameServer label",
    )
    gameserver = sc.state()["gameserver"]
    assert gameserver["metadata"]["labels"]["example.com/health"] == "up"
    assert gameserver["spec"]["opsState"] == "None"
    assert sc.stop() == 0


def test_switched_off_by_env_the_opsstate_is_written_for_real(
    tmp_path: Path, run_sidecar: RunSidecar
) -> None:
    state_file = tmp_path / "state.txt"
    state_file.write_text("down")
    sc = run_sidecar(
        {"plugins": [filestate(state_file, STORAGE)]},
        RECIPE,
        env={"KIDECAR_DRY_RUN_OPSSTATE": "0"},
    )
    sc.wait_for(
        lambda: sc.state()["gameserver"]["spec"]["opsState"] == "Maintaining", what="Maintaining"
    )
    assert dry.ANNOTATION not in sc.state()["pod"]["metadata"].get("annotations", {})
    assert sc.stop() == 0


# -- the rewrite itself, in-process --------------------------------------------------------

WHO = PodIdentity("gs-0", "default")
RESULT = Result(plugin="p", state="down")


def test_other_fields_of_a_rewritten_write_keep_their_guards() -> None:
    guard = FieldNotIn("/spec/opsState", ("Kill",))
    write = Write(
        ObjectRef.gameserver(WHO),
        {"spec": {"opsState": "Maintaining", "deletionPriority": 10}, "metadata": {"labels": {}}},
        source="src",
        guards=(guard,),
        event=Event("OpsStateChanged", "x"),
    )
    rest, annotation = dry.dry_run([write], RESULT, WHO)
    assert rest.patch == {"spec": {"deletionPriority": 10}, "metadata": {"labels": {}}}
    assert (rest.guards, rest.event, rest.source) == ((guard,), None, "src")
    assert annotation.target == ObjectRef.pod(WHO)
    assert annotation.patch["metadata"]["annotations"][dry.ANNOTATION] == "Maintaining"
    assert annotation.guards == ()


def test_writes_not_setting_a_gameserver_opsstate_pass_unchanged() -> None:
    untouched = [
        Write(ObjectRef.gameserver(WHO), {"spec": {"deletionPriority": 1}}),
        Write(ObjectRef.pod(WHO), {"spec": {"opsState": "Kill"}}),  # not a GameServer
        Write(ObjectRef.configmap("default", "x"), {"data": {"a": "b"}}),
    ]
    assert dry.dry_run(untouched, RESULT, WHO) == untouched


def test_the_switch() -> None:
    assert dry.enabled({})
    assert dry.enabled({"KIDECAR_DRY_RUN_OPSSTATE": "1"})
    for off in ("0", "false", "No", " off "):
        assert not dry.enabled({"KIDECAR_DRY_RUN_OPSSTATE": off})

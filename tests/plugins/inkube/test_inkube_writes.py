"""The InKube storage type's write plan for a result (pure: no store involved)."""

from __future__ import annotations

from kidecar_core import FieldNotIn, ObjectRef, PodIdentity, Result, StorageConfig
from kidecar_plugins.inkube.config import InKubeConfig, JsonPathValue, MarkerPolicy, Target
from kidecar_plugins.inkube.plugin import writes_for

WHO = PodIdentity("gs-0", "ns")


def result(state: str, cfg: InKubeConfig) -> Result:
    return Result(
        plugin="p",
        state=state,
        storage=StorageConfig("InKube", {"inKube": cfg}),
        source="plugins[0].config.storageConfig",
    )


def test_pod_keys_policy_writes_and_sources() -> None:
    cfg = InKubeConfig(
        annotation_key="a.example.com/s",
        label_key="a.example.com/s",
        json_path="/spec/note",
        marker_policies=(
            MarkerPolicy(
                state="WaitToBeDeleted",
                game_server_ops_state="WaitToBeDeleted",
                labels={"x": "1"},
                annotations={"y": "2"},
                json_path_configs=(JsonPathValue("/spec/deletionPriority", 10),),
            ),
            MarkerPolicy(state="other", game_server_ops_state="Allocated"),
        ),
    )
    writes = writes_for(result("WaitToBeDeleted", cfg), cfg, WHO)
    by_source = {
        w.source.removeprefix("plugins[0].config.storageConfig.inKube."): w for w in writes
    }
    pod, gs = ObjectRef.pod(WHO), ObjectRef.gameserver(WHO)
    assert by_source["annotationKey"].target == pod
    assert by_source["labelKey"].patch == {
        "metadata": {"labels": {"a.example.com/s": "WaitToBeDeleted"}}
    }
    assert by_source["jsonPath"].patch == {"spec": {"note": "WaitToBeDeleted"}}
    ops = by_source["markerPolicies[0].gameServerOpsState"]
    assert ops.target == gs and ops.patch == {"spec": {"opsState": "WaitToBeDeleted"}}
    assert ops.guards == (FieldNotIn("/spec/opsState", ("Maintaining", "Kill")),)
    assert ops.event is not None and ops.event.reason == "OpsStateChanged"
    assert by_source["markerPolicies[0].jsonPathConfigs[0]"].patch == {
        "spec": {"deletionPriority": 10}
    }
    assert not any("markerPolicies[1]" in s for s in by_source)  # only the matching policy
    # A policy's labels and annotations go to the Pod (the Go semantics), as a set.
    labels, annotations = (
        by_source["markerPolicies[0].labels"],
        by_source["markerPolicies[0].annotations"],
    )
    assert (labels.target, labels.patch) == (pod, {"metadata": {"labels": {"x": "1"}}})
    assert (annotations.target, annotations.patch) == (
        pod,
        {"metadata": {"annotations": {"y": "2"}}},
    )
    assert labels.policy_set and annotations.policy_set
    assert not by_source["labelKey"].policy_set  # the state itself is not a policy's


def test_game_server_metadata_only_when_asked_explicitly() -> None:
    cfg = InKubeConfig(
        marker_policies=(
            MarkerPolicy(
                state="idle",
                labels={"room-idle": "true"},
                annotations={"controller.kubernetes.io/pod-deletion-cost": "-10"},
                game_server_labels={"example.com/pool": "idle"},
                game_server_annotations={"example.com/why": "drained"},
            ),
        ),
    )
    writes = writes_for(result("idle", cfg), cfg, WHO)
    pod, gs = ObjectRef.pod(WHO), ObjectRef.gameserver(WHO)
    placed = {(w.target, k) for w in writes for k in w.patch["metadata"]}
    assert placed == {(pod, "labels"), (pod, "annotations"), (gs, "labels"), (gs, "annotations")}
    gs_labels = next(w for w in writes if w.source.endswith("gameServerLabels"))
    assert gs_labels.patch == {"metadata": {"labels": {"example.com/pool": "idle"}}}
    assert all(w.policy_set for w in writes)


def test_ops_state_always_goes_to_the_pods_gameserver_even_with_a_target() -> None:
    cfg = InKubeConfig(
        target=Target(group="example.com", version="v1", resource="rooms", name="room-1"),
        json_path="/spec/state",
        marker_policies=(
            MarkerPolicy(state="busy", game_server_ops_state="Allocated", labels={"b": "1"}),
        ),
    )
    writes = writes_for(result("busy", cfg), cfg, WHO)
    room = ObjectRef("example.com", "v1", "rooms", "ns", "room-1")
    targets = {w.source.rsplit(".", 1)[-1]: w.target for w in writes}
    assert targets["gameServerOpsState"] == ObjectRef.gameserver(WHO)
    assert targets["jsonPath"] == room
    assert targets["labels"] == ObjectRef.pod(WHO)


def test_every_write_of_ops_state_carries_the_guard() -> None:
    """Issue 13 item 1: the guard protects the field, not the config key."""
    guard = FieldNotIn("/spec/opsState", ("Maintaining", "Kill"))
    cfg = InKubeConfig(
        json_path="/spec/opsState",
        marker_policies=(
            MarkerPolicy(
                state="WaitToBeDeleted",
                game_server_ops_state="WaitToBeDeleted",
                json_path_configs=(
                    JsonPathValue("/spec/opsState", "WaitToBeDeleted"),
                    JsonPathValue("/spec/deletionPriority", 10),
                ),
            ),
        ),
    )
    writes = writes_for(result("WaitToBeDeleted", cfg), cfg, WHO)
    guards = {w.source.rsplit(".", 1)[-1]: w.guards for w in writes}
    assert guards == {
        "jsonPath": (guard,),
        "gameServerOpsState": (guard,),
        "jsonPathConfigs[0]": (guard,),
        "jsonPathConfigs[1]": (),
    }
    # Another target's /spec/opsState is not a GameServer's: no guard from here.
    room = InKubeConfig(
        target=Target(group="example.com", version="v1", resource="rooms"),
        json_path="/spec/opsState",
    )
    (write,) = writes_for(result("x", room), room, WHO)
    assert write.guards == ()


def test_protection_can_be_switched_off() -> None:
    cfg = InKubeConfig(
        marker_policies=(MarkerPolicy(state="s", game_server_ops_state="Kill"),),
        protected_ops_states=(),
    )
    (ops,) = writes_for(result("s", cfg), cfg, WHO)
    # An explicit empty guard: the core's default guard of the field does not apply either.
    assert ops.guards == (FieldNotIn("/spec/opsState", ()),)

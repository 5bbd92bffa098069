"""game_api in local mode: a real ``kidecar run --local-state`` process, called over HTTP by the
package's own client, the state file playing the pod, the GameServer and the human."""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.game_api.harness import GameApiClient, GameApiError, Raw, Watch, start
from tests.plugins.http_probe.game import GameHTTP

Start = Callable[..., tuple[Sidecar, GameApiClient]]


@pytest.fixture
def game_api(tmp_path: Path) -> Iterator[Start]:
    """``game_api(**config)``: a local-mode sidecar with game_api; stopped afterwards."""
    started: list[Sidecar] = []

    def run(**config: Any) -> tuple[Sidecar, GameApiClient]:
        sidecar, client = start(tmp_path / f"sidecar-{len(started)}", **config)
        started.append(sidecar)
        return sidecar, client

    yield run
    for sidecar in started:
        if sidecar.proc is not None and sidecar.proc.returncode is None:
            sidecar.stop()


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    """The game's state endpoint, for http_probe."""
    with GameHTTP() as server:
        yield server


def gameserver(sidecar: Sidecar) -> dict[str, Any]:
    gs: dict[str, Any] = sidecar.state()["gameserver"]
    return gs


def edit_state(sidecar: Sidecar, change: Callable[[dict[str, Any]], None]) -> None:
    """What a human editing the state file by hand does (the store re-reads a changed file)."""
    state = sidecar.state()
    change(state)
    sidecar.state_path.write_text(json.dumps(state))


def writes(sidecar: Sidecar, resource: str = "gameservers") -> float:
    """Patches the sidecar sent to the store, from its metrics."""
    labels = {"resource": resource, "verb": "patch"}
    return sidecar.metric("kidecar_persist_writes_total", labels) or 0.0


def test_patch_reaches_the_gameserver_and_is_recorded(game_api: Start) -> None:
    sidecar, api = game_api()
    assert api.gameserver().ops_state == "None"
    answer = api.patch(ops_state="Allocated", deletion_priority=5, network_disabled=False)
    assert answer == {
        "status": "queued",
        "target": "gameservers.game.kruise.io/default/gs-0",
        "changes": {"opsState": "Allocated", "deletionPriority": 5, "networkDisabled": False},
    }
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["opsState"] == "Allocated", 10, "opsState")
    spec = gameserver(sidecar)["spec"]
    assert spec == {
        "opsState": "Allocated",
        "updatePriority": 0,
        "deletionPriority": 5,
        "networkDisabled": False,
    }
    assert writes(sidecar) == 1  # one patch for the three fields
    events = sidecar.state()["events"]
    assert [e["reason"] for e in events] == ["OpsStateChanged"]
    assert "game_api" in events[0]["message"]
    # The copy read for the guard check before the write was forgotten when the write went out:
    # a read after the write landed shows it at once.
    assert api.gameserver().ops_state == "Allocated"
    assert api.gameserver().deletion_priority == 5
    assert sidecar.stop() == 0


def test_labels_and_annotations_under_the_prefix(game_api: Start) -> None:
    sidecar, api = game_api()
    api.set_label("game.kidecar.io/room", "room-42")
    api.set_annotation("game.kidecar.io/note", "players: 12/16")
    status, body = Raw(api).json("PUT", "/v1/metadata/labels/game.kidecar.io%2Fmap", {"value": ""})
    assert status == 202, body

    def metadata() -> dict[str, Any]:
        meta: dict[str, Any] = gameserver(sidecar)["metadata"]
        return meta

    sidecar.wait_for(lambda: len(metadata()["labels"]) == 2, 10, "labels")
    assert metadata()["labels"] == {"game.kidecar.io/room": "room-42", "game.kidecar.io/map": ""}
    assert metadata()["annotations"] == {"game.kidecar.io/note": "players: 12/16"}
    api.delete_label("game.kidecar.io/room")
    api.delete_annotation("game.kidecar.io/note")
    api.delete_annotation("game.kidecar.io/never-set")  # nothing to remove: still fine
    sidecar.wait_for(lambda: not metadata()["annotations"], 10, "annotation removed")
    assert metadata()["labels"] == {"game.kidecar.io/map": ""}
    assert sidecar.state()["pod"]["metadata"]["labels"] == {}  # metadataTarget: gameserver


def test_metadata_target_pod(game_api: Start) -> None:
    sidecar, api = game_api(metadataTarget="pod", metadataPrefixes=["example.com/room-"])
    answer = api.set_label("example.com/room-id", "42")
    assert answer["target"] == "pods/default/gs-0"
    sidecar.wait_for(
        lambda: sidecar.state()["pod"]["metadata"]["labels"] == {"example.com/room-id": "42"},
        10,
        "pod label",
    )
    assert gameserver(sidecar)["metadata"]["labels"] == {}
    with pytest.raises(GameApiError) as e:
        api.set_label("example.com/other", "1")
    assert e.value.status == 403


def test_kubernetes_and_openkruise_keys_need_a_prefix_that_names_them(game_api: Start) -> None:
    # A prefix without '/' matches keys of any domain starting so, kubernetes.io's too.
    sidecar, api = game_api(
        metadataTarget="pod",
        metadataPrefixes=["g", "k", "controller.kubernetes.io/pod-deletion-cost"],
    )
    for key in ("k8s.io/x", "kubernetes.io/x", "game.kruise.io/network-conf", "g.k8s.io/y"):
        with pytest.raises(GameApiError) as e:
            api.set_annotation(key, "1")
        assert e.value.status == 403 and "belong to Kubernetes and OpenKruise" in e.value.message
    api.set_annotation("controller.kubernetes.io/pod-deletion-cost", "-100")
    api.set_label("game-room", "1")
    sidecar.wait_for(
        lambda: sidecar.state()["pod"]["metadata"].get("labels") == {"game-room": "1"},
        10,
        "pod label",
    )
    annotations = sidecar.state()["pod"]["metadata"]["annotations"]
    assert annotations.get("controller.kubernetes.io/pod-deletion-cost") == "-100"
    assert not any(k.startswith(("k8s.io", "kubernetes.io", "game.kruise.io")) for k in annotations)


REFUSED = [
    ("PATCH", "/v1/gameserver", {"opsstate": "None"}, 400, "did you mean 'opsState'"),
    ("PATCH", "/v1/gameserver", {"deletionPriority": "high"}, 400, "OKG reads a non-numeric"),
    ("PATCH", "/v1/gameserver", {"networkDisabled": 1}, 400, "must be true or false"),
    ("PATCH", "/v1/gameserver", {}, 400, "nothing to change"),
    ("PUT", "/v1/metadata/labels/game.kidecar.io/room", {"value": "room 1"}, 400, "valid label"),
    ("PUT", "/v1/metadata/labels/game.kidecar.io/room", {"value": 1}, 400, "must be a string"),
    ("PUT", "/v1/metadata/labels/game.kidecar.io/room", {"v": "1"}, 400, '{"value"'),
    ("PUT", "/v1/metadata/labels/game.kidecar.io/a b", {"value": "1"}, 400, "invalid label key"),
    ("PUT", "/v1/metadata/labels/app", {"value": "web"}, 403, "not under metadataPrefixes"),
    ("DELETE", "/v1/metadata/annotations/kubernetes.io/x", None, 403, "not under"),
    ("PATCH", "/v1/gameserver", {"opsState": "room full"}, 400, "game.kruise.io/gs-opsState"),
    ("PATCH", "/v1/gameserver", {"opsState": "a" * 20_000}, 400, "longer than 63"),
    ("PATCH", "/v1/gameserver", {"deletionPriority": -1}, 400, "gs-deletion-priority"),
]


def test_refused_requests_say_why_and_change_nothing(game_api: Start) -> None:
    sidecar, api = game_api()
    raw = Raw(api)
    before = gameserver(sidecar)
    for method, path, body, status, why in REFUSED:
        got, answer = raw.json(method, path.replace(" ", "%20"), body)
        assert (got, answer["code"], answer["status"]) == (status, status, "error"), (path, body)
        assert why in answer["message"], answer
    got, answer, _ = raw.send("PATCH", "/v1/gameserver", "opsState=None", {"Content-Type": "x"})
    assert (got, answer["reason"]) == (415, "unsupported media type")
    got, answer, _ = raw.send("PATCH", "/v1/gameserver", "{", {"Content-Type": "application/json"})
    assert got == 400 and "not valid JSON" in answer["message"]
    for body in ('{"deletionPriority": NaN}', "[" * 30_000 + "]" * 30_000, b"{\xff}"):
        got, answer, _ = raw.send(
            "PATCH", "/v1/gameserver", body, {"Content-Type": "application/json; charset=foo"}
        )
        assert got == 400, body[:20]
    big = json.dumps({"value": "x" * 70_000})
    got, answer, _ = raw.send(
        "PUT",
        "/v1/metadata/annotations/game.kidecar.io/a",
        big,
        {"Content-Type": "application/json"},
    )
    assert (got, answer["code"]) == (413, 413)
    time.sleep(1)  # give a wrongly queued write every chance to land
    assert gameserver(sidecar) == before
    assert writes(sidecar) == 0
    assert "Traceback" not in sidecar.log()


def test_annotations_total_size_is_checked_as_the_api_server_does(game_api: Start) -> None:
    _, api = game_api()
    for i in range(4):
        api.set_annotation(f"game.kidecar.io/blob-{i}", "x" * 60_000)
    with pytest.raises(GameApiError) as e:
        api.set_annotation("game.kidecar.io/blob-4", "x" * 60_000)
    assert e.value.status == 400
    assert "more than the 262144 bytes the API server accepts" in e.value.message
    api.set_annotation("game.kidecar.io/blob-0", "small")  # replacing one makes room again
    api.set_annotation("game.kidecar.io/blob-4", "x" * 60_000)


def test_bearer_token(game_api: Start) -> None:
    _, api = game_api(auth={"tokenEnv": "GAME_API_TOKEN"}, env={"GAME_API_TOKEN": "s3cret"})
    raw = Raw(api)
    status, answer, headers = raw.send("GET", "/v1/gameserver")
    assert (status, answer["code"]) == (401, 401)
    assert headers["WWW-Authenticate"] == 'Bearer realm="kidecar"'
    status, _, _ = raw.send("GET", "/v1/gameserver", headers={"Authorization": "Bearer nope"})
    assert status == 403
    # The token is checked before anything else: a bad body without it is 401, not 400.
    status, _ = raw.json("PATCH", "/v1/gameserver", {"bad": 1})
    assert status == 401
    authorized = GameApiClient(api.url, token="s3cret")
    assert authorized.gameserver().name == "gs-0"
    assert authorized.patch(ops_state="Allocated")["status"] == "queued"


def test_a_humans_maintaining_is_409_with_the_reason(game_api: Start) -> None:
    sidecar, api = game_api()

    def human_sets(state: str) -> None:
        edit_state(sidecar, lambda s: s["gameserver"]["spec"].update(opsState=state))
        sidecar.wait_for(lambda: api.gameserver().ops_state == state, 10, f"GET shows {state}")

    human_sets("Maintaining")
    with pytest.raises(GameApiError) as e:
        api.set_ops_state("WaitToBeDeleted")
    assert e.value.status == 409
    assert "spec.opsState is 'Maintaining', set by someone else (not by kidecar)" in e.value.message
    assert "protectedOpsStates" in e.value.message
    api.set_ops_state("Maintaining")  # already so: nothing to hold back
    api.patch(deletion_priority=7)  # other fields are the game's
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["deletionPriority"] == 7, 10, "priority")
    assert gameserver(sidecar)["spec"]["opsState"] == "Maintaining"
    # The game still asks Maintaining: a human who sets None sees the game's ask restored
    # (kidecar keeps its desired state true; only a human's Maintaining/Kill holds).
    edit_state(sidecar, lambda s: s["gameserver"]["spec"].update(opsState="None"))
    sidecar.wait_for(lambda: "re-asserting it" in sidecar.log(), 10, "the revert seen")
    sidecar.wait_for(
        lambda: gameserver(sidecar)["spec"]["opsState"] == "Maintaining", 10, "the ask restored"
    )
    api.set_ops_state("Allocated")
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["opsState"] == "Allocated", 10, "free")
    # The API's copy (at most 1 s old) sees it too before the game's next ask is judged.
    sidecar.wait_for(lambda: api.gameserver().ops_state == "Allocated", 10, "API sees it")
    # What the game set itself is the game's to change again, Maintaining included.
    api.set_ops_state("Maintaining")
    sidecar.wait_for(lambda: api.gameserver().ops_state == "Maintaining", 10, "game's own")
    api.set_ops_state("None")
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["opsState"] == "None", 10, "None")


def test_protected_ops_states_can_be_emptied(game_api: Start) -> None:
    sidecar, api = game_api(protectedOpsStates=[])
    edit_state(sidecar, lambda s: s["gameserver"]["spec"].update(opsState="Maintaining"))
    sidecar.wait_for(lambda: api.gameserver().ops_state == "Maintaining", 10, "Maintaining")
    api.set_ops_state("None")
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["opsState"] == "None", 10, "None")


def test_the_games_opsstate_is_one_source_of_the_precedence(
    game_api: Start, game: GameHTTP
) -> None:
    """The game's opsState asks rank with the probes' (opsStatePrecedence): a probe saying
    WaitToBeDeleted cannot make the server deletable while the game says Allocated, and the
    game's other writes (labels) do not withdraw its ask."""
    game.set("/state", "WaitToBeDeleted")
    policies = [{"state": s, "gameServerOpsState": s} for s in ("WaitToBeDeleted", "None")]
    storage = {"type": "InKube", "inKube": {"markerPolicies": policies}}
    endpoint = {"url": game.url("/state"), "timeout": 1, "storageConfig": storage}
    probe = {"name": "http_probe", "config": {"probeIntervalSeconds": 0.1, "endpoints": [endpoint]}}
    sidecar, api = game_api(others=[probe])
    sidecar.wait_for(lambda: ops(sidecar) == "WaitToBeDeleted", 10, "the probe's ask")
    api.set_ops_state("Allocated")
    sidecar.wait_for(lambda: ops(sidecar) == "Allocated", 10, "the game's ask wins")
    api.set_label("game.kidecar.io/players", "12")
    sidecar.wait_for(lambda: gameserver(sidecar)["metadata"]["labels"], 10, "the label")
    assert ops(sidecar) == "Allocated"
    game.set("/state", "None")  # the probe's new ask ranks last: still Allocated
    sidecar.wait_for(lambda: probes_seen(sidecar, "None"), 10, "the probe's None")
    assert ops(sidecar) == "Allocated"
    api.set_ops_state("WaitToBeDeleted")  # the game is done, the probe says idle: drained
    sidecar.wait_for(lambda: ops(sidecar) == "WaitToBeDeleted", 10, "WaitToBeDeleted > None")
    assert "sources disagree on the opsState" in sidecar.log()


def ops(sidecar: Sidecar) -> str:
    return str(gameserver(sidecar)["spec"]["opsState"])


def probes_seen(sidecar: Sidecar, state: str) -> bool:
    return f"-> '{state}'" in sidecar.log()


def test_a_hundred_patches_in_one_second_make_at_most_three_writes(game_api: Start) -> None:
    sidecar, api = game_api()
    started = time.monotonic()
    for i in range(100):
        api.patch(deletion_priority=i)
        time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
    elapsed = time.monotonic() - started
    sidecar.wait_for(lambda: gameserver(sidecar)["spec"]["deletionPriority"] == 99, 10, "last")
    # Leading write at 0, then one per 0.5 s interval: 3 when the PATCHes fit in one second.
    bound = 1 + math.ceil(elapsed / 0.5)
    assert 2 <= writes(sidecar) <= bound, (writes(sidecar), elapsed)
    assert bound == 3 or elapsed > 1.0


def test_watch_shows_the_object_then_each_change_and_ends_cleanly_on_sigterm(
    game_api: Start,
) -> None:
    sidecar, api = game_api()
    with Watch(api) as watch:
        first = watch.next()
        assert (first.name, first.ops_state) == ("gs-0", "None")
        api.set_ops_state("Allocated")
        assert watch.until(lambda gs: gs.ops_state == "Allocated").status == {}
        edit_state(sidecar, lambda s: s["gameserver"]["metadata"]["labels"].update(x="y"))
        assert watch.until(lambda gs: gs.labels == {"x": "y"}).ops_state == "Allocated"
        with Watch(api) as second:  # a second watcher starts with the object as it is now
            assert second.next().labels == {"x": "y"}
            sidecar.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert watch.ended.wait(15), watch.error
            assert second.ended.wait(15), second.error
    assert watch.error is None
    assert sidecar.proc.wait(30) == 0  # type: ignore[union-attr]
    assert sidecar.stop() == 0
    assert "Traceback" not in sidecar.log()


def test_writes_queued_before_sigterm_are_written(game_api: Start) -> None:
    sidecar, api = game_api()
    for i in range(20):
        api.patch(update_priority=i)
    api.set_label("game.kidecar.io/last", "yes")
    assert sidecar.stop() == 0
    gs = gameserver(sidecar)
    assert gs["spec"]["updatePriority"] == 19
    assert gs["metadata"]["labels"] == {"game.kidecar.io/last": "yes"}

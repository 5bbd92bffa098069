"""game_api against the real API server: ``kidecar run --kubeconfig`` as the ``kidecar``
ServiceAccount (Role of deploy/base), through the counting proxy, called by the package's client."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from kidecar_core.testing import Sidecar
from tests.plugins.game_api.harness import GameApiClient, GameApiError, Watch, start
from tests.support.apiserver import GAME_GROUP, GAME_VERSION, GameServerFactory, TestCluster
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.kube

NAME = "gs-0"
GS_PATH = rf"/apis/game\.kruise\.io/v1alpha1/namespaces/[^/]+/gameservers/{NAME}$"
POD_PATH = rf"/api/v1/namespaces/[^/]+/pods/{NAME}$"

Start = Callable[..., tuple[Sidecar, GameApiClient]]


class Admin:
    """The test's GameServer and Pod, read and changed with admin credentials."""

    def __init__(self, cluster: TestCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def gs(self) -> dict[str, Any]:
        with self.cluster.admin_api_client() as api:
            data = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                GAME_GROUP, GAME_VERSION, self.namespace, "gameservers", NAME
            )
            return cast(dict[str, Any], data)

    def patch_gs(self, patch: dict[str, Any], manager: str = "kubectl-edit") -> None:
        with self.cluster.admin_api_client() as api:
            k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
                GAME_GROUP, GAME_VERSION, self.namespace, "gameservers", NAME, patch,
                field_manager=manager,
            )  # fmt: skip

    def pod_labels(self) -> dict[str, str]:
        with self.cluster.admin_api_client() as api:
            pod = k8s.CoreV1Api(api).read_namespaced_pod(NAME, self.namespace)
            return dict(pod.metadata.labels or {})


@pytest.fixture
def admin(kube_cluster: TestCluster, kube_namespace: str) -> Admin:
    return Admin(kube_cluster, kube_namespace)


@pytest.fixture
def game_api(tmp_path: Path, kube_namespace: str, fault_proxy_kubeconfig: Path) -> Iterator[Start]:
    """``game_api(**config)``: a sidecar with game_api for pod ``gs-0`` of the test namespace,
    talking to the API server through the counting proxy; stopped afterwards."""
    started: list[Sidecar] = []

    def run(**config: Any) -> tuple[Sidecar, GameApiClient]:
        sidecar, client = start(
            tmp_path / f"sidecar-{len(started)}",
            kubeconfig=str(fault_proxy_kubeconfig),
            env={"KIDECAR_RESYNC_SECONDS": "3600"},
            pod_name=NAME,
            namespace=kube_namespace,
            **config,
        )
        started.append(sidecar)
        return sidecar, client

    yield run
    for sidecar in started:
        if sidecar.proc is not None and sidecar.proc.returncode is None:
            sidecar.stop()


def patches(proxy: FaultProxy, path: str = GS_PATH) -> int:
    return proxy.count("PATCH", path)


def test_patch_updates_the_gameserver(
    make_game_server: GameServerFactory, admin: Admin, game_api: Start
) -> None:
    make_game_server(NAME, gameserver_spec={"opsState": "None", "deletionPriority": 1})
    sidecar, api = game_api()
    assert api.gameserver().ops_state == "None"
    api.patch(ops_state="Allocated", update_priority=3, network_disabled=True)
    sidecar.wait_for(lambda: admin.gs()["spec"].get("opsState") == "Allocated", 10, "Allocated")
    assert admin.gs()["spec"] == {
        "opsState": "Allocated",
        "updatePriority": 3,
        "deletionPriority": 1,  # a merge patch: the rest of spec is kept
        "networkDisabled": True,
    }
    sidecar.wait_for(lambda: api.gameserver().update_priority == 3, 10, "GET shows it")
    api.set_label("game.kidecar.io/room", "room-42")
    api.set_annotation("game.kidecar.io/note", "players: 12/16")
    sidecar.wait_for(
        lambda: admin.gs()["metadata"].get("annotations", {}).get("game.kidecar.io/note"), 10, "a"
    )
    assert admin.gs()["metadata"]["labels"]["game.kidecar.io/room"] == "room-42"
    api.delete_label("game.kidecar.io/room")
    sidecar.wait_for(
        lambda: "game.kidecar.io/room" not in admin.gs()["metadata"].get("labels", {}), 10, "gone"
    )
    assert sidecar.stop() == 0


def test_a_hundred_patches_in_one_second_make_at_most_three_api_writes(
    make_game_server: GameServerFactory, admin: Admin, game_api: Start, fault_proxy: FaultProxy
) -> None:
    make_game_server(NAME)
    sidecar, api = game_api()
    fault_proxy.reset()
    started = time.monotonic()
    for i in range(100):
        api.patch(deletion_priority=i, ops_state="Allocated" if i % 2 else "None")
        time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
    elapsed = time.monotonic() - started
    sidecar.wait_for(lambda: admin.gs()["spec"].get("deletionPriority") == 99, 10, "the last")
    assert admin.gs()["spec"]["opsState"] == "Allocated"
    bound = 1 + math.ceil(elapsed / 0.5)  # the first at once, then one per 0.5 s interval
    assert 2 <= patches(fault_proxy) <= bound, (fault_proxy.requests(), elapsed)
    assert bound == 3 or elapsed > 1.0


def test_a_humans_maintaining_is_409_naming_who_set_it(
    make_game_server: GameServerFactory, admin: Admin, game_api: Start, fault_proxy: FaultProxy
) -> None:
    make_game_server(NAME)
    sidecar, api = game_api()
    admin.patch_gs({"spec": {"opsState": "Maintaining"}}, manager="kubectl-edit")
    sidecar.wait_for(lambda: api.gameserver().ops_state == "Maintaining", 10, "Maintaining")
    fault_proxy.reset()
    with pytest.raises(GameApiError) as e:
        api.patch(ops_state="WaitToBeDeleted", deletion_priority=10)
    assert e.value.status == 409
    assert "'Maintaining', set by kubectl-edit (not by kidecar)" in e.value.message
    api.patch(deletion_priority=10)
    sidecar.wait_for(lambda: admin.gs()["spec"].get("deletionPriority") == 10, 10, "priority")
    assert admin.gs()["spec"]["opsState"] == "Maintaining"
    assert patches(fault_proxy) == 1  # nothing of the refused PATCH was written
    admin.patch_gs({"spec": {"opsState": "None"}})
    sidecar.wait_for(lambda: api.gameserver().ops_state == "None", 10, "the human is done")
    api.set_ops_state("WaitToBeDeleted")
    sidecar.wait_for(lambda: admin.gs()["spec"]["opsState"] == "WaitToBeDeleted", 10, "written")


def test_labels_to_the_pod_and_values_the_api_server_would_refuse(
    make_game_server: GameServerFactory, admin: Admin, game_api: Start, fault_proxy: FaultProxy
) -> None:
    make_game_server(NAME)
    sidecar, api = game_api(metadataTarget="pod")
    api.set_label("game.kidecar.io/room", "42")
    sidecar.wait_for(lambda: admin.pod_labels() == {"game.kidecar.io/room": "42"}, 10, "label")
    fault_proxy.reset()
    for key, value in (
        ("game.kidecar.io/room", "room 42"),
        ("game.kidecar.io/" + "r" * 64, "1"),
        ("game.kidecar.io/room", "x" * 64),
    ):
        with pytest.raises(GameApiError) as e:
            api.set_label(key, value)
        assert e.value.status == 400, key
    with pytest.raises(GameApiError) as e:
        api.set_label("app", "web")
    assert e.value.status == 403
    time.sleep(1)  # a wrongly queued write would be sent within the interval
    assert patches(fault_proxy, POD_PATH) == 0
    assert "rejected" not in sidecar.log()


def test_watch_delivers_changes_and_keeps_going_across_an_api_server_restart(
    make_game_server: GameServerFactory,
    admin: Admin,
    game_api: Start,
    kube_cluster: TestCluster,
) -> None:
    make_game_server(NAME)
    sidecar, api = game_api()
    with Watch(api) as watch:
        assert watch.next().ops_state == "None"
        admin.patch_gs({"metadata": {"labels": {"team": "red"}}})
        assert watch.until(lambda gs: gs.labels.get("team") == "red").ops_state == "None"
        kube_cluster.stop_apiserver()
        try:
            # Queued while the API server is away (202, not 503), written when it is back.
            assert api.set_ops_state("Allocated")["status"] == "queued"
            time.sleep(1.5)  # the sidecar's reads fail meanwhile
        finally:
            kube_cluster.start_apiserver()
        # Someone else's change as soon as the API server is back, most likely before the
        # sidecar's watch is: it reaches the game all the same, with the queued write.
        admin.patch_gs({"metadata": {"labels": {"team": "green"}}})
        watch.until(
            lambda gs: gs.ops_state == "Allocated" and gs.labels.get("team") == "green",
            timeout=60,
        )
        admin.patch_gs({"metadata": {"labels": {"team": "blue"}}})
        watch.until(lambda gs: gs.labels.get("team") == "blue", timeout=20)
        assert watch.error is None and not watch.ended.is_set()
    assert admin.gs()["spec"]["opsState"] == "Allocated"
    assert sidecar.stop() == 0


def test_reads_while_the_api_server_is_away_answer_503_not_a_stale_copy(
    make_game_server: GameServerFactory,
    game_api: Start,
    kube_cluster: TestCluster,
) -> None:
    make_game_server(NAME)
    sidecar, api = game_api()
    assert api.gameserver().ops_state == "None"
    kube_cluster.stop_apiserver()
    try:
        time.sleep(1.5)  # the copy (at most a second old) is stale now
        with pytest.raises(GameApiError) as e:
            GameApiClient(api.url, timeout=120).gameserver()
        assert e.value.status == 503 and "cannot read the GameServer" in e.value.message
        assert api.set_ops_state("Allocated")["status"] == "queued"  # writes still queue
    finally:
        kube_cluster.start_apiserver()

    def written() -> bool:
        try:
            return api.gameserver().ops_state == "Allocated"
        except GameApiError:  # 503 until the sidecar reads again
            return False

    sidecar.wait_for(written, 60, "the queued write")
    assert sidecar.stop() == 0

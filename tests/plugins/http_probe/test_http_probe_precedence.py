"""Two endpoints that both map to opsState, end to end: in local mode and against the real API
server.  A health endpoint (A) and a room endpoint (B), as in the issue: A's ``unhealthy`` holds
the server in Maintaining whatever B says, and B's ``idle`` never makes deletable a server that
A reports ``Allocated``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.http_probe.game import GameHTTP
from tests.plugins.http_probe.test_http_probe_kube import NAME, Objects
from tests.plugins.http_probe.test_http_probe_local import inkube, ops_state, plugin, pod_meta
from tests.support.apiserver import GameServerFactory, TestCluster

HEALTH = [
    {"state": "unhealthy", "gameServerOpsState": "Maintaining"},
    {"state": "playing", "gameServerOpsState": "Allocated"},
    # `healthy` has no policy: A then asks for nothing.
]
ROOM = [
    {"state": "idle", "gameServerOpsState": "WaitToBeDeleted"},
    {"state": "busy", "gameServerOpsState": "None"},
]


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


def two_endpoints(game: GameHTTP, **top: Any) -> dict[str, Any]:
    config = plugin(
        {
            "url": game.url("/health"),
            "storageConfig": inkube(annotationKey="example.com/health", markerPolicies=HEALTH),
        },
        {
            "url": game.url("/room"),
            "storageConfig": inkube(annotationKey="example.com/room", markerPolicies=ROOM),
        },
    )
    config.update(top)
    return config


def answered(sc: Sidecar, health: str, room: str) -> bool:
    meta = pod_meta(sc)
    return (meta.get("example.com/health"), meta.get("example.com/room")) == (health, room)


def test_local_unhealthy_holds_and_allocated_is_never_made_deletable(
    tmp_path: Path, game: GameHTTP
) -> None:
    game.set("/health", "unhealthy")
    game.set("/room", "idle")
    with Sidecar(tmp_path, two_endpoints(game)) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: answered(sc, "unhealthy", "idle"), 15, "both states")
        sc.wait_for(lambda: ops_state(sc) == "Maintaining", 15, "Maintaining")
        game.set("/room", "busy")
        sc.wait_for(lambda: answered(sc, "unhealthy", "busy"), 15, "busy")
        assert ops_state(sc) == "Maintaining"  # it used to end at None
        game.set("/health", "healthy")  # A asks for nothing any more: B's None stands
        sc.wait_for(lambda: ops_state(sc) == "None", 15, "None")

        game.set("/health", "playing")
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        game.set("/room", "idle")
        sc.wait_for(lambda: answered(sc, "playing", "idle"), 15, "idle")
        assert ops_state(sc) == "Allocated"
        game.set("/health", "healthy")
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "WaitToBeDeleted")
        assert sc.stop() == 0
    # Each disagreement once, though both endpoints were probed every 0.1 s meanwhile.
    lines = [line for line in sc.log().splitlines() if "sources disagree" in line]
    seen = [
        (set(re.findall(r"asks (\w+)", line)), re.findall(r"; (\w+) wins", line)) for line in lines
    ]
    assert seen == [
        ({"Maintaining", "WaitToBeDeleted"}, ["Maintaining"]),
        ({"Maintaining", "None"}, ["Maintaining"]),
        ({"Allocated", "None"}, ["Allocated"]),
        ({"Allocated", "WaitToBeDeleted"}, ["Allocated"]),
    ]


def test_local_a_configured_precedence_is_followed(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/health", "unhealthy")
    game.set("/room", "idle")
    config = two_endpoints(game, opsStatePrecedence=["WaitToBeDeleted", "*"])
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: answered(sc, "unhealthy", "idle"), 15, "both states")
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "WaitToBeDeleted")


@pytest.mark.kube
def test_kube_unhealthy_holds_and_allocated_is_never_made_deletable(
    tmp_path: Path,
    make_game_server: GameServerFactory,
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    game: GameHTTP,
) -> None:
    make_game_server(NAME, gameserver_spec={"opsState": "None"})
    objects = Objects(kube_cluster, kube_namespace)

    def annotations() -> tuple[str | None, str | None]:
        meta = objects.pod_annotations()
        return meta.get("example.com/health"), meta.get("example.com/room")

    game.set("/health", "unhealthy")
    game.set("/room", "idle")
    sc = Sidecar(
        tmp_path,
        two_endpoints(game),
        kubeconfig=str(sa_kubeconfig),
        pod_name=NAME,
        namespace=kube_namespace,
    )
    with sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: annotations() == ("unhealthy", "idle"), 10, "both states")
        sc.wait_for(lambda: objects.ops() == "Maintaining", 10, "Maintaining")
        game.set("/room", "busy")
        sc.wait_for(lambda: annotations() == ("unhealthy", "busy"), 10, "busy")
        assert objects.ops() == "Maintaining"
        game.set("/health", "playing")
        sc.wait_for(lambda: objects.ops() == "Allocated", 10, "Allocated")
        game.set("/room", "idle")
        sc.wait_for(lambda: annotations() == ("playing", "idle"), 10, "idle")
        assert objects.ops() == "Allocated"
        game.set("/health", "healthy")
        sc.wait_for(lambda: objects.ops() == "WaitToBeDeleted", 10, "WaitToBeDeleted")
        assert sc.stop() == 0

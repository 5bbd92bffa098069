"""http_probe against the real API server: ``kidecar run --kubeconfig`` with the ServiceAccount and
Role from deploy/, through the counting proxy, driven by a real game HTTP server."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.http_probe.game import GameHTTP, answer
from tests.support.apiserver import GameServerFactory
from tests.support.faultproxy import FaultProxy
from tests.support.kubeobjects import Objects
from tests.support.sidecars import RESYNC_OFF, Sidecars

pytestmark = pytest.mark.kube

NAME = "gs-0"
GS_PATH = rf"/apis/game\.kruise\.io/v1alpha1/namespaces/[^/]+/gameservers/{NAME}$"
POD_PATH = rf"/api/v1/namespaces/[^/]+/pods/{NAME}$"
WRITES = ("PATCH", "PUT", "POST")


def probe_config(url: str, *extra_policies: dict[str, Any], **endpoint: Any) -> dict[str, Any]:
    """One endpoint whose state goes to a pod annotation and drives the GameServer."""
    policies = [
        {"state": "None", "gameServerOpsState": "None"},
        {
            "state": "Allocated",
            "gameServerOpsState": "Allocated",
            "gameServerLabels": {"example.com/busy": "true"},
        },
        {
            "state": "WaitToBeDeleted",
            "gameServerOpsState": "WaitToBeDeleted",
            "gameServerLabels": {"example.com/busy": "false"},
            "gameServerAnnotations": {"example.com/drain": "game asked"},
            "jsonPathConfigs": [{"jsonPath": "/spec/deletionPriority", "value": 10}],
        },
        *extra_policies,
    ]
    storage = {
        "type": "InKube",
        "inKube": {"annotationKey": "example.com/state", "markerPolices": policies},
    }
    config = {
        "probeIntervalSeconds": 0.1,
        "endpoints": [{"url": url, "timeout": 1, "storageConfig": storage, **endpoint}],
    }
    return {"plugins": [{"name": "http_probe", "config": config}]}


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


@pytest.fixture
def sidecar(kube_sidecars: Sidecars, fault_proxy_kubeconfig: Path) -> Callable[..., Sidecar]:
    """``sidecar(config)``: a kidecar talking to the API server through the fault proxy as the
    ``kidecar`` ServiceAccount (RBAC from deploy/base/rbac.yaml), resync off; stopped afterwards."""
    return functools.partial(kube_sidecars, fault_proxy_kubeconfig, env=RESYNC_OFF)


def writes(proxy: FaultProxy, path: str) -> int:
    return sum(proxy.count(method, path) for method in WRITES)


def write_statuses(proxy: FaultProxy, path: str) -> list[int]:
    """The answers' status codes of the writes to ``path`` since the last reset, in order."""
    return [r.status for r in proxy.requests() if r.method in WRITES and re.search(path, r.path)]


def test_game_state_transitions_drive_the_gameserver(
    make_game_server: GameServerFactory, objects: Objects, game: GameHTTP,
    fault_proxy: FaultProxy, sidecar: Any,
) -> None:  # fmt: skip
    make_game_server(NAME, gameserver_spec={"opsState": "None", "updatePriority": 1})
    game.set("/state", "None")
    with sidecar(probe_config(game.url("/state"))) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(
            lambda: objects.pod_annotations().get("example.com/state") == "None", 10, "None"
        )
        assert objects.ops() == "None"
        assert writes(fault_proxy, GS_PATH) == 0  # the GameServer already says None

        game.set("/state", "Allocated")
        sc.wait_for(lambda: objects.ops() == "Allocated", 10, "opsState Allocated")
        gs = objects.gs()
        assert gs["metadata"]["labels"] == {"example.com/busy": "true"}
        assert gs["spec"]["updatePriority"] == 1  # a merge patch: the rest of spec is kept
        sc.wait_for(
            lambda: objects.pod_annotations()["example.com/state"] == "Allocated", 10, "pod"
        )

        game.set("/state", "WaitToBeDeleted")
        sc.wait_for(lambda: objects.ops() == "WaitToBeDeleted", 10, "opsState WaitToBeDeleted")
        gs = objects.gs()
        assert gs["metadata"]["labels"] == {"example.com/busy": "false"}
        assert gs["metadata"]["annotations"] == {"example.com/drain": "game asked"}
        assert gs["spec"]["deletionPriority"] == 10
        sc.wait_for(
            lambda: objects.pod_annotations()["example.com/state"] == "WaitToBeDeleted", 10, "pod"
        )

        # A steady game: probes keep coming, nothing is written.
        versions = objects.resource_versions()
        fault_proxy.reset()
        probed = game.count("/state")
        time.sleep(1.5)
        assert game.count("/state") - probed >= 8
        assert writes(fault_proxy, "") == 0, fault_proxy.requests()
        assert objects.resource_versions() == versions
        assert sc.stop() == 0


def test_failed_after_the_failure_threshold(
    make_game_server: GameServerFactory, objects: Objects, game: GameHTTP, sidecar: Any
) -> None:
    make_game_server(NAME)
    game.set("/state", "Allocated")
    failed = {"state": "Failed", "gameServerLabels": {"example.com/health": "failed"}}
    config = probe_config(game.url("/state"), failed, failureThreshold=3, timeout=0.3)
    with sidecar(config) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: objects.ops() == "Allocated", 10, "opsState Allocated")
        # Failures of every kind count: a 500, a timeout, a garbage body, then 503s.
        game.set_once("/state", answer("", status=500), answer("x", delay=1), b"\xff garbage")
        game.set("/state", answer("Service Unavailable", status=503))
        sc.wait_for(
            lambda: objects.pod_annotations()["example.com/state"] == "Failed", 10, "Failed"
        )
        assert game.count("/state") >= 3 + 1
        # The Failed state's policy replaces the Allocated one's labels (a set, not a history).
        sc.wait_for(
            lambda: objects.gs()["metadata"]["labels"] == {"example.com/health": "failed"},
            10,
            "the Failed policy's labels alone",
        )
        assert objects.ops() == "Allocated"  # the Failed policy sets no opsState


def test_a_human_set_maintaining_is_not_overridden(
    make_game_server: GameServerFactory, objects: Objects, game: GameHTTP,
    fault_proxy: FaultProxy, sidecar: Any,
) -> None:  # fmt: skip
    make_game_server(NAME)
    game.set("/state", "Allocated")
    with sidecar(probe_config(game.url("/state"))) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: objects.ops() == "Allocated", 10, "opsState Allocated")
        objects.set_ops("Maintaining")
        fault_proxy.reset()
        game.set("/state", "WaitToBeDeleted")
        # Only spec.opsState is protected: the WaitToBeDeleted policy's labels, annotations and
        # deletionPriority are written (one patch).
        sc.wait_for(
            lambda: objects.gs()["metadata"].get("labels") == {"example.com/busy": "false"},
            10,
            "the policy's labels",
        )
        assert objects.gs()["spec"]["deletionPriority"] == 10
        game.set("/state", "None")
        # The None policy sets no labels: the WaitToBeDeleted policy's go (a set, not a history).
        sc.wait_for(lambda: not objects.gs()["metadata"].get("labels"), 10, "labels removed")
        sc.wait_for(lambda: objects.pod_annotations()["example.com/state"] == "None", 10, "pod")
        time.sleep(0.5)
        assert objects.ops() == "Maintaining"
        # Two writes land on each object.  A GameServer write prepared before kidecar's watch
        # saw the human's Maintaining carries the old resourceVersion: the API server refuses it
        # (409) and kidecar writes again from the new state, so a busy machine may show a 409.
        gs_writes = write_statuses(fault_proxy, GS_PATH)
        assert [s for s in gs_writes if s < 300] == [200, 200], gs_writes
        assert all(s < 300 or s == 409 for s in gs_writes), gs_writes
        assert writes(fault_proxy, POD_PATH) == 2


def test_a_gameserver_created_after_the_sidecar_started_is_waited_for(
    make_game_server: GameServerFactory, objects: Objects, game: GameHTTP, sidecar: Any
) -> None:
    game.set("/state", "Allocated")
    with sidecar(probe_config(game.url("/state"))) as sc:
        sc.start(wait_ready=True)
        game.wait_for_requests("/state", 5)
        time.sleep(0.5)
        make_game_server(NAME)
        sc.wait_for(lambda: objects.ops() == "Allocated", 20, "opsState Allocated")
        sc.wait_for(
            lambda: objects.pod_annotations().get("example.com/state") == "Allocated", 20, "pod"
        )
        assert "does not exist yet; waiting" in sc.log()
        assert "Traceback" not in sc.log()

"""pod_probe against the real API server: ``kidecar run --kubeconfig`` as the ``kidecar``
ServiceAccount with the Role of deploy/base (through the counting proxy), a pod carrying
Kruise's annotation, and conditions the kubelet wrote that must stay as they are."""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from kidecar_core.testing import Sidecar
from tests.plugins.pod_probe.podstate import exec_probe, probe_entry
from tests.support.apiserver import GameServerFactory, TestCluster
from tests.support.faultproxy import FaultProxy
from tests.support.sidecars import RESYNC_OFF, Sidecars

pytestmark = pytest.mark.kube

NAME = "gs-0"
STATUS_PATH = rf"/api/v1/namespaces/[^/]+/pods/{NAME}/status$"
WRITES = ("PATCH", "PUT", "POST")
KUBELET = [
    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
    {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
     "lastTransitionTime": "2024-01-01T00:00:05Z"},
]  # fmt: skip


class Pod:
    """The test's pod, read and changed with admin credentials."""

    def __init__(self, cluster: TestCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def get(self) -> dict[str, Any]:
        with self.cluster.admin_api_client() as api:
            pod = k8s.CoreV1Api(api).read_namespaced_pod(NAME, self.namespace)
            return cast(dict[str, Any], api.sanitize_for_serialization(pod))

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.get()["status"].get("conditions") or []}

    def condition(self, name: str) -> dict[str, Any] | None:
        return self.conditions().get(f"game.kruise.io/{name}")

    def set_kubelet_conditions(self) -> None:
        with self.cluster.admin_api_client() as api:
            k8s.CoreV1Api(api).patch_namespaced_pod_status(
                NAME, self.namespace, {"status": {"conditions": KUBELET}}
            )

    def annotate(self, entries: list[dict[str, Any]]) -> None:
        body = {"metadata": {"annotations": {"kruise.io/podprobe": json.dumps(entries)}}}
        with self.cluster.admin_api_client() as api:
            k8s.CoreV1Api(api).patch_namespaced_pod(NAME, self.namespace, body)

    def events(self) -> list[dict[str, Any]]:
        with self.cluster.admin_api_client() as api:
            found = k8s.CoreV1Api(api).list_namespaced_event(self.namespace)
            items = api.sanitize_for_serialization(found)["items"]
            return [e for e in items if e["involvedObject"]["name"] == NAME]


@pytest.fixture
def pod(kube_cluster: TestCluster, kube_namespace: str) -> Pod:
    return Pod(kube_cluster, kube_namespace)


@pytest.fixture
def sidecar(kube_sidecars: Sidecars, fault_proxy_kubeconfig: Path) -> Callable[..., Sidecar]:
    """``sidecar(config)``: a kidecar talking to the API server through the fault proxy as the
    ``kidecar`` ServiceAccount (RBAC from deploy/base/rbac.yaml), resync off; stopped afterwards."""
    return functools.partial(kube_sidecars, fault_proxy_kubeconfig, env=RESYNC_OFF)


def status_writes(proxy: FaultProxy) -> int:
    return sum(proxy.count(method, STATUS_PATH) for method in WRITES)


def wait(
    sc: Sidecar, pod: Pod, name: str, status: str, message: str, timeout: float = 20
) -> dict[str, Any]:
    def ok() -> bool:
        c = pod.condition(name)
        return c is not None and c["status"] == status and c.get("message", "") == message

    sc.wait_for(ok, timeout, f"condition {name}={status} {message!r}")
    found = pod.condition(name)
    assert found is not None
    return found


def test_conditions_are_written_through_pods_status_and_only_on_change(
    make_game_server: GameServerFactory, pod: Pod, fault_proxy: FaultProxy, sidecar: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    state = tmp_path / "state"
    state.write_text("idle")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        entries = [
            exec_probe("idle", f"cat {state}"),
            probe_entry("port", {"tcpSocket": {"port": port}}),
        ]
        make_game_server(NAME, pod_annotations={"kruise.io/podprobe": json.dumps(entries)})
        pod.set_kubelet_conditions()
        kubelet = {t: c for t, c in pod.conditions().items()}
        config = {"plugins": [{"name": "pod_probe", "config": {}}]}
        with sidecar(config) as sc:
            sc.start(wait_ready=True)
            idle = wait(sc, pod, "idle", "True", "idle")
            wait(sc, pod, "port", "True", "")
            assert {t: c for t, c in pod.conditions().items() if t in kubelet} == kubelet
            assert idle["lastProbeTime"] and idle["lastTransitionTime"]
            # A steady game: probes go on, nothing is written.
            fault_proxy.reset()
            time.sleep(2.5)
            assert status_writes(fault_proxy) == 0, fault_proxy.requests()
            # A new result: one write of pods/status, nothing else on the pod.
            state.write_text("busy")
            wait(sc, pod, "idle", "True", "busy")
            time.sleep(1.5)
            assert status_writes(fault_proxy) == 1, fault_proxy.requests()
            assert fault_proxy.count("PATCH", rf"/pods/{NAME}$") == 0
            reasons = {(e["reason"], e["message"]) for e in pod.events()}
            assert ("KruiseProbeSucceeded", "idle") in reasons
            assert ("KruiseProbeSucceeded", "busy") in reasons
            assert sc.stop() == 0
    assert "Traceback" not in sc.log()


def test_an_annotation_added_later_is_followed(
    make_game_server: GameServerFactory, pod: Pod, sidecar: Any
) -> None:
    make_game_server(NAME)
    with sidecar({"plugins": [{"name": "pod_probe", "config": {}}]}) as sc:
        sc.start(wait_ready=True)
        pod.annotate([exec_probe("late", "echo here")])
        wait(sc, pod, "late", "True", "here")
        pod.annotate([exec_probe("late", "echo changed; exit 1", failureThreshold=1)])
        wait(sc, pod, "late", "False", "")  # failure: the message is stderr, empty here


def test_bad_probes_are_events_on_the_pod_and_the_good_one_runs(
    make_game_server: GameServerFactory, pod: Pod, sidecar: Any, tmp_path: Path
) -> None:
    """Issue 14's bad input through the real API server: each bad entry is one Warning Event on
    the Pod (and one log line), the good probe runs, nothing is written for the bad ones; an
    annotation that turns into broken JSON is one more Event and keeps the probes it had."""
    runs = tmp_path / "runs"
    make_game_server(NAME, pod_annotations={"kruise.io/podprobe": json.dumps([
        exec_probe("good", f"echo x >> {runs}; echo fine"),
        probe_entry("unknown", {"udpSocket": {"port": 9000}}),
        exec_probe("negative", "echo never", periodSeconds=-1),
    ])})  # fmt: skip

    def invalid() -> list[dict[str, Any]]:
        return [e for e in pod.events() if e["reason"] == "InvalidPodProbe"]

    with sidecar({"plugins": [{"name": "pod_probe", "config": {}}]}) as sc:
        sc.start(wait_ready=True)
        wait(sc, pod, "good", "True", "fine")
        sc.wait_for(lambda: len(invalid()) == 2, 20, "2 InvalidPodProbe Events")
        assert sorted(e["message"] for e in invalid()) == [
            "probe not run: annotation kruise.io/podprobe[1].probe: no handler: expected one of "
            "exec, tcpSocket, httpGet (unknown key(s): udpSocket)",
            "probe not run: annotation kruise.io/podprobe[2].probe.periodSeconds: must be >= 0, "
            "got -1",
        ]
        assert {e["type"] for e in invalid()} == {"Warning"}

        body = {"metadata": {"annotations": {"kruise.io/podprobe": "[{not json"}}}
        with pod.cluster.admin_api_client() as api:
            k8s.CoreV1Api(api).patch_namespaced_pod(NAME, pod.namespace, body)
        sc.wait_for(lambda: len(invalid()) == 3, 20, "an Event for the broken annotation")
        assert any("is not valid JSON" in e["message"] for e in invalid())
        probed = len(runs.read_text().split())
        sc.wait_for(lambda: len(runs.read_text().split()) >= probed + 2, 20, "probes go on")
        assert len(invalid()) == 3 and sc.log().count("probe not run:") == 3
        types = {t.removeprefix("game.kruise.io/") for t in pod.conditions()}
        assert "good" in types and types.isdisjoint({"unknown", "negative"})
        assert sc.stop() == 0
    assert "Traceback" not in sc.log()


MARKER_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "kidecar-podprobemarkers"},
        "rules": [
            {"apiGroups": ["apps.kruise.io"], "resources": ["podprobemarkers"], "verbs": ["list"]}
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "kidecar-podprobemarkers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "kidecar-podprobemarkers"},
        "subjects": [{"kind": "ServiceAccount", "name": "kidecar"}],
    },
]  # fmt: skip


def test_pod_probe_markers_without_the_kruise_gate(
    kube_cluster: TestCluster, kube_namespace: str, make_game_server: GameServerFactory,
    pod: Pod, sidecar: Any,
) -> None:  # fmt: skip
    marker = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PodProbeMarker",
        "metadata": {"name": "game"},
        "spec": {
            "selector": {"matchLabels": {"game.kruise.io/owner-gss": "game"}},
            "probes": [{**exec_probe("from-marker", "echo marked"), "markerPolicy": [
                {"state": "Succeeded", "labels": {"ready": "yes"}}]}],
        },
    }  # fmt: skip
    kube_cluster.apply_yaml([marker], kube_namespace)
    make_game_server(NAME, pod_labels={"game.kruise.io/owner-gss": "game"})
    config = {"plugins": [{"name": "pod_probe", "config": {"podProbeMarkers": True,
              "podProbeMarkersPeriodSeconds": 1}}]}  # fmt: skip
    with sidecar(config) as sc:
        sc.start(wait_ready=True)
        # The Role of deploy/base does not allow listing them: said once, with the rule.
        sc.wait_for(lambda: "cannot list PodProbeMarkers" in sc.log(), 20, "a forbidden list")
        assert "podprobemarkers" in sc.log() and pod.condition("from-marker") is None
        kube_cluster.apply_yaml(MARKER_RBAC, kube_namespace)
        wait(sc, pod, "from-marker", "True", "marked")


def test_failed_writes_are_retried_and_reported_once(
    kube_cluster: TestCluster, kube_namespace: str, make_game_server: GameServerFactory,
    pod: Pod, fault_proxy: FaultProxy, sidecar: Any, tmp_path: Path,
) -> None:  # fmt: skip
    """5xx: retried with backoff until written; 403: one log line naming the rule, written once
    the Role allows it (no restart)."""
    state = tmp_path / "state"
    state.write_text("one")
    make_game_server(
        NAME, pod_annotations={"kruise.io/podprobe": json.dumps([exec_probe("s", f"cat {state}")])}
    )
    unavailable = fault_proxy.inject("PATCH", STATUS_PATH, 503, times=3)
    with sidecar({"plugins": [{"name": "pod_probe", "config": {}}]}) as sc:
        sc.start(wait_ready=True)
        wait(sc, pod, "s", "True", "one")
        assert unavailable.hits == 3
        assert sc.log().count("cannot write pod conditions yet") == 1
        assert "pod conditions written again" in sc.log()
        # Take pods/status away from the Role, change the result, give it back.
        with kube_cluster.admin_api_client() as api:
            rbac = k8s.RbacAuthorizationV1Api(api)
            role = api.sanitize_for_serialization(
                rbac.read_namespaced_role("kidecar", kube_namespace)
            )
            rules = role["rules"]
            kept = [r for r in rules if "pods/status" not in r["resources"]]
            rbac.patch_namespaced_role("kidecar", kube_namespace, {"rules": kept})
            state.write_text("two")
            sc.wait_for(lambda: "can't patch pods/status" in sc.log(), 20, "a forbidden write")
            time.sleep(1.5)  # more probes with the same result: still one line
            assert sc.log().count("can't patch pods/status") == 1
            assert 'add {apiGroups: [""], resources: [pods/status], verbs: [patch]}' in sc.log()
            rbac.patch_namespaced_role("kidecar", kube_namespace, {"rules": rules})
        wait(sc, pod, "s", "True", "two", timeout=60)  # the next attempt, 30 s later
    assert "Traceback" not in sc.log()


def test_a_refused_patch_holds_back_only_the_bad_condition(
    make_game_server: GameServerFactory, pod: Pod, fault_proxy: FaultProxy, sidecar: Any
) -> None:
    """A 422 for a patch of several conditions: they are sent again one by one, so the good ones
    are written (before, every condition of that patch was held back until it changed)."""
    entries = [exec_probe("a", "echo a"), exec_probe("b", "echo b")]
    make_game_server(NAME, pod_annotations={"kruise.io/podprobe": json.dumps(entries)})
    # The API server away first, so that both results are waiting; then one refusal.
    unavailable = fault_proxy.inject("PATCH", STATUS_PATH, 503, times=5)
    invalid = fault_proxy.inject("PATCH", STATUS_PATH, 422, times=1)
    with sidecar({"plugins": [{"name": "pod_probe", "config": {}}]}) as sc:
        sc.start(wait_ready=True)
        wait(sc, pod, "a", "True", "a", timeout=60)
        wait(sc, pod, "b", "True", "b", timeout=60)
        assert (unavailable.hits, invalid.hits) == (5, 1)
        assert "writing them one at a time" in sc.log()
    assert "Traceback" not in sc.log()


def test_a_condition_the_api_server_refuses_is_not_sent_again_until_it_changes(
    make_game_server: GameServerFactory, pod: Pod, fault_proxy: FaultProxy, sidecar: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A 422 for one condition: one log line, and no new attempt per probe run with the same
    result (before, every run tried again and logged an error); a new result is sent."""
    state = tmp_path / "state"
    state.write_text("one")
    make_game_server(
        NAME, pod_annotations={"kruise.io/podprobe": json.dumps([exec_probe("s", f"cat {state}")])}
    )
    invalid = fault_proxy.inject("PATCH", STATUS_PATH, 422, times=None)
    with sidecar({"plugins": [{"name": "pod_probe", "config": {}}]}) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: invalid.hits >= 1, 20, "a refused write")
        time.sleep(3.5)  # more than three probe periods with the same result
        assert invalid.hits == 1
        assert sc.log().count("pod conditions refused") == 1
        fault_proxy.clear_faults()
        state.write_text("two")  # a new result is sent
        wait(sc, pod, "s", "True", "two")
    assert "Traceback" not in sc.log()

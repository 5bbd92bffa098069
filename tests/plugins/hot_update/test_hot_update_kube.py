"""hot_update against the real kube-apiserver, as the `kidecar` ServiceAccount (deploy/ RBAC).

The record (pod annotation, result ConfigMap keyed per pod and per workload, Event), concurrent
pods of one workload, restart replay, new-replica inheritance and a pod recreated under the same
name. Real sidecars, real game processes, a real file server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.plugins.hot_update.conftest import Running, StartSidecar
from tests.plugins.hot_update.fileserver import FileServer, wait_until
from tests.plugins.hot_update.harness import ANNOTATION
from tests.support.apiserver import GameServerFactory, TestCluster
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.kube

GSS_LABEL = "game.kruise.io/owner-gss"
RESULT = "sidecar-result"


@pytest.fixture
def core(kube_cluster: TestCluster) -> Iterator[k8s.CoreV1Api]:
    with kube_cluster.admin_api_client() as api:
        yield k8s.CoreV1Api(api)


def configmap(core: k8s.CoreV1Api, ns: str) -> dict[str, Any]:
    try:
        data = core.read_namespaced_config_map(RESULT, ns).data or {}
    except ApiException as e:
        if e.status == 404:
            return {}
        raise
    return {k: json.loads(v) for k, v in data.items()}


def annotation(core: k8s.CoreV1Api, ns: str, pod: str) -> str | None:
    annotations = core.read_namespaced_pod(pod, ns).metadata.annotations or {}
    value = annotations.get(ANNOTATION)
    return None if value is None else str(value)


def replica(
    start_sidecar: StartSidecar,
    kubeconfig: Path,
    ns: str,
    pod: str,
    tmp_path: Path,
    **config: Any,
) -> Running:
    """A sidecar (with its own game and download directory) for pod ``pod``."""
    return start_sidecar(
        kubeconfig=kubeconfig,
        namespace=ns,
        pod_name=pod,
        file_dir=tmp_path / pod,
        workdir=tmp_path / f"sidecar-{pod}",
        **config,
    )


def replayed(r: Running) -> bool:
    labels = {"result": "success", "trigger": "replay"}
    return r.sidecar.metric("kidecar_hot_update_updates_total", labels) == 1


def test_update_is_recorded_in_annotation_configmap_and_event(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    pair = make_game_server("gss-a-0", pod_labels={GSS_LABEL: "gss-a"}, service_account="kidecar")
    r = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-a-0", tmp_path)
    url = files.add("k1/index.html", "kube v1\n")
    status, body = r.api.post({"version": "v1", "url": url})
    assert status == 200, body

    wait_until(lambda: annotation(core, kube_namespace, "gss-a-0") == "v1: Update success", 10)
    wait_until(lambda: len(configmap(core, kube_namespace)) == 2, 10, "the ConfigMap record")
    data = configmap(core, kube_namespace)
    own = data["pod.gss-a-0"]
    assert own["version"] == "v1"
    assert own["url"] == url
    assert own["sha256"] == body["sha256"]
    assert own["podUID"] == pair.pod["metadata"]["uid"]
    assert own["workload"] == "GameServerSet/gss-a"
    assert data["workload.gameserverset.gss-a"]["version"] == "v1"

    def events() -> list[k8s.CoreV1Event]:
        return [
            e
            for e in core.list_namespaced_event(kube_namespace).items
            if e.reason == "HotUpdateSucceeded" and e.involved_object.name == "gss-a-0"
        ]

    wait_until(lambda: events(), 10, "the Event")
    assert "v1" in events()[0].message

    # A failed update is recorded in the annotation, but the last *applied* version stays.
    status, body = r.api.post({"version": "v2", "url": files.url("/f/nothing-here")})
    assert status == 502, body
    want = "v2: Update failed: download failed: HTTP 404"
    wait_until(lambda: annotation(core, kube_namespace, "gss-a-0") == want, 10, want)
    assert configmap(core, kube_namespace)["pod.gss-a-0"]["version"] == "v1"


def test_presigned_url_credentials_reach_neither_configmap_nor_events(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    """Issue 12 #2 against the real API server: a presigned URL applies, a failing one is
    recorded; the signature is in no ConfigMap, Event or annotation."""
    secret = "RealApiServerSignature0123456789"
    make_game_server("gss-s-0", pod_labels={GSS_LABEL: "gss-s"}, service_account="kidecar")
    r = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-s-0", tmp_path)
    url = files.add("ks/index.html", "signed\n")
    status, body = r.api.post({"version": "v1", "url": f"{url}?X-Amz-Signature={secret}"})
    assert status == 200, body
    status, body = r.api.post({"version": "v2", "url": files.url(f"/f/none?sig={secret}")})
    assert status == 502, body
    wait_until(lambda: len(configmap(core, kube_namespace)) == 2, 10, "the ConfigMap record")
    record = configmap(core, kube_namespace)["pod.gss-s-0"]
    assert record["url"] == url and record["urlRedacted"] is True

    def messages() -> list[str]:
        return [
            str(e.message)
            for e in core.list_namespaced_event(kube_namespace).items
            if e.involved_object.name == "gss-s-0"
        ]

    wait_until(lambda: len(messages()) >= 2, 10, "both Events")
    raw = core.read_namespaced_config_map(RESULT, kube_namespace).data
    pod = core.read_namespaced_pod("gss-s-0", kube_namespace)
    for text in (json.dumps(raw), *messages(), json.dumps(pod.metadata.annotations)):
        assert secret not in text
    assert secret not in r.sidecar.log()


def test_concurrent_pods_of_one_workload_keep_both_records(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    names = ["gss-b-0", "gss-b-1"]
    for name in names:
        make_game_server(name, pod_labels={GSS_LABEL: "gss-b"}, service_account="kidecar")
    sidecars = [replica(start_sidecar, sa_kubeconfig, kube_namespace, n, tmp_path) for n in names]
    url = files.add("k2/index.html", "both\n")
    barrier = threading.Barrier(len(sidecars))
    statuses: list[int] = []

    def post(r: Running) -> None:
        barrier.wait()
        statuses.append(r.api.post({"version": "v3", "url": url})[0])

    threads = [threading.Thread(target=post, args=(r,)) for r in sidecars]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200, 200]
    keys = {"pod.gss-b-0", "pod.gss-b-1", "workload.gameserverset.gss-b"}
    wait_until(lambda: set(configmap(core, kube_namespace)) == keys, 15, "both records")
    assert {v["version"] for v in configmap(core, kube_namespace).values()} == {"v3"}


def test_new_replica_inherits_the_workload_version(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    make_game_server("gss-c-0", pod_labels={GSS_LABEL: "gss-c"}, service_account="kidecar")
    first = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-c-0", tmp_path)
    assert first.api.post({"version": "v1", "url": files.add("c1/index.html", "c1\n")})[0] == 200
    assert first.api.post({"version": "v2", "url": files.add("c2/index.html", "c2\n")})[0] == 200
    wait_until(
        lambda: (
            configmap(core, kube_namespace).get("workload.gameserverset.gss-c", {}).get("version")
            == "v2"
        ),
        10,
        "the workload record",
    )

    make_game_server("gss-c-1", pod_labels={GSS_LABEL: "gss-c"}, service_account="kidecar")
    second = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-c-1", tmp_path)

    second.sidecar.wait_for(lambda: replayed(second), 15, "the new replica's replay")
    assert (second.file_dir / "index.html").read_text() == "c2\n"
    assert second.game is not None
    second.game.wait_loaded("c2\n")
    wait_until(lambda: annotation(core, kube_namespace, "gss-c-1") == "v2: Update success", 10)
    wait_until(lambda: "pod.gss-c-1" in configmap(core, kube_namespace), 10, "its own record")
    assert "the current version of GameServerSet/gss-c" in second.sidecar.log()


def test_restart_reapplies_the_pods_own_version_not_a_canary(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    for name in ("gss-d-0", "gss-d-1"):
        make_game_server(name, pod_labels={GSS_LABEL: "gss-d"}, service_account="kidecar")
    a = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-d-0", tmp_path)
    b = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-d-1", tmp_path)
    assert a.api.post({"version": "v1", "url": files.add("d1/index.html", "stable\n")})[0] == 200
    wait_until(lambda: "pod.gss-d-0" in configmap(core, kube_namespace), 10, "a's record")
    assert b.api.post({"version": "v2", "url": files.add("d2/index.html", "canary\n")})[0] == 200
    wait_until(
        lambda: configmap(core, kube_namespace)["workload.gameserverset.gss-d"]["version"] == "v2",
        10,
        "the canary to be the workload's version",
    )
    a.sidecar.stop()
    (a.file_dir / "index.html").unlink()

    assert a.game is not None
    a2 = start_sidecar(
        game=a.game,
        kubeconfig=sa_kubeconfig,
        namespace=kube_namespace,
        pod_name="gss-d-0",
        file_dir=a.file_dir,
        workdir=a.sidecar.workdir,
    )
    a2.sidecar.wait_for(lambda: replayed(a2), 15, "the replay")
    assert (a.file_dir / "index.html").read_text() == "stable\n"
    assert "the last version applied to this pod" in a2.sidecar.log()


def test_pod_recreated_under_the_same_name_takes_the_workload_version(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    for name in ("gss-e-0", "gss-e-1"):
        make_game_server(name, pod_labels={GSS_LABEL: "gss-e"}, service_account="kidecar")
    a = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-e-0", tmp_path)
    assert a.api.post({"version": "v1", "url": files.add("e1/index.html", "old pod\n")})[0] == 200
    wait_until(lambda: "pod.gss-e-0" in configmap(core, kube_namespace), 10, "a's record")
    a.sidecar.stop()
    b = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-e-1", tmp_path)
    b.sidecar.wait_for(lambda: replayed(b), 15, "gss-e-1 to inherit v1")  # (else: 409 busy)
    assert b.api.post({"version": "v2", "url": files.add("e2/index.html", "current\n")})[0] == 200
    wait_until(
        lambda: configmap(core, kube_namespace)["workload.gameserverset.gss-e"]["version"] == "v2",
        10,
        "the workload record",
    )
    # The workload controller replaces gss-e-0: same name, new UID, empty download volume.
    old = core.read_namespaced_pod("gss-e-0", kube_namespace)
    core.delete_namespaced_pod("gss-e-0", kube_namespace, grace_period_seconds=0)
    wait_until(lambda: _gone(core, kube_namespace, "gss-e-0"), 10, "the old pod to go")
    core.create_namespaced_pod(
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "gss-e-0", "labels": {GSS_LABEL: "gss-e"}},
            "spec": {
                "serviceAccountName": "kidecar",
                "containers": [{"name": "game", "image": "registry.invalid/kidecar-test/game:1"}],
            },
        },
    )
    for leftover in (tmp_path / "gss-e-0").iterdir():
        leftover.unlink()

    assert a.game is not None
    a2 = start_sidecar(
        game=a.game,
        kubeconfig=sa_kubeconfig,
        namespace=kube_namespace,
        pod_name="gss-e-0",
        file_dir=a.file_dir,
        workdir=tmp_path / "sidecar-gss-e-0-new",
    )
    a2.sidecar.wait_for(lambda: replayed(a2), 15, "the replay")
    assert (a.file_dir / "index.html").read_text() == "current\n"
    wait_until(
        lambda: configmap(core, kube_namespace)["pod.gss-e-0"]["version"] == "v2", 10, "record"
    )
    new_uid = core.read_namespaced_pod("gss-e-0", kube_namespace).metadata.uid
    assert configmap(core, kube_namespace)["pod.gss-e-0"]["podUID"] == new_uid != old.metadata.uid


def _gone(core: k8s.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, ns)
    except ApiException as e:
        return e.status == 404
    return False


def test_replay_waits_for_the_api_server(
    start_sidecar: StartSidecar,
    files: FileServer,
    sa_kubeconfig: Path,
    fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    tmp_path: Path,
) -> None:
    make_game_server("gss-f-0", pod_labels={GSS_LABEL: "gss-f"}, service_account="kidecar")
    r = replica(start_sidecar, sa_kubeconfig, kube_namespace, "gss-f-0", tmp_path)
    assert r.api.post({"version": "v1", "url": files.add("f1/index.html", "patient\n")})[0] == 200
    wait_until(lambda: "pod.gss-f-0" in configmap(core, kube_namespace), 10, "the record")
    r.sidecar.stop()
    (r.file_dir / "index.html").unlink()

    fault_proxy.inject("GET", r"/pods/gss-f-0$", 503, times=None)
    assert r.game is not None
    r2 = start_sidecar(
        game=r.game,
        kubeconfig=fault_proxy_kubeconfig,
        namespace=kube_namespace,
        pod_name="gss-f-0",
        file_dir=r.file_dir,
        workdir=r.sidecar.workdir,
    )
    r2.sidecar.wait_for(lambda: "retrying" in r2.sidecar.log(), 10, "the retry to be logged")
    time.sleep(1)
    assert not (r.file_dir / "index.html").exists()
    assert r2.sidecar.get("/healthz")[0] == 200
    fault_proxy.clear_faults()
    r2.sidecar.wait_for(lambda: replayed(r2), 40, "the replay once the API server answers")
    assert (r.file_dir / "index.html").read_text() == "patient\n"

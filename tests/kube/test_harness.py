"""Proof that the integration harness is what the other tests rely on.

A real API server enforces deploy/base/rbac.yaml for the `kidecar` ServiceAccount (allowed and
forbidden requests alike), the test GameServer CRD behaves like OKG's (merge patch on spec,
status only through its subresource, int-or-string priorities, pruning), data survives an API
server restart, and the fault proxy counts requests and injects errors.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.support.apiserver import (
    GAME_GROUP,
    GAME_VERSION,
    KIDECAR_RBAC,
    GameServerFactory,
    TestCluster,
    api_client_from_kubeconfig,
)
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.kube

MERGE_PATCH = "application/merge-patch+json"
# Rules every authenticated identity has through the cluster's default ClusterRoles
# (system:basic-user and friends); SelfSubjectRulesReview reports them too.
DEFAULT_RESOURCES = {
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "selfsubjectreviews",
}


@contextmanager
def apis(kubeconfig: Path) -> Iterator[tuple[k8s.CoreV1Api, k8s.CustomObjectsApi]]:
    """Core and custom-object APIs for one kubeconfig, closed afterwards."""
    with api_client_from_kubeconfig(kubeconfig) as api:
        yield k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)


def read_gameserver(custom: k8s.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """GET a GameServer as a dict."""
    return cast(
        dict[str, Any],
        custom.get_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, namespace, "gameservers", name
        ),
    )


def patch_gameserver(
    custom: k8s.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch a GameServer's spec (CustomObjectsApi's default patch type)."""
    return cast(
        dict[str, Any],
        custom.patch_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, namespace, "gameservers", name, {"spec": spec}
        ),
    )


def forbidden(call: Any, *args: Any, **kwargs: Any) -> bool:
    """True if the call is answered 403."""
    with pytest.raises(ApiException) as excinfo:
        call(*args, **kwargs)
    return bool(excinfo.value.status == 403)


def test_service_account_gets_and_patches_pod(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: GameServerFactory
) -> None:
    make_game_server("gs-0", service_account="kidecar")
    with apis(sa_kubeconfig) as (core, _):
        pod = core.read_namespaced_pod("gs-0", kube_namespace)
        assert pod.status is not None and pod.status.phase == "Pending"
        patched = core.patch_namespaced_pod(
            "gs-0",
            kube_namespace,
            {"metadata": {"annotations": {"example.com/result": "ok"}, "labels": {"x": "1"}}},
            _content_type=MERGE_PATCH,
        )
    assert patched.metadata is not None
    assert patched.metadata.annotations == {"example.com/result": "ok"}
    assert patched.metadata.labels == {"x": "1"}


def test_service_account_merge_patches_gameserver_spec(
    sa_kubeconfig: Path,
    admin_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
) -> None:
    make_game_server("gs-0", gameserver_spec={"opsState": "None", "updatePriority": 1})
    with apis(sa_kubeconfig) as (_, custom):
        before = read_gameserver(custom, kube_namespace, "gs-0")
        patch_gameserver(custom, kube_namespace, "gs-0", {"opsState": "WaitToBeDeleted"})
        # int-or-string priorities accept both forms, as in OKG's CRD; unknown fields are pruned.
        patch_gameserver(
            custom,
            kube_namespace,
            "gs-0",
            {"deletionPriority": "10", "networkDisabled": True, "bogus": 1},
        )
    with apis(admin_kubeconfig) as (_, custom):
        after = read_gameserver(custom, kube_namespace, "gs-0")
    assert before["spec"] == {"opsState": "None", "updatePriority": 1}
    assert after["spec"] == {
        "opsState": "WaitToBeDeleted",
        "updatePriority": 1,
        "deletionPriority": "10",
        "networkDisabled": True,
    }
    assert after["metadata"]["ownerReferences"][0]["kind"] == "Pod"


def test_service_account_is_denied_everything_else(
    kube_cluster: TestCluster,
    sa_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
) -> None:
    make_game_server("gs-0")
    other = kube_cluster.create_namespace(f"{kube_namespace}-other")
    try:
        kube_cluster.create_game_server(other, "gs-0")
        with apis(sa_kubeconfig) as (core, custom):
            status_patch = {"status": {"currentState": "Ready"}}
            assert forbidden(core.list_pod_for_all_namespaces)
            assert forbidden(core.list_namespaced_pod, kube_namespace)
            assert forbidden(core.delete_namespaced_pod, "gs-0", kube_namespace)
            assert forbidden(
                core.patch_namespaced_pod,
                "gs-0",
                other,
                {"metadata": {"labels": {"x": "1"}}},
                _content_type=MERGE_PATCH,
            )
            assert forbidden(patch_gameserver, custom, other, "gs-0", {"opsState": "Kill"})
            assert forbidden(
                custom.patch_namespaced_custom_object_status,
                GAME_GROUP,
                GAME_VERSION,
                kube_namespace,
                "gameservers",
                "gs-0",
                status_patch,
            )
            assert forbidden(core.read_namespaced_config_map, "kidecar-config", kube_namespace)
            assert forbidden(core.list_namespaced_secret, kube_namespace)
    finally:
        kube_cluster.delete_namespace(other)


def test_service_account_writes_result_configmap_and_events(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: GameServerFactory
) -> None:
    pair = make_game_server("gs-0")
    with apis(sa_kubeconfig) as (core, _):
        with pytest.raises(ApiException) as missing:
            core.read_namespaced_config_map("sidecar-result", kube_namespace)
        assert missing.value.status == 404  # allowed to look, it just does not exist yet
        core.create_namespaced_config_map(
            kube_namespace,
            k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="sidecar-result"), data={"a": "1"}),
        )
        patched = core.patch_namespaced_config_map(
            "sidecar-result", kube_namespace, {"data": {"b": "2"}}, _content_type=MERGE_PATCH
        )
        assert patched.data == {"a": "1", "b": "2"}
        core.create_namespaced_event(
            kube_namespace,
            k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name="gs-0."),
                involved_object=k8s.V1ObjectReference(
                    kind="Pod",
                    name="gs-0",
                    namespace=kube_namespace,
                    uid=pair.pod["metadata"]["uid"],
                ),
                reason="HotUpdateFailed",
                message="test",
                type="Warning",
            ),
        )


def test_service_account_rules_are_the_role_from_deploy(
    kube_cluster: TestCluster, sa_kubeconfig: Path, kube_namespace: str
) -> None:
    def normalized(rules: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {
            (group, resource, verb, name)
            for rule in rules
            for group in rule.get("apiGroups") or [""]
            for resource in rule["resources"]
            for verb in rule["verbs"]
            for name in rule.get("resourceNames") or ["*"]
        }

    documents = list(yaml.safe_load_all(KIDECAR_RBAC.read_text()))
    (role_doc,) = [d for d in documents if d["kind"] == "Role"]
    with kube_cluster.admin_api_client() as api:
        role = k8s.RbacAuthorizationV1Api(api).read_namespaced_role("kidecar", kube_namespace)
        stored = api.sanitize_for_serialization(role)
    assert normalized(stored["rules"]) == normalized(role_doc["rules"])
    assert {d["kind"] for d in documents} == {"ServiceAccount", "Role", "RoleBinding"}

    with api_client_from_kubeconfig(sa_kubeconfig) as api:
        review = k8s.AuthorizationV1Api(api).create_self_subject_rules_review(
            k8s.V1SelfSubjectRulesReview(
                spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=kube_namespace)
            )
        )
        effective = api.sanitize_for_serialization(review)["status"]["resourceRules"]
    granted = {r for r in normalized(effective) if r[1] not in DEFAULT_RESOURCES}
    assert granted == normalized(role_doc["rules"])


def test_apiserver_restart_keeps_data_and_tokens(
    kube_cluster: TestCluster,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path,
) -> None:
    make_game_server("gs-0")
    with apis(fault_proxy_kubeconfig) as (_, custom):
        written = patch_gameserver(custom, kube_namespace, "gs-0", {"opsState": "Allocated"})
        kube_cluster.stop_apiserver()
        try:
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", kube_cluster.port)) != 0
            with pytest.raises(ApiException) as down:
                read_gameserver(custom, kube_namespace, "gs-0")
            assert down.value.status == 502  # the proxy's answer while the server is down
        finally:
            kube_cluster.start_apiserver()
        # Same port (the proxy still forwards to the old URL), same etcd, same signing key:
        # the token issued before the restart is still accepted and the data is unchanged.
        read = read_gameserver(custom, kube_namespace, "gs-0")
    assert read["spec"]["opsState"] == "Allocated"
    assert read["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_etcd_supports_watch_progress_requests(kube_cluster: TestCluster) -> None:
    """kube-apiserver needs etcd >= 3.5.13 (or 3.4.31) to keep its watch cache fresh on
    demand. With an older etcd it logs this line, and a watch (or list-then-watch) on a
    resource that was not the last one written stalls 3 s and then fails with 504 "Too large
    resource version" -- which no real cluster does."""
    log = (kube_cluster.workdir / "kube-apiserver.log").read_text()
    if "RequestWatchProgress feature is not supported" in log:
        pytest.fail(
            f"etcd {kube_cluster.binaries.etcd} is too old for kube-apiserver's watch cache: "
            "make hack/test-apiserver.sh provide etcd >= 3.5.13 (e.g. build "
            "go.etcd.io/etcd/server/v3@v3.6.6 like kube-apiserver) or set KIDECAR_ETCD",
            pytrace=False,
        )


def test_fault_proxy_counts_requests(
    fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
) -> None:
    make_game_server("gs-0")
    pod_path = f"/api/v1/namespaces/{kube_namespace}/pods/gs-0"
    with apis(fault_proxy_kubeconfig) as (core, _):
        core.read_namespaced_pod("gs-0", kube_namespace)
        for value in ("1", "2"):
            core.patch_namespaced_pod(
                "gs-0",
                kube_namespace,
                {"metadata": {"labels": {"x": value}}},
                _content_type=MERGE_PATCH,
            )
    assert fault_proxy.counts()[("PATCH", pod_path)] == 2
    assert fault_proxy.count("GET", "/pods/gs-0$") == 1
    assert fault_proxy.count("PATCH", "/gameservers/") == 0
    assert [r.status for r in fault_proxy.requests() if r.method == "PATCH"] == [200, 200]
    fault_proxy.reset()
    assert fault_proxy.count() == 0


@pytest.mark.parametrize(
    ("status", "reason"), [(409, "Conflict"), (429, "TooManyRequests"), (500, "InternalError")]
)
def test_fault_proxy_injects_errors(
    fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    status: int,
    reason: str,
) -> None:
    make_game_server("gs-0")
    fault = fault_proxy.inject("PATCH", r"/gameservers/gs-0$", status, times=1)
    with apis(fault_proxy_kubeconfig) as (_, custom):
        with pytest.raises(ApiException) as injected:
            patch_gameserver(custom, kube_namespace, "gs-0", {"opsState": "Maintaining"})
        unchanged = read_gameserver(custom, kube_namespace, "gs-0")
        retried = patch_gameserver(custom, kube_namespace, "gs-0", {"opsState": "Maintaining"})
    error = json.loads(injected.value.body or "{}")
    assert (injected.value.status, error["kind"], error["reason"], error["code"]) == (
        status,
        "Status",
        reason,
        status,
    )
    if status == 429:
        assert injected.value.headers is not None
        assert injected.value.headers["Retry-After"] == "1"
    assert unchanged["spec"]["opsState"] == "None"  # the injected request never reached the server
    assert retried["spec"]["opsState"] == "Maintaining"
    assert (fault.hits, fault.remaining) == (1, 0)
    assert [(r.status, r.injected) for r in fault_proxy.requests() if r.method == "PATCH"] == [
        (status, True),
        (200, False),
    ]


def test_fault_proxy_streams_watches_with_client_cert(
    kube_cluster: TestCluster,
    kube_namespace: str,
    make_game_server: GameServerFactory,
    tmp_path: Path,
) -> None:
    with FaultProxy(
        kube_cluster.server,
        kube_cluster.ca_file,
        client_cert=(kube_cluster.pki.admin_cert, kube_cluster.pki.admin_key),
    ) as proxy:
        kubeconfig = proxy.write_kubeconfig(tmp_path / "kubeconfig")
        make_game_server("gs-0")
        with apis(kubeconfig) as (core, _):
            events = list(
                watch.Watch().stream(core.list_namespaced_pod, kube_namespace, timeout_seconds=1)
            )
        assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "gs-0")]
        assert proxy.count("GET", f"/namespaces/{kube_namespace}/pods$") == 1

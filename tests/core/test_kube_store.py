"""KubeStore against the real kube-apiserver (tests/support/apiserver.py), with real RBAC.

Most tests authenticate as the `kidecar` ServiceAccount bound to the Role of
deploy/base/rbac.yaml, so they also prove that Role is enough (and no more than needed). Faults
the real server does not produce on demand (429, 500, a 409 on a specific call) come from the
fault-injecting proxy in front of it. A few fast unit tests of the error mapping come last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.config import incluster_config

from kidecar_core._runtime import bootstrap
from kidecar_core._store import kube
from kidecar_core._store.kube import KubeStore, ResourceNotServedError, TransientApiError
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity, merge_patch
from kidecar_core._store.validation import pointer_value_problem
from kidecar_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PermanentPersistError,
    StartupError,
    TransientPersistError,
)
from tests.support.apiserver import TestCluster, write_kubeconfig
from tests.support.faultproxy import FaultProxy

T = TypeVar("T")

RESULT_CONFIGMAP = "sidecar-result"
"""The only ConfigMap name the Role lets kidecar read and patch."""


def with_store(
    kubeconfig: Path, scenario: Callable[[KubeStore], Awaitable[T]], **options: Any
) -> T:
    """Run ``scenario(store)`` on a fresh event loop with a store for ``kubeconfig``; close it."""

    async def main() -> T:
        store = KubeStore.from_kubeconfig(str(kubeconfig), **options)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def token_of(kubeconfig: Path) -> str:
    """The bearer token in a kubeconfig (to check that no error message leaks it)."""
    config = yaml.safe_load(kubeconfig.read_text())
    token: str = config["users"][0]["user"]["token"]
    return token


def refs(namespace: str, name: str) -> tuple[ObjectRef, ObjectRef]:
    who = PodIdentity(name=name, namespace=namespace)
    return ObjectRef.pod(who), ObjectRef.gameserver(who)


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose TCP handshake succeeds (kernel backlog) but that never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_get_pod_gameserver_and_missing_objects(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    make_game_server("gs-0", gameserver_spec={"opsState": "None", "deletionPriority": 3})
    pod, gameserver = refs(kube_namespace, "gs-0")
    missing_pod, missing_gs = refs(kube_namespace, "gs-missing")

    async def scenario(store: KubeStore) -> None:
        got_pod, got_gs, none_pod, none_gs = await asyncio.gather(
            store.get(pod), store.get(gameserver), store.get(missing_pod), store.get(missing_gs)
        )
        assert got_pod is not None and got_gs is not None
        # Plain JSON dicts with the API's own (camelCase) keys, not client models.
        assert type(got_pod) is dict
        assert got_pod["kind"] == "Pod" and got_pod["apiVersion"] == "v1"
        assert got_pod["metadata"]["name"] == "gs-0"
        assert got_pod["metadata"]["resourceVersion"]
        assert got_gs["kind"] == "GameServer"
        assert got_gs["spec"] == {"opsState": "None", "deletionPriority": 3}
        assert none_pod is None and none_gs is None
        assert store.description.startswith("kube-apiserver https://127.0.0.1:")

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_get_of_a_type_the_server_does_not_serve_is_an_error_not_none(
    admin_kubeconfig: Path, kube_namespace: str
) -> None:
    """A missing CRD must not look like "the GameServer is not created yet" (endless wait)."""
    ref = ObjectRef("nothing.example.com", "v1", "widgets", kube_namespace, "w")

    typo = ObjectRef("game.kruise.io", "v1alpha1", "gameserverz", kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(ResourceNotServedError, match=r"does not serve widgets\.nothing"):
            await store.get(ref)
        with pytest.raises(ResourceNotServedError, match=r"gameserverz\.game\.kruise\.io"):
            await store.get(typo)

    with_store(admin_kubeconfig, scenario)


# ------------------------------------------------------------------------------------------
# Merge patches
# ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_merge_patch_of_pod_labels_and_annotations_leaves_other_keys(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    created = make_game_server(
        "gs-0",
        pod_labels={"app": "game", "drop": "me"},
        pod_annotations={"keep": "this"},
    )
    pod, _ = refs(kube_namespace, "gs-0")
    patch = {
        "metadata": {
            "labels": {"example.com/state": "Ready", "drop": None},
            "annotations": {"example.com/result": "v2: Update success"},
        }
    }

    async def scenario(store: KubeStore) -> None:
        before = await store.get(pod)
        after = await store.patch(pod, patch)
        assert after["metadata"]["labels"] == {"app": "game", "example.com/state": "Ready"}
        assert after["metadata"]["annotations"] == {
            "keep": "this",
            "example.com/result": "v2: Update success",
        }
        assert after["spec"] == created.pod["spec"] | after["spec"]  # spec untouched
        assert before is not None and after["spec"] == before["spec"]
        assert await store.get(pod) == after
        # The answer is what RFC 7386 says, key for key.
        expected = merge_patch(before["metadata"]["labels"], patch["metadata"]["labels"])
        assert after["metadata"]["labels"] == expected

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_patch_accepts_any_mapping(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    """Read-only mappings (e.g. from frozen config objects) are sent as JSON objects too."""
    make_game_server("gs-0")
    _, gameserver = refs(kube_namespace, "gs-0")
    patch = MappingProxyType({"spec": MappingProxyType({"opsState": "Maintaining"})})

    async def scenario(store: KubeStore) -> None:
        after = await store.patch(gameserver, patch)
        assert after["spec"]["opsState"] == "Maintaining"

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_pod_patch_is_a_merge_patch_not_strategic_merge(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    """finalizers has patchStrategy=merge: a strategic merge would append, RFC 7386 replaces."""
    make_game_server("gs-0")
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        await store.patch(pod, {"metadata": {"finalizers": ["example.com/a"]}})
        after = await store.patch(pod, {"metadata": {"finalizers": ["example.com/b"]}})
        assert after["metadata"]["finalizers"] == ["example.com/b"]
        await store.patch(pod, {"metadata": {"finalizers": None}})

    with_store(sa_kubeconfig, scenario)


KUBELET_CONDITIONS = [
    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
    {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
     "lastTransitionTime": "2024-01-01T00:00:05Z"},
]  # fmt: skip


def set_pod_conditions(cluster: TestCluster, namespace: str, name: str) -> None:
    """Write conditions as the kubelet would (admin, status subresource)."""
    with cluster.admin_api_client() as api:
        k8s.CoreV1Api(api).patch_namespaced_pod_status(
            name, namespace, {"status": {"conditions": KUBELET_CONDITIONS}}
        )


def by_type(pod: dict[str, Any]) -> dict[str, Any]:
    return {c["type"]: c for c in pod["status"]["conditions"]}


def condition(type_: str, status: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "message": message,
        "lastProbeTime": "2024-02-01T00:00:00Z",
        "lastTransitionTime": "2024-02-01T00:00:00Z",
    }


@pytest.mark.kube
def test_patch_status_merges_pod_conditions_by_type(
    kube_cluster: TestCluster, sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    """pods/status with a strategic merge: one condition set, the kubelet's left alone; the
    Role of deploy/base allows it, and the pod's metadata and spec are not touched."""
    make_game_server("gs-0", pod_labels={"a": "1"})
    set_pod_conditions(kube_cluster, kube_namespace, "gs-0")
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        before = await store.get(pod)
        assert before is not None and set(by_type(before)) == {"PodScheduled", "Ready"}
        mine = condition("game.kruise.io/idle", "True", "idle")
        after = await store.patch_status(pod, {"status": {"conditions": [mine]}})
        assert by_type(after) == {**by_type(before), mine["type"]: mine}
        changed = {**mine, "status": "False", "message": "busy"}
        after = await store.patch_status(pod, {"status": {"conditions": [changed]}})
        assert by_type(after) == {**by_type(before), mine["type"]: changed}
        assert after["metadata"]["labels"] == {"a": "1"}
        assert await store.get(pod) == after

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_patch_status_errors_name_the_status_subresource(
    admin_kubeconfig: Path, kube_cluster: TestCluster, kube_namespace: str
) -> None:
    """A Role without pods/status: the 403 says which rule to add; a missing pod is a 404;
    an invalid condition type is a 422 naming it."""
    kube_cluster.apply_yaml(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nostatus"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "nostatus"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "nostatus"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "nostatus"},
             "subjects": [{"kind": "ServiceAccount", "name": "nostatus"}]},
        ],
        kube_namespace,
    )  # fmt: skip
    kube_cluster.create_game_server(kube_namespace, "gs-0")
    pod, _ = refs(kube_namespace, "gs-0")
    missing, _ = refs(kube_namespace, "no-such-pod")
    patch = {"status": {"conditions": [condition("game.kruise.io/idle", "True", "")]}}

    async def forbidden(store: KubeStore) -> None:
        with pytest.raises(ForbiddenError) as caught:
            await store.patch_status(pod, patch)
        assert "can't patch pods/status" in str(caught.value)
        assert "resources: [pods/status], verbs: [patch]" in str(caught.value)

    async def admin(store: KubeStore) -> None:
        with pytest.raises(NotFoundError):
            await store.patch_status(missing, patch)
        bad = {"status": {"conditions": [condition("not a type!", "True", "")]}}
        with pytest.raises(InvalidError, match="not a type!"):
            await store.patch_status(pod, bad)

    with_store(kube_cluster.serviceaccount_kubeconfig(kube_namespace, "nostatus"), forbidden)
    with_store(admin_kubeconfig, admin)


@pytest.mark.kube
def test_list_custom_objects_of_a_namespace(
    admin_kubeconfig: Path, kube_cluster: TestCluster, kube_namespace: str
) -> None:
    marker = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PodProbeMarker",
        "spec": {"selector": {"matchLabels": {"a": "1"}}, "probes": []},
    }
    for name in ("b", "a"):
        kube_cluster.apply_yaml([{**marker, "metadata": {"name": name}}], kube_namespace)
    ref = ObjectRef("apps.kruise.io", "v1alpha1", "podprobemarkers", kube_namespace, "")

    async def scenario(store: KubeStore) -> None:
        found = await store.list(ref)
        assert [m["metadata"]["name"] for m in found] == ["a", "b"]
        assert found[0]["spec"]["selector"] == {"matchLabels": {"a": "1"}}
        _, gameservers = refs(kube_namespace, "")
        assert await store.list(gameservers) == []

    with_store(admin_kubeconfig, scenario)


@pytest.mark.kube
def test_merge_patch_of_gameserver_ops_state_leaves_other_keys(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    spec = {
        "opsState": "None",
        "deletionPriority": 5,
        "updatePriority": 1,
        "networkDisabled": False,
    }
    make_game_server("gs-0", gameserver_spec=spec)
    _, gameserver = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        before = await store.get(gameserver)
        assert before is not None
        after = await store.patch(gameserver, {"spec": {"opsState": "WaitToBeDeleted"}})
        assert after["spec"] == {**spec, "opsState": "WaitToBeDeleted"}
        assert after["metadata"]["ownerReferences"] == before["metadata"]["ownerReferences"]
        assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
        assert await store.get(gameserver) == after

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_stale_resource_version_is_a_conflict(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    make_game_server("gs-0")
    _, gameserver = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        before = await store.get(gameserver)
        assert before is not None
        stale = before["metadata"]["resourceVersion"]
        await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})
        with pytest.raises(ConflictError, match="modified"):
            await store.patch(
                gameserver,
                {"metadata": {"resourceVersion": stale}, "spec": {"opsState": "Kill"}},
            )
        live = await store.get(gameserver)
        assert live is not None and live["spec"]["opsState"] == "Allocated"

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_patch_of_a_missing_gameserver_is_not_found(
    sa_kubeconfig: Path, kube_namespace: str
) -> None:
    _, gameserver = refs(kube_namespace, "not-created-yet")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(NotFoundError, match="not-created-yet") as caught:
            await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})
        assert not isinstance(caught.value, ResourceNotServedError)
        assert isinstance(caught.value, PermanentPersistError)

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_invalid_label_value_is_invalid_and_names_the_label(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    make_game_server("gs-0")
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(InvalidError) as caught:
            await store.patch(pod, {"metadata": {"labels": {"example.com/state": "not ok!"}}})
        message = str(caught.value)
        assert "metadata.labels" in message
        assert "not ok!" in message
        assert "Invalid value" in message
        live = await store.get(pod)
        assert live is not None and "example.com/state" not in live["metadata"].get("labels", {})

    with_store(sa_kubeconfig, scenario)


# ------------------------------------------------------------------------------------------
# Create
# ------------------------------------------------------------------------------------------


SECTION_WRITES = [
    ("gs", {"spec": "open"}),
    ("gs", {"metadata": {"labels": "open"}}),
    ("pod", {"metadata": {"annotations": "open"}}),
    ("gs", {"metadata": {"labels": {"room": "open for players"}}}),
    ("pod", {"metadata": {"annotations": {"note": {"a": 1}}}}),
]


@pytest.mark.kube
def test_what_check_config_refuses_at_a_pointer_the_api_server_refuses(
    sa_kubeconfig: Path, kube_namespace: str, make_game_server: Any
) -> None:
    """Review of issue 11: the writes ``pointer_value_problem`` (check-config) refuses are the
    ones the real API server refuses with 422, so the rule is not stricter than the server."""
    make_game_server("gs-0")
    pod, gameserver = refs(kube_namespace, "gs-0")
    cases = [
        ("/spec", "open"),
        ("/metadata/labels", "open"),
        ("/metadata/annotations", "open"),
        ("/metadata/labels/room", "open for players"),
        ("/metadata/annotations/note", {"a": 1}),
    ]
    for pointer, value in cases:
        assert pointer_value_problem(pointer, value), pointer

    async def scenario(store: KubeStore) -> None:
        for (which, patch), (pointer, _) in zip(SECTION_WRITES, cases, strict=True):
            ref = gameserver if which == "gs" else pod
            with pytest.raises(InvalidError):
                await store.patch(ref, patch)
            assert pointer_value_problem(pointer, None) is None
        await store.patch(gameserver, {"spec": {"opsState": "None"}})
        await store.patch(pod, {"metadata": {"labels": {"room": "open"}}})
        assert pointer_value_problem("/metadata/labels/room", "open") is None

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_create_and_get_configmap_then_create_again_is_a_conflict(
    sa_kubeconfig: Path, kube_namespace: str
) -> None:
    ref = ObjectRef.configmap(kube_namespace, RESULT_CONFIGMAP)

    async def scenario(store: KubeStore) -> None:
        created = await store.create(ref, {"data": {"pod.gs-0": '{"version": "v1"}'}})
        assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
        assert created["metadata"]["name"] == RESULT_CONFIGMAP
        assert created["metadata"]["namespace"] == kube_namespace
        got = await store.get(ref)
        assert got is not None and got["data"] == {"pod.gs-0": '{"version": "v1"}'}
        with pytest.raises(ConflictError, match="already exists"):
            await store.create(ref, {"data": {}})
        patched = await store.patch(ref, {"data": {"workload.gss": "v2"}})
        assert patched["data"] == {"pod.gs-0": '{"version": "v1"}', "workload.gss": "v2"}

    with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_create_custom_object(admin_kubeconfig: Path, kube_namespace: str) -> None:
    """The ServiceAccount may not create GameServers; the admin shows the custom-object path."""
    _, gameserver = refs(kube_namespace, "gs-new")

    async def scenario(store: KubeStore) -> None:
        created = await store.create(
            gameserver, {"kind": "GameServer", "spec": {"opsState": "None"}}
        )
        assert created["apiVersion"] == "game.kruise.io/v1alpha1"
        assert created["metadata"]["name"] == "gs-new"
        assert await store.get(gameserver) == created
        with pytest.raises(ValueError, match=r"metadata\.name"):
            await store.create(gameserver, {"kind": "GameServer", "metadata": {"name": "other"}})

    with_store(admin_kubeconfig, scenario)


# ------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_record_event_creates_an_event_about_the_pod(
    sa_kubeconfig: Path, kube_cluster: TestCluster, kube_namespace: str, make_game_server: Any
) -> None:
    pair = make_game_server("gs-0")
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        await store.record_event(pod, Event("HotUpdateFailed", "download failed: 404", "Warning"))
        await store.record_event(pod, Event("HotUpdated", "v2 applied"))

    with_store(sa_kubeconfig, scenario)

    with kube_cluster.admin_api_client() as api:
        events = k8s.CoreV1Api(api).list_namespaced_event(kube_namespace).items
    by_reason = {event.reason: event for event in events}
    assert set(by_reason) == {"HotUpdateFailed", "HotUpdated"}
    warning = by_reason["HotUpdateFailed"]
    assert warning.type == "Warning"
    assert warning.message == "download failed: 404"
    assert warning.involved_object.kind == "Pod"
    assert warning.involved_object.name == "gs-0"
    assert warning.involved_object.uid == pair.pod["metadata"]["uid"]
    assert warning.source is not None and warning.source.component == "kidecar"
    assert warning.reporting_component == "kidecar"
    assert str(warning.metadata.name).startswith("gs-0.")
    assert warning.first_timestamp is not None and warning.event_time is not None
    assert by_reason["HotUpdated"].type == "Normal"


@pytest.mark.kube
def test_record_event_reads_the_object_once(
    fault_proxy_kubeconfig: Path,
    fault_proxy: FaultProxy,
    kube_namespace: str,
    make_game_server: Any,
) -> None:
    make_game_server("gs-0")
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        for i in range(3):
            await store.record_event(pod, Event("Probe", f"attempt {i}"))

    with_store(fault_proxy_kubeconfig, scenario)
    assert fault_proxy.count("GET", r"/pods/gs-0$") == 1
    assert fault_proxy.count("POST", r"/events$") == 3


@pytest.mark.kube
def test_record_event_about_a_missing_object_is_not_found(
    sa_kubeconfig: Path, kube_namespace: str
) -> None:
    pod, _ = refs(kube_namespace, "gone")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(NotFoundError, match="gone"):
            await store.record_event(pod, Event("Probe", "x"))

    with_store(sa_kubeconfig, scenario)


# ------------------------------------------------------------------------------------------
# RBAC
# ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_forbidden_names_the_missing_rule(sa_kubeconfig: Path, kube_namespace: str) -> None:
    secret = ObjectRef("", "v1", "secrets", kube_namespace, "game-secret")
    other_gs = ObjectRef("game.kruise.io", "v1alpha1", "gameservers", "default", "gs-0")
    other_cm = ObjectRef.configmap(kube_namespace, "not-the-result-configmap")
    token = token_of(sa_kubeconfig)

    async def scenario(store: KubeStore) -> list[ForbiddenError]:
        errors = []
        for call in (
            store.patch(secret, {"data": {}}),
            store.patch(other_gs, {"spec": {"opsState": "Kill"}}),
            store.get(other_cm),
        ):
            with pytest.raises(ForbiddenError) as caught:
                await call
            errors.append(caught.value)
        return errors

    secret_error, gs_error, cm_error = with_store(sa_kubeconfig, scenario)

    assert secret_error.rule == 'verb=patch apiGroup="" resource=secrets'
    assert (secret_error.verb, secret_error.group, secret_error.resource) == (
        "patch",
        "",
        "secrets",
    )
    assert str(secret_error) == (
        f"forbidden: system:serviceaccount:{kube_namespace}:kidecar can't patch secrets in "
        f'namespace {kube_namespace}: add {{apiGroups: [""], resources: [secrets], '
        "verbs: [patch]} to the Role bound to it"
    )
    assert gs_error.rule == "verb=patch apiGroup=game.kruise.io resource=gameservers"
    assert (
        "can't patch gameservers.game.kruise.io in namespace default: add {apiGroups: "
        "[game.kruise.io], resources: [gameservers], verbs: [patch]} to the Role"
    ) in str(gs_error)
    assert cm_error.rule == 'verb=get apiGroup="" resource=configmaps'
    for error in (secret_error, gs_error, cm_error):
        assert token not in str(error)
        assert isinstance(error, PermanentPersistError)


@pytest.mark.kube
def test_rejected_credentials_are_permanent_and_do_not_leak_the_token(
    kube_cluster: TestCluster, kube_namespace: str, tmp_path: Path
) -> None:
    token = "not-a-valid-token-" + secrets.token_hex(16)
    kubeconfig = write_kubeconfig(
        tmp_path / "bad.yaml",
        server=kube_cluster.server,
        ca_file=kube_cluster.ca_file,
        user={"token": token},
    )
    pod, _ = refs(kube_namespace, "gs-0")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(PermanentPersistError, match="credentials") as caught:
            await store.get(pod)
        assert not isinstance(caught.value, TransientPersistError)
        assert token not in str(caught.value)

    with_store(kubeconfig, scenario)


# ------------------------------------------------------------------------------------------
# Injected faults and an unreachable server
# ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_injected_faults_map_to_transient_and_conflict_errors(
    fault_proxy_kubeconfig: Path,
    fault_proxy: FaultProxy,
    kube_namespace: str,
    make_game_server: Any,
) -> None:
    make_game_server("gs-0")
    pod, gameserver = refs(kube_namespace, "gs-0")
    gs_path = r"/gameservers/gs-0$"

    async def scenario(store: KubeStore) -> None:
        fault_proxy.inject("PATCH", gs_path, 409)
        with pytest.raises(ConflictError):
            await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})

        fault_proxy.inject("PATCH", gs_path, 429)  # Retry-After: 1, as APF sends it
        with pytest.raises(TransientApiError) as busy:
            await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})
        assert busy.value.status == 429 and busy.value.retry_after == 1.0
        assert "retry after 1s" in str(busy.value)

        fault_proxy.inject("PATCH", gs_path, 503, headers={"Retry-After": "7"})
        with pytest.raises(TransientApiError) as unavailable:
            await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})
        assert unavailable.value.retry_after == 7.0

        fault_proxy.inject("GET", r"/pods/gs-0$", 500)
        with pytest.raises(TransientPersistError, match="500") as failed:
            await store.get(pod)
        assert failed.value.retry_after is None  # type: ignore[attr-defined]

        fault_proxy.inject("PATCH", r"/pods/gs-0$", 502, body=b"<html>Bad Gateway</html>")
        with pytest.raises(TransientPersistError, match="Bad Gateway"):
            await store.patch(pod, {"metadata": {"labels": {"a": "b"}}})

        # After the faults the very same calls go through.
        after = await store.patch(gameserver, {"spec": {"opsState": "Allocated"}})
        assert after["spec"]["opsState"] == "Allocated"

    with_store(fault_proxy_kubeconfig, scenario)
    # Exactly one request per call: the client never retries on its own.
    assert fault_proxy.count("PATCH", gs_path) == 4
    assert fault_proxy.count("GET", r"/pods/gs-0$") == 1
    assert fault_proxy.count("PATCH", r"/pods/gs-0$") == 1


@pytest.mark.kube
def test_server_going_away_under_an_open_store_is_transient(
    kube_cluster: TestCluster,
    kube_namespace: str,
    kidecar_rbac: str,
    make_game_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The proxy in front of the server dies: the pooled connection is dead, reconnects are
    refused. The store says so at once (no urllib3 retry loop) and works again afterwards."""
    make_game_server("gs-0")
    pod, _ = refs(kube_namespace, "gs-0")
    token = kube_cluster.serviceaccount_token(kube_namespace, kidecar_rbac)
    proxy = FaultProxy(kube_cluster.server, kube_cluster.ca_file).start()
    try:
        kubeconfig = proxy.write_kubeconfig(tmp_path / "k.yaml", token)

        async def scenario(store: KubeStore) -> None:
            assert await store.get(pod) is not None  # leaves a pooled keep-alive connection
            proxy.stop()
            started = time.monotonic()
            with pytest.raises(TransientApiError, match="unreachable") as caught:
                await store.get(pod)
            # Seconds, not the minutes a retry loop would take; the bound is generous so that a
            # busy machine does not fail it (the log check below is what proves no retry).
            assert time.monotonic() - started < 10
            assert caught.value.status is None
            assert token not in str(caught.value)

        with caplog.at_level(logging.DEBUG, logger="urllib3"):
            with_store(kubeconfig, scenario)
    finally:
        proxy.stop()
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


@pytest.mark.kube
def test_unverifiable_server_certificate_is_permanent(
    kube_cluster: TestCluster, tmp_path: Path
) -> None:
    """Without the cluster's CA the server cannot be trusted; retrying will not change that."""
    kubeconfig = write_kubeconfig(
        tmp_path / "no-ca.yaml", server=kube_cluster.server, user={"token": "t0ken"}
    )
    pod = ObjectRef("", "v1", "pods", "default", "gs-0")

    async def scenario(store: KubeStore) -> None:
        with pytest.raises(PermanentPersistError, match="cannot verify the TLS certificate"):
            await store.get(pod)

    with_store(kubeconfig, scenario)


def test_unreachable_server_fails_fast_without_urllib3_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "k.yaml", server=f"http://127.0.0.1:{closed_port()}", user={"token": "t0ken"}
    )
    pod = ObjectRef("", "v1", "pods", "ns", "gs-0")

    async def scenario(store: KubeStore) -> float:
        started = time.monotonic()
        for call in (store.get(pod), store.patch(pod, {}), store.create(pod, {})):
            with pytest.raises(TransientApiError, match=r"unreachable.*refused") as caught:
                await call
            assert "t0ken" not in str(caught.value)
        return time.monotonic() - started

    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        elapsed = with_store(kubeconfig, scenario)
    assert elapsed < 10  # generous: a busy machine must not fail it; the log proves no retry
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


def test_silent_server_times_out_with_the_request_timeout(
    tmp_path: Path, silent_server: int
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "k.yaml", server=f"http://127.0.0.1:{silent_server}", user={"token": "t"}
    )
    pod = ObjectRef("", "v1", "pods", "ns", "gs-0")

    async def scenario(store: KubeStore) -> float:
        started = time.monotonic()
        with pytest.raises(TransientApiError, match=r"(?i)timed out"):
            await store.get(pod)
        return time.monotonic() - started

    elapsed = with_store(kubeconfig, scenario, request_timeout=0.3)
    # At least the request timeout; far less than the minutes of a missing timeout (the upper
    # bound is generous so that a busy machine does not fail it).
    assert 0.25 < elapsed < 10


# ------------------------------------------------------------------------------------------
# Construction and fast unit tests
# ------------------------------------------------------------------------------------------


def test_each_store_has_its_own_configuration(tmp_path: Path) -> None:
    default_before = k8s.Configuration._default
    a = write_kubeconfig(tmp_path / "a.yaml", server="http://127.0.0.1:1", user={"token": "a"})
    b = write_kubeconfig(tmp_path / "b.yaml", server="http://127.0.0.1:2", user={"token": "b"})

    async def main() -> None:
        store_a = KubeStore.from_kubeconfig(str(a))
        store_b = KubeStore.from_kubeconfig(str(b))
        try:
            assert store_a.description == "kube-apiserver http://127.0.0.1:1"
            assert store_b.description == "kube-apiserver http://127.0.0.1:2"
        finally:
            await store_a.close()
            await store_b.close()
            await store_a.close()  # idempotent

    asyncio.run(main())
    assert k8s.Configuration._default is default_before


def test_unloadable_kubeconfig_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot load kubeconfig"):
        KubeStore.from_kubeconfig(str(tmp_path / "missing.yaml"))
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("users: [")
    with pytest.raises(StartupError, match="cannot load kubeconfig"):
        KubeStore.from_kubeconfig(str(garbage))


def test_in_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The file the CLI checks is the one the client's in-cluster config reads.
    assert incluster_config.SERVICE_TOKEN_FILENAME == bootstrap.SERVICE_ACCOUNT_TOKEN
    token = tmp_path / "token"
    monkeypatch.setattr(bootstrap, "SERVICE_ACCOUNT_TOKEN", str(token))
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert not bootstrap.in_cluster(env)
    token.write_text("x")
    assert bootstrap.in_cluster(env)
    assert not bootstrap.in_cluster({})
    # Outside a pod (no service host, no token file) loading in-cluster config fails clearly.
    with pytest.raises(StartupError, match="in-cluster"):
        KubeStore.from_kubeconfig(None)


REF = ObjectRef("game.kruise.io", "v1alpha1", "gameservers", "ns", "gs-0")


def status(code: int, message: str, **extra: Any) -> bytes:
    return json.dumps({"kind": "Status", "code": code, "message": message, **extra}).encode()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (400, InvalidError),
        (401, PermanentPersistError),
        (404, NotFoundError),
        (408, TransientApiError),
        (409, ConflictError),
        (415, PermanentPersistError),
        (422, InvalidError),
        (429, TransientApiError),
        (500, TransientApiError),
        (504, TransientApiError),
    ],
)
def test_status_codes_map_to_kidecar_errors(code: int, expected: type[Exception]) -> None:
    error = kube._error_for(
        "patch", REF, code, {}, status(code, "why", details={"name": "gs-0"}), "server"
    )
    assert type(error) is expected


def test_retry_after_parsing() -> None:
    assert kube._retry_after({"Retry-After": "3"}) == 3.0
    assert kube._retry_after({"Retry-After": "-3"}) == 0.0
    assert kube._retry_after({}) is None
    assert kube._retry_after({"Retry-After": "soon"}) is None
    in_a_minute = time.time() + 60
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(in_a_minute))
    parsed = kube._retry_after({"Retry-After": http_date})
    assert parsed is not None and 55 < parsed <= 60


def test_forbidden_that_is_not_rbac_quotes_the_server() -> None:
    message = "unable to create new content in namespace ns because it is being terminated"
    error = kube._error_for("create", REF, 403, {}, status(403, message), "server")
    assert isinstance(error, ForbiddenError)
    assert message in str(error)
    assert error.rule == "verb=create apiGroup=game.kruise.io resource=gameservers"


def test_non_json_error_body_is_quoted_briefly() -> None:
    error = kube._error_for("get", REF, 503, {}, b"x" * 5000, "server")
    assert isinstance(error, TransientApiError)
    assert len(str(error)) < 700


@pytest.mark.kube
def test_the_role_allows_watching_the_rollout_configmap_by_name(
    sa_kubeconfig: Path, kube_namespace: str
) -> None:
    """deploy/base's Role grants ``watch`` on ``kidecar-rollout`` (by name, without ``list``):
    the watch request is accepted and reports the ConfigMap created after it opened."""
    ref = ObjectRef("", "v1", "configmaps", kube_namespace, "kidecar-rollout")
    other = ObjectRef("", "v1", "configmaps", kube_namespace, "not-kidecar-rollout")

    async def scenario(store: KubeStore) -> None:
        stream = await store.open_watch(ref, resource_version=None, timeout_seconds=30)
        try:
            with pytest.raises(ForbiddenError, match="watch"):
                await store.open_watch(other, resource_version=None, timeout_seconds=30)
        finally:
            stream.close()

    with_store(sa_kubeconfig, scenario)

"""The test's pod and GameServer (and the namespace's Events and ``kidecar`` Role), read and
changed with admin credentials: what a kube test checks kidecar's writes against.

Shared by the kube tests (``tests/kube``, ``tests/plugins/*/test_*_kube.py``) through the
``objects`` fixture in ``tests/conftest.py``; the pod and GameServer are named ``gs-0`` unless
told otherwise.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client as k8s

from tests.support.apiserver import TestCluster

GAMESERVERS = ("game.kruise.io", "v1alpha1")


class Objects:
    """One namespace's test objects, through the admin client of the session's API server."""

    def __init__(self, cluster: TestCluster, namespace: str, name: str = "gs-0") -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name

    def pod(self) -> dict[str, Any]:
        """The pod as JSON (the API's field names)."""
        with self.cluster.admin_api_client() as api:
            obj = k8s.CoreV1Api(api).read_namespaced_pod(self.name, self.namespace)
            return cast(dict[str, Any], api.sanitize_for_serialization(obj))

    def pod_annotations(self) -> dict[str, str]:
        return dict(self.pod()["metadata"].get("annotations") or {})

    def delete_pod(self) -> None:
        """Delete the pod at once (grace period 0)."""
        with self.cluster.admin_api_client() as api:
            k8s.CoreV1Api(api).delete_namespaced_pod(
                self.name, self.namespace, grace_period_seconds=0
            )

    def gs(self) -> dict[str, Any]:
        """The GameServer as JSON."""
        with self.cluster.admin_api_client() as api:
            data = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                *GAMESERVERS, self.namespace, "gameservers", self.name
            )
            return cast(dict[str, Any], data)

    def ops(self) -> str | None:
        """The GameServer's ``spec.opsState``; None when it has none."""
        value = self.gs()["spec"].get("opsState")
        return None if value is None else str(value)

    def set_ops(self, value: str, manager: str | None = None) -> None:
        """Set ``spec.opsState`` as another writer would (field manager ``manager``, or the
        client's default)."""
        with self.cluster.admin_api_client() as api:
            k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
                *GAMESERVERS, self.namespace, "gameservers", self.name,
                {"spec": {"opsState": value}}, field_manager=manager,
            )  # fmt: skip

    def resource_versions(self) -> tuple[str, str]:
        """The pod's and the GameServer's ``metadata.resourceVersion``."""
        pod_rv = str(self.pod()["metadata"]["resourceVersion"])
        return pod_rv, str(self.gs()["metadata"]["resourceVersion"])

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        """The namespace's Events as JSON, only those with ``reason`` when given."""
        with self.cluster.admin_api_client() as api:
            items = k8s.CoreV1Api(api).list_namespaced_event(self.namespace).items
            wanted = [e for e in items if reason is None or e.reason == reason]
            return [api.sanitize_for_serialization(e) for e in wanted]

    def role_rules(self) -> list[dict[str, Any]]:
        """The rules of the namespace's ``kidecar`` Role (deploy/base)."""
        with self.cluster.admin_api_client() as api:
            role = k8s.RbacAuthorizationV1Api(api).read_namespaced_role("kidecar", self.namespace)
            return cast(list[dict[str, Any]], api.sanitize_for_serialization(role)["rules"])

    def set_role_rules(self, rules: list[dict[str, Any]]) -> None:
        with self.cluster.admin_api_client() as api:
            k8s.RbacAuthorizationV1Api(api).patch_namespaced_role(
                "kidecar", self.namespace, {"rules": rules}
            )

"""The in-cluster configuration (a pod's ServiceAccount token and CA) against the real API server.

``KubeStore.from_kubeconfig(None)`` reads the token and CA from the fixed paths of a pod; the
client's loader takes other paths, so the test feeds it the same files from a temporary
directory and the API server's address as the pod's environment would.  It proves that the
store's requests (``k8s_client.RestClient``) carry the loaded bearer token: a valid token is
authorised (a missing pod reads as ``None``), a wrong one is refused (401).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes.config.incluster_config import InClusterConfigLoader

from kidecar_core import ObjectRef
from kidecar_core._store.k8s_client import Configuration
from kidecar_core._store.kube import KubeStore
from kidecar_core.errors import PermanentPersistError
from tests.support.apiserver import TestCluster

pytestmark = pytest.mark.kube


def _store(cluster: TestCluster, token: str, tmp_path: Path) -> KubeStore:
    token_file = tmp_path / "token"
    token_file.write_text(token)
    configuration = Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(token_file),
        cert_filename=str(cluster.ca_file),
        environ={
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(cluster.port),
        },
    )
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    return KubeStore(configuration)


async def _get_pod(store: KubeStore, namespace: str) -> object:
    try:
        return await store.get(ObjectRef("", "v1", "pods", namespace, "no-such-pod"))
    finally:
        await store.close()


def test_requests_carry_the_service_account_token(
    kube_cluster: TestCluster, kube_namespace: str, kidecar_rbac: str, tmp_path: Path
) -> None:
    token = kube_cluster.serviceaccount_token(kube_namespace, kidecar_rbac)
    store = _store(kube_cluster, token, tmp_path)
    assert asyncio.run(_get_pod(store, kube_namespace)) is None


def test_a_wrong_token_is_refused(
    kube_cluster: TestCluster, kube_namespace: str, tmp_path: Path
) -> None:
    store = _store(kube_cluster, "not-a-token", tmp_path)
    with pytest.raises(PermanentPersistError, match="401"):
        asyncio.run(_get_pod(store, kube_namespace))

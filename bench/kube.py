"""The real API server for the benchmark: cluster, namespace, RBAC, counting proxy, a watch.

One ``BenchCluster`` serves every figure: a real etcd + kube-apiserver (``tests.support``), the
GameServer CRDs, a namespace ``bench`` with the ServiceAccount and Role of ``deploy/base``, and a
``FaultProxy`` (used here only to count requests) in front of the API server. Sidecars run as the
``kidecar`` ServiceAccount, either directly (``sa_kubeconfig``) or through the proxy
(``proxy_kubeconfig``) when a figure counts API writes.
"""

from __future__ import annotations

import http.client
import json
import queue
import ssl
import threading
import time
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import watch

from bench.common import WRITE_METHODS
from tests.support.apiserver import (
    GAME_GROUP,
    GAME_VERSION,
    KIDECAR_RBAC,
    Binaries,
    TestCluster,
)
from tests.support.faultproxy import FaultProxy

NAMESPACE = "bench"
SERVICE_ACCOUNT = "kidecar"


class BenchCluster:
    """Started by :meth:`start`, stopped by :meth:`stop` (also at interpreter exit)."""

    def __init__(self, cluster: TestCluster, proxy: FaultProxy, workdir: Path) -> None:
        self.cluster = cluster
        self.proxy = proxy
        self.namespace = NAMESPACE
        token = cluster.serviceaccount_token(NAMESPACE, SERVICE_ACCOUNT)
        self.sa_token = token
        self.sa_kubeconfig = cluster.serviceaccount_kubeconfig(NAMESPACE, SERVICE_ACCOUNT)
        self.proxy_kubeconfig = proxy.write_kubeconfig(
            workdir / "proxy-kubeconfig.yaml", token, namespace=NAMESPACE
        )

    @classmethod
    def start(cls, workdir: Path, binaries: Binaries | None = None) -> BenchCluster:
        cluster = TestCluster.start(workdir / "cluster", binaries=binaries)
        try:
            cluster.install_crds()
            cluster.create_namespace(NAMESPACE)
            cluster.apply_yaml(KIDECAR_RBAC, NAMESPACE)
            proxy = FaultProxy(cluster.server, cluster.ca_file).start()
        except BaseException:
            cluster.stop()
            raise
        try:
            return cls(cluster, proxy, workdir)
        except BaseException:
            proxy.stop()
            cluster.stop()
            raise

    def stop(self) -> None:
        self.proxy.stop()
        self.cluster.stop()

    def create_game_server(self, name: str, ops_state: str = "None") -> None:
        """A Pod and its GameServer ``name`` in the bench namespace."""
        self.cluster.create_game_server(
            self.namespace, name, gameserver_spec={"opsState": ops_state}
        )

    def blind_patch(self, connection: http.client.HTTPSConnection, name: str, ops: str) -> float:
        """One merge PATCH of ``spec.opsState`` (no precondition) as the kidecar ServiceAccount,
        straight to the API server over ``connection`` (TLS, kept alive); ``time.monotonic()``
        just before it was sent. What a single blind PATCH costs on its own (figure 11)."""
        path = self.gameserver_path(name).rstrip("$")
        body = json.dumps({"spec": {"opsState": ops}})
        headers = {
            "Authorization": f"Bearer {self.sa_token}",
            "Content-Type": "application/merge-patch+json",
        }
        sent = time.monotonic()
        connection.request("PATCH", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"PATCH {path}: {response.status}: {answer[:200]!r}")
        return sent

    def api_connection(self) -> http.client.HTTPSConnection:
        """A connection straight to the API server (its CA verified), for :meth:`blind_patch`."""
        context = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        port = self.cluster.port
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)

    def pod_path(self, name: str) -> str:
        return rf"/api/v1/namespaces/{self.namespace}/pods/{name}$"

    def gameserver_path(self, name: str) -> str:
        return rf"/apis/{GAME_GROUP}/{GAME_VERSION}/namespaces/{self.namespace}/gameservers/{name}$"

    def writes(self, path_regex: str | None = None) -> int:
        """Write requests (PATCH, PUT, POST, DELETE) through the proxy since its last reset."""
        return sum(self.proxy.count(m, path_regex) for m in WRITE_METHODS)

    def requests(self, path_regex: str | None = None) -> int:
        return self.proxy.count(None, path_regex)

    def gameserver(self, name: str) -> dict[str, Any]:
        with self.cluster.admin_api_client() as api:
            data = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                GAME_GROUP, GAME_VERSION, self.namespace, "gameservers", name
            )
        return cast(dict[str, Any], data)

    def pod_annotations(self, name: str) -> dict[str, str]:
        with self.cluster.admin_api_client() as api:
            pod = k8s.CoreV1Api(api).read_namespaced_pod(name, self.namespace)
        metadata = pod.metadata
        return dict((metadata.annotations if metadata is not None else None) or {})


class OpsStateWatch:
    """A watch (admin client) on one GameServer: the ``time.monotonic()`` at which each new
    ``spec.opsState`` arrived. Runs in a thread; re-opened every few seconds so it stops fast."""

    def __init__(self, bench: BenchCluster, name: str) -> None:
        self.bench = bench
        self.name = name
        self.events: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def _run(self) -> None:
        resource_version: str | None = None
        with self.bench.cluster.admin_api_client() as api:
            custom = k8s.CustomObjectsApi(api)
            while not self._stop.is_set():
                w = watch.Watch()  # type: ignore[no-untyped-call]
                kwargs: dict[str, Any] = {"field_selector": f"metadata.name={self.name}"}
                if resource_version is not None:
                    kwargs["resource_version"] = resource_version
                self._ready.set()
                for event in w.stream(  # type: ignore[no-untyped-call]
                    custom.list_namespaced_custom_object,
                    GAME_GROUP, GAME_VERSION, self.bench.namespace, "gameservers",
                    timeout_seconds=2, **kwargs,
                ):  # fmt: skip
                    at = time.monotonic()
                    obj = event["object"]
                    if event["type"] == "ERROR":  # e.g. 410 Gone: start over from a list
                        resource_version = None
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    self.events.put((at, obj.get("spec", {}).get("opsState")))
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]

    def drain(self) -> None:
        """Forget the events received so far."""
        while not self.events.empty():
            self.events.get_nowait()

    def wait_for(self, state: str, timeout: float) -> float:
        """The arrival time of the next event whose opsState is ``state``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"GameServer {self.name}: opsState {state!r} never arrived")
            try:
                at, ops = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if ops == state:
                return at

    def __enter__(self) -> OpsStateWatch:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

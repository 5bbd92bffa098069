"""Admin-side access to the GameServerSets, GameServers and Pods of one test namespace.

What a human or a plain API client does in the okg tier: create a GameServerSet, scale it, set a
GameServer's `spec.opsState` (Maintaining, Kill, ...), and read back what OKG, the Kruise
stand-in and the sidecars made of it. All calls use the cluster's admin credentials (user
`kidecar-test-admin` in the audit log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.apiserver import GAME_GROUP, GAME_VERSION, TestCluster
from tests.support.audit import AuditLog
from tests.support.kruise_standin import STATEFULSETS

OWNER_GSS_LABEL = "game.kruise.io/owner-gss"
GAME_IMAGE = "registry.invalid/kidecar-test/game:1"


class GameServerSets:
    """GameServerSets of `namespace` (see the module docstring)."""

    def __init__(self, cluster: TestCluster, namespace: str, audit: AuditLog | None = None) -> None:
        """`audit`: the cluster's audit log, for `settle()` and for failure messages (the
        GameServer writes of the namespace: who set which opsState)."""
        self.cluster = cluster
        self.namespace = namespace
        self.audit = audit

    def _custom(self, call: Callable[[k8s.CustomObjectsApi], Any]) -> Any:
        with self.cluster.admin_api_client() as api:
            return call(k8s.CustomObjectsApi(api))

    def create(self, name: str, replicas: int, **spec: Any) -> None:
        """Create GameServerSet `name` with `replicas` and a one-container template; `spec`
        adds or overrides top-level spec fields."""
        body = {
            "apiVersion": f"{GAME_GROUP}/{GAME_VERSION}",
            "kind": "GameServerSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}},
                "gameServerTemplate": {
                    "spec": {"containers": [{"name": "game", "image": GAME_IMAGE}]}
                },
                **spec,
            },
        }
        self._custom(lambda c: c.create_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameserversets", body))  # fmt: skip

    def scale(self, name: str, replicas: int) -> None:
        """Set the GameServerSet's `spec.replicas` (a merge patch, as `kubectl scale` would)."""
        self._custom(lambda c: c.patch_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameserversets", name,
            {"spec": {"replicas": replicas}}))  # fmt: skip

    def replicas(self, name: str) -> int:
        """The GameServerSet's `spec.replicas` now."""
        gss = self._custom(lambda c: c.get_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameserversets", name))  # fmt: skip
        return int(gss["spec"]["replicas"])

    def gameservers(self, name: str) -> dict[str, dict[str, Any]]:
        """The GameServers of GameServerSet `name`, by name."""
        items = self._custom(lambda c: c.list_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameservers",
            label_selector=f"{OWNER_GSS_LABEL}={name}"))["items"]  # fmt: skip
        return {gs["metadata"]["name"]: gs for gs in items}

    def ops_states(self, name: str) -> dict[str, str]:
        """`spec.opsState` of each GameServer of GameServerSet `name`, by GameServer name."""
        return {n: str(gs["spec"].get("opsState")) for n, gs in self.gameservers(name).items()}

    def set_ops_state(self, gameserver: str, value: str) -> None:
        """Set a GameServer's `spec.opsState` as a human would (a merge patch), once the
        namespace has settled (see `settle()`)."""
        self.settle()
        self._custom(lambda c: c.patch_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameservers", gameserver,
            {"spec": {"opsState": value}}))  # fmt: skip

    def pods(self, name: str) -> list[str]:
        """Names of the Pods of GameServerSet `name` that are not being deleted, sorted."""
        with self.cluster.admin_api_client() as api:
            items = (
                k8s.CoreV1Api(api)
                .list_namespaced_pod(self.namespace, label_selector=f"{OWNER_GSS_LABEL}={name}")
                .items
            )
        return sorted(p.metadata.name for p in items if p.metadata.deletion_timestamp is None)

    def pod_labels(self, name: str, key: str) -> dict[str, str | None]:
        """Label `key` of each Pod of GameServerSet `name` (None when absent), by Pod name."""
        with self.cluster.admin_api_client() as api:
            items = (
                k8s.CoreV1Api(api)
                .list_namespaced_pod(self.namespace, label_selector=f"{OWNER_GSS_LABEL}={name}")
                .items
            )
        return {p.metadata.name: (p.metadata.labels or {}).get(key) for p in items}

    def wait_ready(self, name: str, names: list[str], timeout: float = 60.0) -> None:
        """Wait until exactly the Pods and GameServers `names` exist and every GameServer's
        `status.currentState` is Ready (OKG saw its Pod Running and Ready)."""

        def ready() -> bool:
            servers = self.gameservers(name)
            states = [(gs.get("status") or {}).get("currentState") for gs in servers.values()]
            return (
                self.pods(name) == names
                and sorted(servers) == names
                and all(s == "Ready" for s in states)
            )

        self.wait_for(ready, timeout, f"Pods and Ready GameServers {names} of {name}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` every 0.1 s until true; on timeout fail naming `what` and showing
        the GameServerSets, GameServers and Pods of the namespace."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self}")
            time.sleep(0.1)

    def __str__(self) -> str:
        sets = self._custom(lambda c: c.list_namespaced_custom_object(
            GAME_GROUP, GAME_VERSION, self.namespace, "gameserversets"))["items"]  # fmt: skip
        lines = [f"namespace {self.namespace}:"]
        for gss in sets:
            name = gss["metadata"]["name"]
            lines.append(
                f"  GameServerSet {name}: replicas={gss['spec']['replicas']} "
                f"reserve={gss['spec'].get('reserveGameServerIds')} pods={self.pods(name)}"
            )
            for gs_name, gs in sorted(self.gameservers(name).items()):
                status = gs.get("status") or {}
                lines.append(
                    f"    GameServer {gs_name}: opsState={gs['spec'].get('opsState')} "
                    f"currentState={status.get('currentState')}"
                )
        return "\n".join(lines + self._gameserver_writes())

    def _gameserver_writes(self, last: int = 30) -> list[str]:
        if self.audit is None:
            return []
        writes = [
            e for e in self.audit.writes(namespace=self.namespace)
            if e.resource == "gameservers"
        ][-last:]  # fmt: skip
        return [f"  last {len(writes)} GameServer writes (audit log):"] + [
            f"    {e.time:%H:%M:%S.%f} {e.user} {e.verb} {e.name} "
            f"opsState={((e.obj or {}).get('spec') or {}).get('opsState')}"
            for e in writes
        ]

    def settle(self, quiet: float = 0.5, timeout: float = 30.0) -> None:
        """Wait until nobody has written in the namespace for `quiet` seconds (by the audit
        log; without one, return at once). A human acting on a GameServer that OKG is still
        setting up can lose the write: OKG v1.0.0 writes back a stale spec (issue 11)."""
        if self.audit is None:
            return
        audit = self.audit

        def quiet_now() -> bool:
            writes = audit.writes(namespace=self.namespace)
            return not writes or time.time() - writes[-1].time.timestamp() >= quiet

        self.wait_for(quiet_now, timeout, f"{quiet} s without writes in {self.namespace}")

    def delete_all(self) -> None:
        """Delete every GameServerSet, Advanced StatefulSet, GameServer and Pod of the
        namespace (there is no garbage collector), so that nothing of a finished test keeps
        OKG or the stand-in busy."""
        with self.cluster.admin_api_client() as api:
            custom = k8s.CustomObjectsApi(api)
            for group, version, plural in (
                (GAME_GROUP, GAME_VERSION, "gameserversets"),
                STATEFULSETS,
                (GAME_GROUP, GAME_VERSION, "gameservers"),
            ):
                try:
                    custom.delete_collection_namespaced_custom_object(
                        group, version, self.namespace, plural
                    )
                except ApiException as e:
                    if e.status != 404:
                        raise
            k8s.CoreV1Api(api).delete_collection_namespaced_pod(
                self.namespace, grace_period_seconds=0
            )

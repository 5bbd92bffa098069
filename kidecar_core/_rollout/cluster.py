"""What ``kidecar rollout`` reads from the cluster: the workload, its pods, its sidecar config,
the version hot_update last recorded for it. One :class:`~kidecar_core._store.kube.KubeStore`
does every request, so errors are kidecar's (unreachable, forbidden with the missing rule, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kidecar_core._store.kube import KubeStore, ResourceNotServedError
from kidecar_core._store.objects import JSON, ObjectRef
from kidecar_core._store.rollout import (
    OWNER_GSS_LABEL,
    RolloutError,
    RolloutRefused,
    RolloutTarget,
    Workload,
    loads,
)

SIDECAR_CONTAINER = "kidecar"
CONFIG_DIR = "/opt/sidecar"
CONFIG_KEY = "config.yaml"
"""Where ``kidecar inject`` puts the sidecar's config: the ConfigMap volume mounted at
``/opt/sidecar`` in the container named ``kidecar``, key ``config.yaml``."""


def pod_template_spec(workload: Workload, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of the workload's template (GameServerSets keep it in
    ``spec.gameServerTemplate``)."""
    spec = obj.get("spec") or {}
    template = spec.get(
        "gameServerTemplate" if workload.kind.kind == "GameServerSet" else "template"
    )
    return (template or {}).get("spec") or {}


def config_map_of(pod_spec: Mapping[str, Any]) -> str | None:
    """The ConfigMap mounted at ``/opt/sidecar`` in the ``kidecar`` container, if any."""
    containers = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    sidecar = next((c for c in containers if c.get("name") == SIDECAR_CONTAINER), None)
    if sidecar is None:
        return None
    mounts = sidecar.get("volumeMounts") or []
    volume = next((m.get("name") for m in mounts if m.get("mountPath") == CONFIG_DIR), None)
    for v in pod_spec.get("volumes") or []:
        if v.get("name") == volume and v.get("configMap"):
            name = v["configMap"].get("name")
            return str(name) if name else None
    return None


class Cluster:
    """The command's view of one namespace (also the ``ObjectAccess`` of
    :func:`~kidecar_core._store.rollout.change_rollout`)."""

    def __init__(self, store: KubeStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    async def get_object(self, ref: ObjectRef) -> dict[str, JSON] | None:
        return await self.store.get(ref)

    async def patch_object(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        return await self.store.patch(ref, patch)

    async def create_object(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        return await self.store.create(ref, body)

    async def workload_object(self, workload: Workload) -> dict[str, JSON]:
        """The workload; :class:`RolloutRefused` when it (or its kind) does not exist."""
        try:
            found = await self.store.get(workload.ref)
        except ResourceNotServedError:
            k = workload.kind
            raise RolloutRefused(
                f"the cluster does not serve {k.resource}.{k.group}/{k.version}: is "
                f"{'OpenKruiseGame' if k.group == 'game.kruise.io' else 'that API'} installed?"
            ) from None
        if found is None:
            raise RolloutRefused(f"{workload} not found in namespace {self.namespace}")
        return found

    async def pods(self, workload: Workload, obj: Mapping[str, Any]) -> list[dict[str, JSON]]:
        """The workload's pods (by its selector, then by owner), ordinal order."""
        if workload.kind.kind == "GameServerSet":
            selector = f"{OWNER_GSS_LABEL}={workload.name}"
        else:
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        collection = ObjectRef("", "v1", "pods", self.namespace, "-")
        found = await self.store.list(collection, label_selector=selector)
        mine = [p for p in found if Workload.of_pod(p) == workload]

        def order(pod: Mapping[str, Any]) -> tuple[int, str]:
            name = str((pod.get("metadata") or {}).get("name", ""))
            ordinal = workload.ordinal(name)
            return (ordinal if ordinal is not None else 1 << 30, name)

        return sorted(mine, key=order)

    async def sidecar_config(self, workload: Workload, obj: Mapping[str, Any]) -> tuple[str, str]:
        """The sidecar's ``config.yaml`` text and where it came from; :class:`RolloutRefused`
        when the workload has no sidecar injected by ``kidecar inject``."""
        name = config_map_of(pod_template_spec(workload, obj))
        if name is None:
            raise RolloutRefused(
                f"{workload} has no kidecar sidecar (no container {SIDECAR_CONTAINER!r} with a "
                f"ConfigMap at {CONFIG_DIR}): inject it with `kidecar inject`, or pass the "
                "sidecar's config with --config"
            )
        configmap = await self.store.get(ObjectRef.configmap(self.namespace, name))
        text = ((configmap or {}).get("data") or {}).get(CONFIG_KEY)
        if not isinstance(text, str):
            raise RolloutRefused(
                f"ConfigMap {self.namespace}/{name} (the sidecar config of {workload}) has no "
                f"key {CONFIG_KEY}; pass the sidecar's config with --config"
            )
        return text, f"ConfigMap {self.namespace}/{name} key {CONFIG_KEY}"

    async def recorded_version(self, workload: Workload, configmap: str) -> RolloutTarget | None:
        """The version hot_update last recorded for the workload (its ``workload.<kind>.<name>``
        entry in the result ConfigMap), if any: what the fleet runs before its first rollout."""
        found = await self.store.get(ObjectRef.configmap(self.namespace, configmap))
        text = ((found or {}).get("data") or {}).get(f"workload.{workload.key}")
        try:
            data = loads(text) if isinstance(text, str) else None
            return RolloutTarget.from_dict(data, "record") if data else None
        except (ValueError, RolloutError):
            return None

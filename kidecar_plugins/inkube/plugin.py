"""The ``InKube`` storage type: results recorded in the pod and its GameServer.

For a result with ``storageConfig.type: InKube`` this backend contributes writes:

* ``annotationKey`` / ``labelKey`` → the pod's annotation / label := the result;
* ``jsonPath`` → the target (default: the pod's GameServer) at that pointer := the result;
* the ``markerPolicies`` entry whose ``state`` equals the result → ``gameServerOpsState`` (the
  GameServer's ``spec.opsState``), labels, annotations and ``jsonPathConfigs`` on the target.

``spec.opsState`` is guarded: a ``Maintaining`` or ``Kill`` set by someone else (a human, a
controller) is never overridden (``protectedOpsStates``).  The core merges these writes per
object and writes only what changed.
"""

from __future__ import annotations

from typing import Any

from kidecar_core import (
    Event,
    FieldNotIn,
    ObjectRef,
    PodIdentity,
    Result,
    RuntimeView,
    StorageTypeRegistry,
    Write,
    hookimpl,
)
from kidecar_plugins.inkube.config import InKubeConfig, Target

TYPE = "InKube"
KEY = "inKube"


@hookimpl
def kidecar_register_storage_types(register: StorageTypeRegistry) -> None:
    register.storage_type(TYPE, key=KEY, config_class=InKubeConfig)


def target_ref(target: Target | None, who: PodIdentity) -> ObjectRef:
    if target is None:
        return ObjectRef.gameserver(who)
    return ObjectRef(
        target.group,
        target.version,
        target.resource,
        target.namespace or who.namespace,
        target.name or who.name,
    )


def nest(pointer: str, value: Any) -> dict[str, Any]:
    """``/spec/a~1b`` and a value → ``{"spec": {"a/b": value}}`` (a merge patch)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    patch: Any = value
    for part in reversed(parts):
        patch = {part: patch}
    result: dict[str, Any] = patch
    return result


def writes_for(result: Result, cfg: InKubeConfig, who: PodIdentity) -> list[Write]:
    src = f"{result.source}.{KEY}" if result.source else KEY
    pod = ObjectRef.pod(who)
    target = target_ref(cfg.target, who)
    writes: list[Write] = []
    if cfg.annotation_key:
        writes.append(
            Write(
                pod,
                {"metadata": {"annotations": {cfg.annotation_key: result.state}}},
                f"{src}.annotationKey",
            )
        )
    if cfg.label_key:
        writes.append(
            Write(pod, {"metadata": {"labels": {cfg.label_key: result.state}}}, f"{src}.labelKey")
        )
    if cfg.json_path:
        writes.append(Write(target, nest(cfg.json_path, result.state), f"{src}.jsonPath"))
    for i, policy in enumerate(cfg.marker_policies):
        if policy.state != result.state:
            continue
        psrc = f"{src}.markerPolicies[{i}]"
        if policy.game_server_ops_state is not None:
            guards = (
                (FieldNotIn("/spec/opsState", cfg.protected_ops_states),)
                if cfg.protected_ops_states
                else ()
            )
            writes.append(
                Write(
                    # opsState is the pod's own GameServer's, whatever `target` names.
                    ObjectRef.gameserver(who),
                    {"spec": {"opsState": policy.game_server_ops_state}},
                    f"{psrc}.gameServerOpsState",
                    guards=guards,
                    event=Event(
                        "OpsStateChanged",
                        f"kidecar set GameServer spec.opsState to {policy.game_server_ops_state} "
                        f"(result {result.state!r} of {result.plugin})",
                    ),
                )
            )
        if policy.labels:
            writes.append(
                Write(target, {"metadata": {"labels": dict(policy.labels)}}, f"{psrc}.labels")
            )
        if policy.annotations:
            writes.append(
                Write(
                    target,
                    {"metadata": {"annotations": dict(policy.annotations)}},
                    f"{psrc}.annotations",
                )
            )
        for j, jp in enumerate(policy.json_path_configs):
            writes.append(
                Write(target, nest(jp.json_path, jp.value), f"{psrc}.jsonPathConfigs[{j}]")
            )
    return writes


@hookimpl
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    if result.storage is None or result.storage.type != TYPE:
        return None
    cfg = result.storage.get(KEY)
    if cfg is None:
        return None
    return writes_for(result, cfg, runtime.identity)

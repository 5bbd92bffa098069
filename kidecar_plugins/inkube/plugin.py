"""The ``InKube`` storage type: results recorded in the pod and its GameServer.

For a result with ``storageConfig.type: InKube`` this backend contributes writes:

* ``annotationKey`` / ``labelKey`` → the pod's annotation / label := the result;
* ``jsonPath`` → the target (default: the pod's GameServer) at that pointer := the result;
* the ``markerPolicies`` entry whose ``state`` equals the result → ``gameServerOpsState`` (the
  GameServer's ``spec.opsState``), ``labels`` and ``annotations`` on the **Pod** (as the Go
  version did), ``gameServerLabels`` / ``gameServerAnnotations`` on the GameServer, and
  ``jsonPathConfigs`` on the target.

Every write of a GameServer's ``spec.opsState`` (``gameServerOpsState``, and ``jsonPath`` /
``jsonPathConfigs`` at ``/spec/opsState``) carries this storage config's guard
(``protectedOpsStates``): a ``Maintaining`` or ``Kill`` set by someone else is never overridden.
A policy's labels and annotations are a set (``Write.policy_set``): the core removes those the
next state's policy no longer sets.  The core merges these writes per object and writes only
what changed.
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
from kidecar_plugins.inkube.config import OPS_STATE_POINTER, InKubeConfig, MarkerPolicy, Target

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


class _Plan:
    """The writes of one result through one ``inKube`` config."""

    def __init__(self, result: Result, cfg: InKubeConfig, who: PodIdentity) -> None:
        self.result = result
        self.cfg = cfg
        self.src = f"{result.source}.{KEY}" if result.source else KEY
        self.pod = ObjectRef.pod(who)
        self.gameserver = ObjectRef.gameserver(who)
        self.target = target_ref(cfg.target, who)
        self.writes: list[Write] = []

    def guards(self, pointer: str) -> tuple[FieldNotIn, ...]:
        """This config's opsState guard for a write of ``pointer`` on the target (the core adds
        its own default to writes without one; ``protectedOpsStates: []`` is a choice too)."""
        if pointer == OPS_STATE_POINTER and self.cfg.targets_gameserver:
            return (FieldNotIn(OPS_STATE_POINTER, self.cfg.protected_ops_states),)
        return ()

    def meta(self, ref: ObjectRef, kind: str, values: Any, src: str, policy: bool) -> None:
        """``values`` into ``metadata.<kind>`` (labels, annotations) of ``ref``."""
        if values:
            patch = {"metadata": {kind: dict(values)}}
            self.writes.append(Write(ref, patch, src, policy_set=policy))

    def at(self, pointer: str, value: Any, src: str) -> None:
        """``value`` at ``pointer`` of the target."""
        patch = nest(pointer, value)
        self.writes.append(Write(self.target, patch, src, guards=self.guards(pointer)))

    def state_writes(self) -> None:
        cfg, state, src = self.cfg, self.result.state, self.src
        if cfg.annotation_key:
            annotation = {cfg.annotation_key: state}
            self.meta(self.pod, "annotations", annotation, f"{src}.annotationKey", False)
        if cfg.label_key:
            self.meta(self.pod, "labels", {cfg.label_key: state}, f"{src}.labelKey", False)
        if cfg.json_path:
            self.at(cfg.json_path, state, f"{src}.jsonPath")

    def policy_writes(self, i: int, policy: MarkerPolicy) -> None:
        src = f"{self.src}.markerPolicies[{i}]"
        if policy.game_server_ops_state is not None:
            self.ops_state(policy.game_server_ops_state, f"{src}.gameServerOpsState")
        pod, gs = self.pod, self.gameserver
        self.meta(pod, "labels", policy.labels, f"{src}.labels", True)
        self.meta(pod, "annotations", policy.annotations, f"{src}.annotations", True)
        self.meta(gs, "labels", policy.game_server_labels, f"{src}.gameServerLabels", True)
        annotations = policy.game_server_annotations
        self.meta(gs, "annotations", annotations, f"{src}.gameServerAnnotations", True)
        for j, jp in enumerate(policy.json_path_configs):
            self.at(jp.json_path, jp.value, f"{src}.jsonPathConfigs[{j}]")

    def ops_state(self, value: str, src: str) -> None:
        """The pod's own GameServer's ``spec.opsState``, whatever ``target`` names."""
        event = Event(
            "OpsStateChanged",
            f"kidecar set GameServer spec.opsState to {value} "
            f"(result {self.result.state!r} of {self.result.plugin})",
        )
        guards = (FieldNotIn(OPS_STATE_POINTER, self.cfg.protected_ops_states),)
        patch = {"spec": {"opsState": value}}
        self.writes.append(Write(self.gameserver, patch, src, guards=guards, event=event))


def writes_for(result: Result, cfg: InKubeConfig, who: PodIdentity) -> list[Write]:
    """The writes ``result`` asks for through ``cfg`` (see the module docstring)."""
    plan = _Plan(result, cfg, who)
    plan.state_writes()
    for i, policy in enumerate(cfg.marker_policies):
        if policy.state == result.state:
            plan.policy_writes(i, policy)
    return plan.writes


@hookimpl
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    if result.storage is None or result.storage.type != TYPE:
        return None
    cfg = result.storage.get(KEY)
    if cfg is None:
        return None
    return writes_for(result, cfg, runtime.identity)

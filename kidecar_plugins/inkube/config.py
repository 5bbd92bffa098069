"""Options of the ``InKube`` storage type (``storageConfig.inKube``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core import (
    FieldError,
    annotations_size_problem,
    field,
    label_value_problem,
    qualified_name_problem,
)

OPS_STATES = ("None", "WaitToBeDeleted", "Allocated", "Maintaining", "Kill")
"""The opsStates OpenKruiseGame knows."""


def check_key(key: str, what: str) -> None:
    """Validate a label/annotation key (``[prefix/]name``) the way the API server would."""
    problem = qualified_name_problem(key)
    if problem:
        raise FieldError(what, problem)
    prefix, _, name = key.rpartition("/")
    is_label = what.startswith("labels") or what == "labelKey"
    if is_label and prefix == "game.kruise.io" and name.startswith("gs-"):
        raise FieldError(
            what, f"{key!r}: OpenKruiseGame owns game.kruise.io/gs-* labels; use another key"
        )


def check_pointer(pointer: str, what: str) -> None:
    if not pointer.startswith("/") or pointer == "/":
        raise FieldError(what, f"{pointer!r} is not a JSON pointer (RFC 6901), e.g. /spec/field")
    first = pointer.split("/")[1]
    if first == "status":
        raise FieldError(what, "kidecar never writes status (the controller owns it)")
    if first in ("apiVersion", "kind") or pointer.startswith(
        ("/metadata/name", "/metadata/namespace")
    ):
        raise FieldError(what, f"{pointer!r} cannot be written")


@attrs.frozen
class JsonPathValue:
    """A value written at a JSON pointer of the target."""

    json_path: str = field(key="jsonPath", doc="RFC 6901 pointer, e.g. `/spec/deletionPriority`.")
    value: Any = field(doc="Any JSON value (string, number, boolean, object, list).")

    def __attrs_post_init__(self) -> None:
        check_pointer(self.json_path, "jsonPath")


@attrs.frozen
class MarkerPolicy:
    """Extra writes when the result equals ``state``."""

    state: str = field(doc="The result (probe state) this policy matches, e.g. `WaitToBeDeleted`.")
    game_server_ops_state: str | None = field(
        key="gameServerOpsState",
        default=None,
        doc="Set the GameServer's `spec.opsState` to this (None, WaitToBeDeleted, Allocated, "
        "Maintaining, Kill).",
    )
    labels: Mapping[str, str] = field(factory=dict, doc="Labels set on the target object.")
    annotations: Mapping[str, str] = field(
        factory=dict, doc="Annotations set on the target object."
    )
    json_path_configs: tuple[JsonPathValue, ...] = field(
        key="jsonPathConfigs", factory=tuple, doc="Values set at JSON pointers of the target."
    )

    def __attrs_post_init__(self) -> None:
        if self.game_server_ops_state is not None and self.game_server_ops_state not in OPS_STATES:
            raise FieldError(
                "gameServerOpsState",
                f"must be one of {', '.join(OPS_STATES)}; got {self.game_server_ops_state!r}",
            )
        check_metadata(self.labels, self.annotations)


def check_metadata(labels: Mapping[str, Any], annotations: Mapping[str, Any]) -> None:
    """Validate static labels and annotations, keys *and* values, the way the API server would
    at the first write (Kubernetes' label and annotation rules), so ``check-config`` catches them.

    :raises FieldError: naming the first key whose key or value the API server would refuse.
    """
    for k, v in labels.items():
        check_key(k, f"labels.{k}")
        problem = label_value_problem(v)
        if problem:
            raise FieldError(f"labels.{k}", problem)
    for k in annotations:
        check_key(k, f"annotations.{k}")
    problem = annotations_size_problem(annotations)
    if problem:
        raise FieldError("annotations", problem)


@attrs.frozen
class Target:
    """Another object to write (default: this pod's GameServer)."""

    group: str = field(default="game.kruise.io", doc='API group (`""` for core).')
    version: str = field(default="v1alpha1", doc="API version.")
    resource: str = field(default="gameservers", doc="Resource (plural), e.g. `gameservers`.")
    namespace: str | None = field(default=None, doc="Namespace (default: the pod's).")
    name: str | None = field(
        default=None, doc="Name (default: the pod's); templates like `${SELF:POD_NAME}` work."
    )


@attrs.frozen
class InKubeConfig:
    """Record results in Kubernetes objects: the pod and (by default) its GameServer."""

    annotation_key: str | None = field(
        key="annotationKey", default=None, doc="Pod annotation that receives the result."
    )
    label_key: str | None = field(
        key="labelKey",
        default=None,
        doc="Pod label that receives the result (the result must be a valid label value).",
    )
    json_path: str | None = field(
        key="jsonPath",
        default=None,
        doc="RFC 6901 pointer on the target that receives the result, e.g. `/spec/someField`.",
    )
    target: Target | None = field(
        default=None, doc="Object that `jsonPath` and the policies write (default: GameServer)."
    )
    marker_policies: tuple[MarkerPolicy, ...] = field(
        key="markerPolicies",
        aliases=("markerPolices",),
        factory=tuple,
        doc="State → extra writes (the Go spelling `markerPolices` is accepted).",
    )
    protected_ops_states: tuple[str, ...] = field(
        key="protectedOpsStates",
        factory=lambda: ("Maintaining", "Kill"),
        doc="opsStates set by someone else that kidecar never overrides; `[]` to allow it.",
    )

    def __attrs_post_init__(self) -> None:
        if self.annotation_key is not None:
            check_key(self.annotation_key, "annotationKey")
        if self.label_key is not None:
            check_key(self.label_key, "labelKey")
        if self.json_path is not None:
            check_pointer(self.json_path, "jsonPath")

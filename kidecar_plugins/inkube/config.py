"""Options of the ``InKube`` storage type (``storageConfig.inKube``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from kidecar_core import (
    KNOWN_OPS_STATES,
    FieldError,
    annotations_size_problem,
    field,
    label_value_problem,
    pointer_value_problem,
    qualified_name_problem,
)

OPS_STATES = KNOWN_OPS_STATES
"""The opsStates OpenKruiseGame knows (others are accepted, with a warning)."""

OPS_STATE_POINTER = "/spec/opsState"
LABELS_POINTER = "/metadata/labels/"


def check_key(key: str, what: str) -> None:
    """Validate a label/annotation key (``[prefix/]name``) the way the API server would."""
    problem = qualified_name_problem(key)
    if problem:
        raise FieldError(what, problem)
    prefix, _, name = key.rpartition("/")
    is_label = what.startswith(("labels", "gameServerLabels")) or what == "labelKey"
    if is_label and prefix == "game.kruise.io" and name.startswith("gs-"):
        raise FieldError(
            what, f"{key!r}: OpenKruiseGame owns game.kruise.io/gs-* labels; use another key"
        )


def check_pointer(pointer: str, what: str) -> None:
    if not pointer.startswith("/") or pointer == "/":
        raise FieldError(what, f"{pointer!r} is not a JSON pointer (RFC 6901), e.g. /spec/field")
    if "" in pointer.split("/")[1:]:
        raise FieldError(
            what, f"{pointer!r} has an empty segment (// or a trailing /); the API server "
            "would refuse the write: e.g. /spec/field"
        )  # fmt: skip
    if re.search("~(?![01])", pointer):
        raise FieldError(
            what, f"{pointer!r}: '~' must be followed by 0 ('~') or 1 ('/') in a JSON pointer "
            "(RFC 6901 section 3), e.g. /metadata/labels/example.com~1key"
        )  # fmt: skip
    first = pointer.split("/")[1]
    if first == "status":
        raise FieldError(what, "kidecar never writes status (the controller owns it)")
    if first in ("apiVersion", "kind") or pointer.startswith(
        ("/metadata/name", "/metadata/namespace")
    ):
        raise FieldError(what, f"{pointer!r} cannot be written")


def check_value_at(pointer: str, value: Any, what: str) -> None:
    """``value`` at ``pointer`` as the API server would judge it (a string cannot replace
    ``/spec`` or ``/metadata/labels``; a label must be a label); raises :class:`FieldError`."""
    problem = pointer_value_problem(pointer, value)
    if problem:
        raise FieldError(what, problem)


@attrs.frozen
class JsonPathValue:
    """A value written at a JSON pointer of the target."""

    json_path: str = field(key="jsonPath", doc="RFC 6901 pointer, e.g. `/spec/deletionPriority`.")
    value: Any = field(doc="Any JSON value (string, number, boolean, object, list).")

    def __attrs_post_init__(self) -> None:
        check_pointer(self.json_path, "jsonPath")
        check_value_at(self.json_path, self.value, "value")


@attrs.frozen
class MarkerPolicy:
    """Extra writes when the result equals ``state``.

    ``labels`` and ``annotations`` go to the **Pod**, as in the Go version (where
    ``controller.kubernetes.io/pod-deletion-cost`` and label selectors work);
    ``gameServerLabels`` / ``gameServerAnnotations`` go to the pod's GameServer;
    ``jsonPathConfigs`` to the ``target`` (default: the GameServer).  The labels and annotations
    of a policy are a set: when the state changes, those the previous state's policy set and the
    new one's does not are removed (Kruise PodProbeMarker's rule).
    """

    state: str = field(doc="The result (probe state) this policy matches, e.g. `WaitToBeDeleted`.")
    game_server_ops_state: str | None = field(
        key="gameServerOpsState",
        default=None,
        doc="Set the GameServer's `spec.opsState` to this: `None`, `WaitToBeDeleted`, "
        "`Allocated`, `Maintaining`, `Kill`; another value (OKG stores any string) is written "
        "as given, with a warning.",
    )
    labels: Mapping[str, str] = field(
        factory=dict, doc="Labels set on the **Pod** (the Go version's target)."
    )
    annotations: Mapping[str, str] = field(
        factory=dict,
        doc="Annotations set on the **Pod**, e.g. `controller.kubernetes.io/pod-deletion-cost`.",
    )
    game_server_labels: Mapping[str, str] = field(
        key="gameServerLabels", factory=dict, doc="Labels set on the pod's GameServer."
    )
    game_server_annotations: Mapping[str, str] = field(
        key="gameServerAnnotations", factory=dict, doc="Annotations set on the pod's GameServer."
    )
    json_path_configs: tuple[JsonPathValue, ...] = field(
        key="jsonPathConfigs", factory=tuple, doc="Values set at JSON pointers of the target."
    )

    def __attrs_post_init__(self) -> None:
        check_metadata(self.labels, self.annotations)
        check_metadata(self.game_server_labels, self.game_server_annotations, "gameServer")

    def config_warnings(self) -> Iterator[tuple[str, str]]:
        if self.game_server_ops_state is not None:
            yield from _custom("gameServerOpsState", self.game_server_ops_state)


def _custom(where: str, value: Any) -> Iterator[tuple[str, str]]:
    if value not in OPS_STATES:
        yield (
            where,
            f"{value!r} is not an opsState OpenKruiseGame knows ({', '.join(OPS_STATES)}); "
            "it is written as given (OKG stores any string but acts only on those)",
        )


def check_metadata(
    labels: Mapping[str, Any], annotations: Mapping[str, Any], prefix: str = ""
) -> None:
    """Validate static labels and annotations, keys *and* values, the way the API server would
    at the first write (Kubernetes' label and annotation rules), so ``check-config`` catches them.

    ``prefix`` names the keys' family (``gameServer``: ``gameServerLabels``, ...).

    :raises FieldError: naming the first key whose key or value the API server would refuse.
    """
    label_key = f"{prefix}Labels" if prefix else "labels"
    annotation_key = f"{prefix}Annotations" if prefix else "annotations"
    for k, v in labels.items():
        check_key(k, f"{label_key}.{k}")
        problem = label_value_problem(v)
        if problem:
            raise FieldError(f"{label_key}.{k}", problem)
    for k in annotations:
        check_key(k, f"{annotation_key}.{k}")
    problem = annotations_size_problem(annotations)
    if problem:
        raise FieldError(annotation_key, problem)


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
    """Record results in Kubernetes objects: the pod and (by default) its GameServer.

    **Where writes land.** ``annotationKey``, ``labelKey`` and a policy's ``labels`` /
    ``annotations`` on the **Pod** (the Go version's semantics: pod-deletion-cost and label
    selectors work there); ``gameServerOpsState``, ``gameServerLabels`` and
    ``gameServerAnnotations`` on the pod's **GameServer**; ``jsonPath`` and ``jsonPathConfigs`` on
    the ``target`` (default: the GameServer).  A write whose object does not exist (a
    Deployment's pod has no GameServer) waits for it; after a minute it is reported: a warning in
    the log, a ``WriteCannotLand`` Event and ``persistence.missing`` in ``/readyz``.

    **Policy writes are a set, not a history** (Kruise PodProbeMarker's rule): when the state
    changes, the labels and annotations the previous state's policy set and the new state's
    policy does not are removed, once.  ``jsonPathConfigs`` values stay until set again.

    **Guards protect the field.** The GameServer's ``spec.opsState`` is guarded whatever writes it
    (``gameServerOpsState``, ``jsonPath`` or ``jsonPathConfigs`` at ``/spec/opsState``, an
    override, a plugin): a value in ``protectedOpsStates`` that someone else set is never
    overwritten.  Values other than the five OKG knows are written as given, with a warning.

    **When another controller writes the same fields.** kidecar keeps what it wrote true: it
    watches the Pod and the GameServer, and when another writer changes a field kidecar wrote,
    kidecar writes it back at once (one request, conditional on the watched
    ``resourceVersion``), unless a guard gives the field to a human.  A field changed back 3
    times within 2 minutes is *contested*: logged once with the other writer's field manager, a
    ``FieldContested`` Event, ``persistence.contested`` in ``/readyz`` and the
    ``kidecar_persist_contested_fields`` metric; kidecar keeps re-asserting it, waiting 1, 2, 4 …
    up to 30 s between attempts.
    """

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
        doc="RFC 6901 pointer on the target that receives the result, e.g. `/spec/someField` "
        "(a field, not a whole section such as `/spec`; under `/metadata/labels/` the result "
        "must be a label value).",
    )
    target: Target | None = field(
        default=None,
        doc="Object that `jsonPath` and `jsonPathConfigs` write (default: the pod's GameServer).",
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
        doc="GameServer opsStates set by someone else that this storage config's writes never "
        "override, whichever key writes `/spec/opsState`; `[]` lets them override any.",
    )

    def __attrs_post_init__(self) -> None:
        if self.annotation_key is not None:
            check_key(self.annotation_key, "annotationKey")
        if self.label_key is not None:
            check_key(self.label_key, "labelKey")
        if self.json_path is not None:
            check_pointer(self.json_path, "jsonPath")
            # The result is a string: any state's structural problem shows with a plain one.
            check_value_at(self.json_path, "state", "jsonPath")
        self._check_label_states()

    def _check_label_states(self) -> None:
        """A result written as a label must be a label value; the states config names (those of
        ``markerPolicies``) are checked here, others are dropped with a log line at the write."""
        via = "labelKey" if self.label_key is not None else None
        if self.json_path is not None and self.json_path.startswith(LABELS_POINTER):
            via = "jsonPath"
        for i, policy in enumerate(self.marker_policies):
            problem = via and label_value_problem(policy.state)
            if problem:
                raise FieldError(
                    f"markerPolicies[{i}].state",
                    f"{via} writes the result as a label, and this state is not a label value: "
                    f"{problem}; the API server would refuse every write of it",
                )

    @property
    def targets_gameserver(self) -> bool:
        t = self.target
        return t is None or (t.group, t.resource) == ("game.kruise.io", "gameservers")

    def config_warnings(self) -> Iterator[tuple[str, str]]:
        if not self.targets_gameserver:
            return
        for i, policy in enumerate(self.marker_policies):
            for j, jp in enumerate(policy.json_path_configs):
                if jp.json_path == OPS_STATE_POINTER:
                    where = f"markerPolicies[{i}].jsonPathConfigs[{j}].value"
                    yield from _custom(where, jp.value)

"""Objects kidecar writes to, and the interface of the stores that hold them.

Plugins and storage backends speak in terms of "merge-patch this object"; where the object lives
is the business of an :class:`ObjectStore`: the Kubernetes API (:mod:`kidecar_core._store.kube`) or
the local state file (:mod:`kidecar_core._store.local`).  Both have the same semantics: RFC 7386
merge patches, ``metadata.resourceVersion`` in a patch as a precondition (409 when stale), 404 for
a missing object, optional create for objects kidecar owns (its result ConfigMap), a strategic
merge of a pod's ``status.conditions`` by ``type`` through the status subresource
(``pod_probe``'s condition writes), and a watch of one object by name that reports every change,
whoever made it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import attrs

from kidecar_core.errors import PersistError

JSON = Any
"""A JSON value (dict, list, str, int, float, bool or None)."""

FIELD_MANAGER = "kidecar"
"""The field manager kidecar's writes are recorded under (``managedFields[].manager``): how
another writer of the same field tells kidecar's writes apart, and how kidecar tells theirs."""


@attrs.frozen
class PodIdentity:
    """Who this sidecar runs for: its pod's name and namespace (from the downward API)."""

    name: str
    namespace: str


@attrs.frozen
class ObjectRef:
    """A Kubernetes object addressed the way the API addresses it."""

    group: str
    version: str
    resource: str
    namespace: str
    name: str

    @classmethod
    def pod(cls, who: PodIdentity) -> ObjectRef:
        return cls("", "v1", "pods", who.namespace, who.name)

    @classmethod
    def gameserver(cls, who: PodIdentity) -> ObjectRef:
        """The pod's GameServer: same name and namespace (OpenKruiseGame's rule)."""
        return cls("game.kruise.io", "v1alpha1", "gameservers", who.namespace, who.name)

    @classmethod
    def configmap(cls, namespace: str, name: str) -> ObjectRef:
        return cls("", "v1", "configmaps", namespace, name)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{kind}/{self.namespace}/{self.name}"


@attrs.frozen
class Event:
    """A Kubernetes Event (``Normal`` or ``Warning``) about the pod, or about ``about``."""

    reason: str
    message: str
    type: str = "Normal"
    about: ObjectRef | None = None
    """The object the Event is about (e.g. the pod's workload); ``None``: the pod itself."""


@attrs.frozen
class Observation:
    """One thing a watch (:meth:`ObjectStore.watch`) saw about an object.

    Either a state: ``object`` is the object as it is now (a plain dict; ``None`` when it does
    not exist or was deleted), ``relisted`` is True when the state was read afresh (the start of
    the watch, or a relist after the watch fell too far behind) rather than carried by an event;
    or a problem: ``error`` says why the watch cannot see the object for now (then ``object`` is
    meaningless).  A watch recovers from problems by itself, with backoff; its next state after
    a problem is fresh.
    """

    object: dict[str, JSON] | None = None
    error: PersistError | None = None
    relisted: bool = False

    @property
    def resource_version(self) -> str | None:
        """``metadata.resourceVersion`` of the object (``None`` when absent or not a string)."""
        if self.object is None:
            return None
        rv = (self.object.get("metadata") or {}).get("resourceVersion")
        return rv if isinstance(rv, str) else None


class ObjectStore(Protocol):
    """Where objects live.  Implementations raise the errors of :mod:`kidecar_core.errors`."""

    description: str
    """For logs: ``kube-apiserver https://...`` or ``local state file x.json``."""

    async def get(self, ref: ObjectRef) -> dict[str, JSON] | None:
        """The object, or ``None`` when it does not exist."""
        ...

    async def patch(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Apply an RFC 7386 merge patch; return the object after the patch."""
        ...

    async def patch_status(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> dict[str, JSON]:
        """Patch the object's ``status`` subresource; a pod's ``status.conditions`` entries are
        merged by ``type`` (strategic merge), so other conditions stay as they are."""
        ...

    async def list(self, ref: ObjectRef) -> list[dict[str, JSON]]:
        """The objects of ``ref``'s resource in ``ref.namespace`` (``ref.name`` is ignored)."""
        ...

    async def create(self, ref: ObjectRef, body: Mapping[str, JSON]) -> dict[str, JSON]:
        """Create the object (``ConflictError`` when it already exists)."""
        ...

    async def record_event(self, about: ObjectRef, event: Event) -> None:
        """Record an Event about ``about`` (the pod)."""
        ...

    def watch(self, ref: ObjectRef) -> AsyncIterator[Observation]:
        """Follow one object by name: its state now, then after every change, in order.

        The first observation is the current state (``relisted``); then one per change, whoever
        made it (kidecar's own writes included).  Problems (unreachable, 403, ...) are reported
        as observations with ``error`` and retried with backoff; the iterator ends only when the
        consumer stops iterating (or the store is closed).
        """
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386 JSON merge patch: ``patch`` applied to ``target``, returning a new value that
    shares no list or object with ``patch`` (the caller may reuse or change its patch)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, JSON] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_by_type(current: Any, patch: list[Any]) -> list[Any]:
    """Strategic merge of a list of conditions: entries of ``patch`` are merged into the entry of
    ``current`` with the same ``type`` (appended when there is none); others stay as they are."""
    merged = [dict(c) for c in current if isinstance(c, dict)] if isinstance(current, list) else []
    for entry in patch:
        if not isinstance(entry, Mapping):
            continue
        at = next((i for i, c in enumerate(merged) if c.get("type") == entry.get("type")), None)
        if at is None:
            merged.append(merge_patch({}, entry))
        else:
            merged[at] = merge_patch(merged[at], entry)
    return merged

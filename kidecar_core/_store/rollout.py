"""The rollout document that ``kidecar rollout`` writes and every sidecar of the workload follows.

**Where it lives.**  One ConfigMap per namespace, ``kidecar-rollout``, with one data key per
workload, ``<kind>.<name>`` (``gameserverset.game``), holding the JSON of :class:`Rollout`::

    {"workload": "gameserverset/game", "revision": 3, "version": "v2", "url": "https://...",
     "sha256": null, "maxUnavailable": "20%", "slots": 6, "partition": 0, "when": "idle",
     "paused": false, "pauseReason": "", "attempt": 1,
     "previous": {"version": "v1", "url": "https://...", "sha256": null},
     "startedAt": "2025-01-01T10:00:00Z", "updatedAt": "2025-01-01T10:00:00Z"}

Why a ConfigMap and why one per namespace (docs/rollout.md says more): no CRD to install (OKG
users on serverless clusters often cannot install cluster-scoped objects), and a fixed name lets
the sidecar's Role grant ``get``/``patch`` on that ConfigMap only (``resourceNames``), as it does
for ``sidecar-result``; a name per workload could not be pinned. Writes are read-modify-write
with ``metadata.resourceVersion`` as precondition (:func:`change_rollout`), so the CLI and the
sidecars never overwrite each other.

**Progress.**  Each pod reports its own progress in its annotation ``rollout.kidecar.io/status``
(:class:`PodProgress`), written by its sidecar like any other result: ``kidecar rollout status``
lists the workload's pods and reads them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import attrs

from kidecar_core._store.objects import JSON, ObjectRef
from kidecar_core._store.validation import is_dns1123_label, is_dns1123_subdomain
from kidecar_core.errors import ConflictError, KidecarError

ROLLOUT_CONFIGMAP = "kidecar-rollout"
"""Name of the ConfigMap (in the workload's namespace) holding every workload's rollout."""

PROGRESS_ANNOTATION = "rollout.kidecar.io/status"
"""Pod annotation where a sidecar reports its rollout progress (:class:`PodProgress`)."""

OWNER_GSS_LABEL = "game.kruise.io/owner-gss"
POD_TEMPLATE_HASH = "pod-template-hash"
_ORDINAL = re.compile(r"-(\d+)$")
_COUNT = re.compile(r"([0-9]+)(%?)")

When = Literal["idle", "always"]
WHEN_VALUES: tuple[When, ...] = ("idle", "always")


class RolloutError(KidecarError):
    """A rollout request or document that cannot be used; the message says why."""


class RolloutUsageError(RolloutError):
    """Bad input on the command line (exit code 2): a malformed workload, version, URL, ..."""


class RolloutRefused(RolloutError):
    """The cluster's state refuses the request (exit code 1): the workload does not exist, a
    rollout is already running, nothing to undo, ..."""


def loads(text: str) -> Any:
    """``json.loads`` whose every failure is a :class:`ValueError`: text read from the cluster
    (anyone who can write an annotation or a ConfigMap wrote it) may nest deeper than Python
    recurses (``RecursionError``) or hold numbers beyond a float (``1e400`` is ``inf``)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def utc_now() -> str:
    """The current time as the API shows it: ``2025-01-01T10:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- workloads ------------------------------------------------------------------------------------


@attrs.frozen
class WorkloadKind:
    """A kind of workload a rollout can target, as the API serves it."""

    kind: str
    group: str
    version: str
    resource: str
    ordinals: bool
    """Its pods are named ``<name>-<ordinal>`` (so ``--partition`` applies)."""


KINDS: Mapping[str, WorkloadKind] = {
    "gameserverset": WorkloadKind(
        "GameServerSet", "game.kruise.io", "v1alpha1", "gameserversets", True
    ),
    "statefulset": WorkloadKind("StatefulSet", "apps", "v1", "statefulsets", True),
    "deployment": WorkloadKind("Deployment", "apps", "v1", "deployments", False),
}
ALIASES: Mapping[str, str] = {
    "gss": "gameserverset",
    "gameserversets": "gameserverset",
    "sts": "statefulset",
    "statefulsets": "statefulset",
    "deploy": "deployment",
    "deployments": "deployment",
}
"""kubectl's short and plural names."""


@attrs.frozen
class Workload:
    """A workload in a namespace: ``gameserverset/game`` in ``prod``."""

    kind: WorkloadKind
    name: str
    namespace: str

    @classmethod
    def parse(cls, text: str, namespace: str) -> Workload:
        """``KIND/NAME`` (kubectl's spelling: ``gameserverset/game``, ``gss/game``,
        ``deployment/web``, ``sts/db``); :class:`RolloutError` when it is not one."""
        kind_text, sep, name = text.strip().partition("/")
        kind_key = ALIASES.get(kind_text.lower(), kind_text.lower())
        if not sep or kind_key not in KINDS:
            kinds = ", ".join(f"{k}/NAME" for k in KINDS)
            raise RolloutUsageError(f"workload {text!r}: expected {kinds}")
        if not is_dns1123_subdomain(name):
            raise RolloutUsageError(f"workload {text!r}: {name!r} is not a valid object name")
        if not is_dns1123_label(namespace):
            raise RolloutUsageError(
                f"namespace {namespace!r} is not a namespace name (RFC 1123 label: lower-case "
                "letters, digits and '-', at most 63 characters)"
            )
        return cls(KINDS[kind_key], name, namespace)

    @classmethod
    def of_pod(cls, pod: Mapping[str, Any]) -> Workload | None:
        """The rollout-capable workload owning ``pod``, or ``None``.

        OpenKruiseGame labels its pods ``game.kruise.io/owner-gss``; otherwise the controller
        ``ownerReference`` names a StatefulSet, or a ReplicaSet whose Deployment is its name
        minus ``-<pod-template-hash>`` (no ReplicaSet read, so no RBAC for it).
        """
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        labels = meta.get("labels") or {}
        if labels.get(OWNER_GSS_LABEL):
            return cls(KINDS["gameserverset"], str(labels[OWNER_GSS_LABEL]), namespace)
        for ref in meta.get("ownerReferences") or []:
            if not ref.get("controller") or ref.get("apiVersion") != "apps/v1":
                continue
            kind, name = ref.get("kind"), str(ref.get("name") or "")
            if kind == "StatefulSet" and name:
                return cls(KINDS["statefulset"], name, namespace)
            pod_hash = labels.get(POD_TEMPLATE_HASH)
            if kind == "ReplicaSet" and pod_hash and name.endswith(f"-{pod_hash}"):
                return cls(KINDS["deployment"], name[: -len(pod_hash) - 1], namespace)
        return None

    @property
    def key(self) -> str:
        """Its data key in the rollout ConfigMap: ``gameserverset.game``."""
        return f"{self.kind.kind.lower()}.{self.name}"

    @property
    def ref(self) -> ObjectRef:
        k = self.kind
        return ObjectRef(k.group, k.version, k.resource, self.namespace, self.name)

    def ordinal(self, pod_name: str) -> int | None:
        """The ordinal of ``pod_name`` (``game-7`` → 7) for kinds with ordinals, else ``None``."""
        if not self.kind.ordinals or not pod_name.startswith(f"{self.name}-"):
            return None
        match = _ORDINAL.search(pod_name)
        return int(match.group(1)) if match else None

    def __str__(self) -> str:
        return f"{self.kind.kind.lower()}/{self.name}"


def configmap_ref(namespace: str) -> ObjectRef:
    return ObjectRef.configmap(namespace, ROLLOUT_CONFIGMAP)


# -- maxUnavailable -------------------------------------------------------------------------------


def parse_max_unavailable(text: str) -> str:
    """``N`` (pods, ≥ 1) or ``P%`` (1-100): the normalised text; :class:`RolloutError` otherwise.

    The same spelling as ``maxUnavailable`` of Kubernetes and Kruise rolling updates.
    """
    found = _COUNT.fullmatch(text.strip())  # ASCII digits: str.isdigit() takes '²' and '٣'
    number, percent = (int(found.group(1)), found.group(2)) if found else (0, "")
    if number < 1 or (percent and number > 100):
        raise RolloutUsageError(
            f"--max-unavailable {text!r}: expected a number of pods (>= 1) or a percentage "
            "(1%-100%)"
        )
    return f"{number}{percent}"


def resolve_max_unavailable(text: str, replicas: int) -> int:
    """How many pods may update at once: a percentage of ``replicas`` rounded down (the rule of
    Kubernetes' ``maxUnavailable``), never less than 1."""
    value = parse_max_unavailable(text)
    if value.endswith("%"):
        return max(1, math.floor(replicas * int(value[:-1]) / 100))
    return int(value)


# -- the document ---------------------------------------------------------------------------------


@attrs.frozen
class RolloutTarget:
    """A version to apply: what ``POST /hot-update`` takes."""

    version: str
    url: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, JSON]:
        return {"version": self.version, "url": self.url, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RolloutTarget:
        if not isinstance(data, Mapping):
            raise RolloutError(f"{where}: expected an object")
        version, url, sha = data.get("version"), data.get("url"), data.get("sha256")
        if not isinstance(version, str) or not isinstance(url, str) or not version or not url:
            raise RolloutError(f"{where}: version and url must be non-empty strings")
        if sha is not None and not isinstance(sha, str):
            raise RolloutError(f"{where}.sha256: must be a string or null")
        return cls(version, url, sha or None)

    def same_file(self, version: str | None, url: str | None, sha256: str | None) -> bool:
        """Whether an applied update (version, url, sha256) is this target."""
        if version != self.version or url != self.url:
            return False
        return self.sha256 is None or not sha256 or sha256 == self.sha256

    def __str__(self) -> str:
        return self.version


@attrs.frozen
class Rollout:
    """The desired version of one workload and how to get every pod there."""

    workload: str
    revision: int
    target: RolloutTarget
    previous: RolloutTarget | None
    max_unavailable: str
    slots: int
    """``max_unavailable`` resolved against the workload's replicas at start (or resume)."""
    partition: int = 0
    when: When = "idle"
    paused: bool = False
    pause_reason: str = ""
    attempt: int = 1
    """Bumped by ``resume``: pods that failed an earlier attempt try again."""
    started_at: str = ""
    updated_at: str = ""

    @property
    def run_key(self) -> tuple[int, int, str]:
        """``(revision, attempt, startedAt)``: one run of the rollout, what a pod's failure
        pauses. ``startedAt`` tells apart a document deleted and started again, whose revisions
        count from 1 again."""
        return (self.revision, self.attempt, self.started_at)

    def desired_for(self, ordinal: int | None) -> RolloutTarget | None:
        """The target of the pod with ``ordinal``: pods below ``partition`` keep the previous
        version (Kruise's partition); ``None`` means "leave it as it is"."""
        if self.partition and ordinal is not None and ordinal < self.partition:
            return self.previous
        return self.target

    def to_json(self) -> str:
        return json.dumps(
            {
                "workload": self.workload,
                "revision": self.revision,
                **self.target.to_dict(),
                "maxUnavailable": self.max_unavailable,
                "slots": self.slots,
                "partition": self.partition,
                "when": self.when,
                "paused": self.paused,
                "pauseReason": self.pause_reason,
                "attempt": self.attempt,
                "previous": self.previous.to_dict() if self.previous else None,
                "startedAt": self.started_at,
                "updatedAt": self.updated_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: Any, where: str) -> Rollout:
        """Parse a stored document; :class:`RolloutError` naming ``where`` when it is not one."""
        try:
            data = loads(text) if isinstance(text, str) else None
        except ValueError as e:
            raise RolloutError(f"{where}: not JSON: {e}") from None
        if not isinstance(data, dict):
            raise RolloutError(f"{where}: expected a JSON object")
        return _rollout_from(data, where)


def _int(data: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RolloutError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _rollout_from(data: Mapping[str, Any], where: str) -> Rollout:
    when = data.get("when", "idle")
    if when not in WHEN_VALUES:
        raise RolloutError(f"{where}.when: expected idle or always, got {when!r}")
    previous = data.get("previous")
    paused = data.get("paused", False)
    if not isinstance(paused, bool):
        raise RolloutError(f"{where}.paused: expected true or false, got {paused!r}")
    try:
        max_unavailable = parse_max_unavailable(str(data.get("maxUnavailable", "1")))
    except RolloutError as e:
        raise RolloutError(f"{where}.maxUnavailable: {e}") from None
    return Rollout(
        workload=str(data.get("workload", "")),
        revision=_int(data, "revision", where, 1),
        target=RolloutTarget.from_dict(data, where),
        previous=None if previous is None else RolloutTarget.from_dict(previous, where),
        max_unavailable=max_unavailable,
        slots=_int(data, "slots", where, 1),
        partition=_int(data, "partition", where, 0),
        when=when,
        paused=paused,
        pause_reason=str(data.get("pauseReason") or ""),
        attempt=_int(data, "attempt", where, 1),
        started_at=str(data.get("startedAt") or ""),
        updated_at=str(data.get("updatedAt") or ""),
    )


# -- a pod's progress -----------------------------------------------------------------------------


class RolloutPhase:
    """Phases a pod reports (:class:`PodProgress`)."""

    UPDATED = "Updated"
    """At the rollout's target."""
    UPDATING = "Updating"
    """Holds a slot: applying the update or watching its probe for the verification window."""
    FAILED = "Failed"
    """The update failed, or its probe turned Failed in the window (and it rolled back)."""
    WAITING_FOR_IDLE = "WaitingForIdle"
    """``when: idle`` and its GameServer is Allocated."""
    PENDING = "Pending"
    """Waiting for a slot, or the rollout is paused."""
    HELD = "Held"
    """Below the partition, with no previous version to return to: left as it is."""
    ALL = (UPDATED, UPDATING, FAILED, WAITING_FOR_IDLE, PENDING, HELD)


@attrs.frozen
class PodProgress:
    """What a sidecar reports in its pod's ``rollout.kidecar.io/status`` annotation."""

    revision: int
    attempt: int
    target: str
    version: str | None
    """The version applied now (``None``: none through kidecar yet)."""
    phase: str
    message: str = ""
    at: str = ""

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> PodProgress | None:
        """Parse an annotation; ``None`` when it is missing or unreadable."""
        try:
            data = loads(text)
            return cls(
                revision=int(data["revision"]),
                attempt=int(data.get("attempt", 1)),
                target=str(data["target"]),
                version=None if data.get("version") is None else str(data["version"]),
                phase=str(data["phase"]),
                message=str(data.get("message", "")),
                at=str(data.get("at", "")),
            )
        except (TypeError, ValueError, KeyError, ArithmeticError):  # 1e400: int(inf)
            return None

    def done(self, rollout: Rollout, target: RolloutTarget | None) -> bool:
        """At ``target`` for this revision of ``rollout``."""
        return (
            self.revision == rollout.revision
            and self.phase == RolloutPhase.UPDATED
            and (target is None or self.version == target.version)
        )


# -- reading and changing the document --------------------------------------------------------


class ObjectAccess(Protocol):
    """Direct reads and writes (the runtime's ``get_object``/``patch_object``/``create_object``,
    or the CLI's store): conditional writes need an immediate answer."""

    def get_object(self, ref: ObjectRef) -> Awaitable[dict[str, JSON] | None]: ...

    def patch_object(self, ref: ObjectRef, patch: Mapping[str, JSON]) -> Awaitable[Any]: ...

    def create_object(self, ref: ObjectRef, body: Mapping[str, JSON]) -> Awaitable[Any]: ...


def rollout_in(configmap: Mapping[str, Any] | None, workload: Workload) -> Rollout | None:
    """The workload's rollout in the ConfigMap (``None`` when it has none)."""
    text = ((configmap or {}).get("data") or {}).get(workload.key)
    if text is None:
        return None
    where = f"ConfigMap {workload.namespace}/{ROLLOUT_CONFIGMAP} key {workload.key}"
    return Rollout.from_json(text, where)


async def change_rollout(
    objects: ObjectAccess,
    workload: Workload,
    change: Callable[[Rollout | None], Rollout | None],
    *,
    attempts: int = 20,
) -> tuple[Rollout | None, bool]:
    """Read-modify-write the workload's rollout: ``(rollout now, whether it was written)``.

    ``change`` gets the current document (``None``: there is none) and returns the new one, or
    ``None``/the same to leave it. The write carries the ConfigMap's ``resourceVersion``: when
    someone else wrote in between (409), it is read and ``change`` applied again. Raises
    :class:`RolloutError` when ``change`` does (a refusal), or after ``attempts`` conflicts;
    errors of the store (unreachable, forbidden) propagate.
    """
    ref = configmap_ref(workload.namespace)
    for _ in range(attempts):
        configmap = await objects.get_object(ref)
        current = rollout_in(configmap, workload)
        wanted = change(current)
        if wanted is None or wanted == current:
            return current, False
        data = {workload.key: wanted.to_json()}
        try:
            if configmap is None:
                body = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "kidecar"}}}
                await objects.create_object(ref, {**body, "data": data})
            else:
                version = (configmap.get("metadata") or {}).get("resourceVersion")
                await objects.patch_object(
                    ref, {"metadata": {"resourceVersion": version}, "data": data}
                )
        except ConflictError:
            continue
        return wanted, True
    raise RolloutRefused(f"{ref}: changed by someone else {attempts} times in a row; try again")

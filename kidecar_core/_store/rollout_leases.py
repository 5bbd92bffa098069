"""The rollout's Leases: the slots (``<base>-<i>``) and the failure pause (``<base>-paused``).

``<base>`` is ``kidecar-rollout-<kind>-<name>`` in the workload's namespace. The slots are the
sidecars' business (``kidecar_plugins/hot_update/rollout/slots.py``); the names and the pause are
shared with the command.

**The failure pause.** A pod whose update failed pauses the rollout by writing the Lease
``<base>-paused`` (holder: the pod; annotations: the revision, the attempt and the reason), not
the rollout ConfigMap: the sidecars' Role then only *reads* ``kidecar-rollout``, so a sidecar can
stop a rollout but never change the version the fleet rolls to. The pause holds for that
revision and attempt: ``resume`` bumps the attempt, a new revision starts clean, so the Lease is
never deleted. A rollout is paused when its document says so (``kidecar rollout pause``) or when
a failure pause names its revision and attempt (:func:`effective_pause`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core._store.objects import ObjectRef
from kidecar_core._store.rollout import ObjectAccess, Rollout, Workload
from kidecar_core.errors import ConflictError

MANAGED_BY = {"app.kubernetes.io/managed-by": "kidecar"}
WORKLOAD_LABEL = "rollout.kidecar.io/workload"
REVISION = "rollout.kidecar.io/revision"
ATTEMPT = "rollout.kidecar.io/attempt"
REASON = "rollout.kidecar.io/reason"
STARTED = "rollout.kidecar.io/started-at"
_MAX_BASE = 240
_MAX_REASON = 1000


def micro_time() -> str:
    """The API's MicroTime: ``2025-01-01T10:00:00.123456Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_base(workload: Workload) -> str:
    """``kidecar-rollout-<kind>-<name>``, shortened with a hash when the name is long."""
    base = f"kidecar-rollout-{workload.kind.kind.lower()}-{workload.name}"
    if len(base) > _MAX_BASE:
        digest = hashlib.sha256(base.encode()).hexdigest()[:10]
        base = f"{base[: _MAX_BASE - 11].rstrip('-.')}-{digest}"
    return base


def rollout_lease_ref(workload: Workload, suffix: str) -> ObjectRef:
    """The rollout Lease ``<base>-<suffix>`` (a slot's index, or ``paused``)."""
    name = f"{lease_base(workload)}-{suffix}"
    return ObjectRef("coordination.k8s.io", "v1", "leases", workload.namespace, name)


def rollout_lease_labels(workload: Workload) -> dict[str, str]:
    """Labels of every rollout Lease: ``kubectl get lease -l app.kubernetes.io/managed-by=kidecar``
    (the workload's label value is hashed when longer than the 63 characters allowed)."""
    value = workload.key
    if len(value) > 63:
        value = f"{value[:52].rstrip('-._')}-{hashlib.sha256(value.encode()).hexdigest()[:10]}"
    return {**MANAGED_BY, WORKLOAD_LABEL: value}


@attrs.frozen
class FailurePause:
    """A pod's failure, pausing one revision and attempt of a rollout."""

    revision: int
    attempt: int
    pod: str
    reason: str
    started: str = ""
    """The paused rollout's ``startedAt`` (empty in a pause written before it was recorded)."""

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any] | None) -> FailurePause | None:
        if not lease:
            return None
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        try:
            return cls(
                revision=int(annotations[REVISION]),
                attempt=int(annotations[ATTEMPT]),
                pod=str((lease.get("spec") or {}).get("holderIdentity") or ""),
                reason=str(annotations.get(REASON, "")),
                started=str(annotations.get(STARTED, "")),
            )
        except (KeyError, ValueError):
            return None

    def applies_to(self, rollout: Rollout) -> bool:
        """It pauses ``rollout``: the same revision and attempt of the same document (a pause
        left by a document that was deleted and started again does not)."""
        if (self.revision, self.attempt) != (rollout.revision, rollout.attempt):
            return False
        return not self.started or self.started == rollout.started_at

    def same_run(self, other: FailurePause) -> bool:
        return (self.revision, self.attempt, self.started) == (
            other.revision,
            other.attempt,
            other.started,
        )

    def patch(self) -> dict[str, Any]:
        annotations = {
            REVISION: str(self.revision),
            ATTEMPT: str(self.attempt),
            REASON: self.reason[:_MAX_REASON],
            STARTED: self.started,
        }
        now = micro_time()
        spec = {"holderIdentity": self.pod, "acquireTime": now, "renewTime": now}
        return {"metadata": {"annotations": annotations}, "spec": spec}


def effective_pause(rollout: Rollout, failure: FailurePause | None) -> str | None:
    """Why ``rollout`` is paused (``None``: it is not)."""
    if rollout.paused:
        return rollout.pause_reason or "paused"
    if failure is not None and failure.applies_to(rollout):
        return failure.reason or f"pod {failure.pod} failed"
    return None


async def read_failure_pause(objects: ObjectAccess, workload: Workload) -> FailurePause | None:
    """The workload's failure pause, if any (store errors propagate)."""
    return FailurePause.from_lease(await objects.get_object(rollout_lease_ref(workload, "paused")))


async def record_failure_pause(
    objects: ObjectAccess, workload: Workload, pause: FailurePause, *, attempts: int = 10
) -> bool:
    """Write ``pause`` unless a pause of the same revision and attempt is there already (the
    first pod to fail names the reason); whether this call wrote it. Conditional on the Lease's
    ``resourceVersion``; store errors propagate."""
    ref = rollout_lease_ref(workload, "paused")
    for _ in range(attempts):
        lease = await objects.get_object(ref)
        found = FailurePause.from_lease(lease)
        if found is not None and found.same_run(pause):
            return False
        body = pause.patch()
        try:
            if lease is None:
                body["metadata"]["labels"] = rollout_lease_labels(workload)
                await objects.create_object(ref, {"kind": "Lease", **body})
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                await objects.patch_object(ref, body)
        except ConflictError:
            continue
        return True
    raise ConflictError(f"{ref}: changed by someone else {attempts} times in a row")

"""Slots: at most ``slots`` pods of a workload update at the same time.

A slot is a ``coordination.k8s.io/v1`` Lease named ``kidecar-rollout-<kind>-<name>-<i>`` (``i``
from 0 to ``slots - 1``) in the workload's namespace; the pod whose name is in
``spec.holderIdentity`` holds it. Taking and giving back a slot are writes conditional on the
Lease's ``resourceVersion`` (a 409 means someone else was faster), so two pods can never both
believe they hold the same slot.

Each attempt reads **one** Lease: a pod starts at its home slot (a hash of its name) and moves on
to the next one after each busy answer, so contention spreads evenly (``pending / slots`` pods
per Lease) and the cost per attempt stays one GET, whatever the fleet's size.

A holder renews its Lease every third of ``leaseDurationSeconds``. A Lease held by a pod that
died is taken over once this pod has seen it unchanged (same ``resourceVersion``) for
``leaseDurationSeconds`` of its own clock, the way client-go's leader election judges expiry, so
clocks of different pods never need to agree. Any failed read starts that observation again: an
outage of the API server never makes a live holder look dead.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from kidecar_core import (
    ConflictError,
    NotFoundError,
    ObjectRef,
    RuntimeView,
    Workload,
    micro_time,
    rollout_lease_labels,
    rollout_lease_ref,
)

log = logging.getLogger("kidecar.plugin.hot_update")


def home_slot(pod: str, slots: int) -> int:
    return int(hashlib.sha256(pod.encode()).hexdigest()[:8], 16) % slots


@attrs.define
class Held:
    """A slot this pod holds: its Lease and the ``resourceVersion`` of our last write."""

    ref: ObjectRef
    index: int
    resource_version: str
    revision: int


class Slots:
    """Take, renew and give back this pod's slot for one workload."""

    def __init__(
        self,
        runtime: RuntimeView,
        workload: Workload,
        holder: str,
        lease_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.workload = workload
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._seen: dict[str, tuple[str, float]] = {}
        self._next: int | None = None

    def ref(self, index: int) -> ObjectRef:
        return rollout_lease_ref(self.workload, str(index))

    def forget(self) -> None:
        """Start expiry observations again (after a failed read: time unseen is not time dead)."""
        self._seen.clear()

    async def try_acquire(self, slots: int, revision: int) -> Held | None:
        """One attempt on one slot: the slot held, or ``None`` when it is busy (or was taken
        between our read and our write). Store errors propagate (the caller retries)."""
        if self._next is None or self._next >= slots:
            self._next = home_slot(self.holder, slots)
        index = self._next
        ref = self.ref(index)
        try:
            lease = await self.runtime.get_object(ref)
        except Exception:
            self.forget()
            raise
        held = await self._take(ref, index, lease, revision)
        self._next = None if held else (index + 1) % slots
        return held

    async def _take(
        self, ref: ObjectRef, index: int, lease: Mapping[str, Any] | None, revision: int
    ) -> Held | None:
        now = micro_time()
        spec = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": now,
            "renewTime": now,
        }
        meta: dict[str, Any] = {"annotations": {"rollout.kidecar.io/revision": str(revision)}}
        try:
            if lease is None:
                labels = rollout_lease_labels(self.workload)
                body = {"kind": "Lease", "metadata": {**meta, "labels": labels}, "spec": spec}
                stored = await self.runtime.create_object(ref, body)
            else:
                if not self._free(ref.name, lease):
                    return None
                meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
                transitions = (lease.get("spec") or {}).get("leaseTransitions") or 0
                spec["leaseTransitions"] = int(transitions) + 1
                stored = await self.runtime.patch_object(ref, {"metadata": meta, "spec": spec})
        except ConflictError:
            return None
        self._seen.pop(ref.name, None)
        return Held(ref, index, str(stored["metadata"]["resourceVersion"]), revision)

    def _free(self, name: str, lease: Mapping[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if not holder or holder == self.holder:
            return True
        version = str((lease.get("metadata") or {}).get("resourceVersion"))
        seen = self._seen.get(name)
        now = self.clock()
        if seen is None or seen[0] != version:
            self._seen[name] = (version, now)
            return False
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        if now - seen[1] < float(duration):
            return False
        log.warning(
            "slot %s: its holder %s has not renewed it for %ss: taking it over",
            name,
            holder,
            duration,
        )
        return True

    async def renew(self, held: Held) -> bool:
        """Renew ``held``; ``False`` when it was taken over (we were too slow) or deleted. Store
        errors propagate (the caller tries again at the next renewal)."""
        patch = {
            "metadata": {"resourceVersion": held.resource_version},
            "spec": {"renewTime": micro_time()},
        }
        try:
            stored = await self.runtime.patch_object(held.ref, patch)
        except ConflictError:
            return await self._still_ours(held)
        except NotFoundError:
            log.warning("slot %s was deleted while this pod held it", held.ref)
            return False
        held.resource_version = str(stored["metadata"]["resourceVersion"])
        return True

    async def release(self, held: Held) -> None:
        """Give ``held`` back (``holderIdentity`` removed). Returns once it is given back, or
        someone else holds it, or it was deleted (someone cleaned up: nothing to give back,
        where retrying would keep this pod from following rollouts for ever); store errors
        propagate (the caller retries)."""
        patch = {
            "metadata": {"resourceVersion": held.resource_version},
            "spec": {"holderIdentity": None, "renewTime": micro_time()},
        }
        while True:
            try:
                await self.runtime.patch_object(held.ref, patch)
                return
            except NotFoundError:
                log.warning("slot %s was deleted while this pod held it", held.ref)
                return
            except ConflictError:
                if not await self._still_ours(held):
                    return
                patch["metadata"] = {"resourceVersion": held.resource_version}

    async def _still_ours(self, held: Held) -> bool:
        lease = await self.runtime.get_object(held.ref)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.holder:
            log.warning("slot %s was taken over by another pod while this one held it", held.ref)
            return False
        held.resource_version = str(lease["metadata"]["resourceVersion"])
        return True

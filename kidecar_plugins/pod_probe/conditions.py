"""Writing probe states into the pod's ``status.conditions``, only on change.

kidecar keeps the *desired* condition of every probe (its last state and message) and compares
it with the *live* pod, which :func:`~kidecar_plugins.pod_probe.source.follow` keeps current.
When a condition's ``status`` or ``message`` differs (a new state, or someone removed or changed
it), one patch of ``pods/status`` sends the conditions that differ, and only those: a strategic
merge keyed by ``type``, so the kubelet's ``Ready``, Kruise's and OKG's own conditions are never
touched.  A condition that did not change is never written again, so a steady game costs no
writes at all (kruise-daemon's rule: ``SetPodConditionIfMsgChanged``).

Each written condition carries ``lastProbeTime`` (the probe that produced it) and
``lastTransitionTime`` (now when ``status`` changed, else the live one), records the Event
kruise-daemon records (``KruiseProbeSucceeded`` / ``KruiseProbeFailed``, type ``Normal``, the
message as its text) and is emitted as a :class:`~kidecar_core.Result` (kind ``condition``).

Failed writes: the API server away, 429/5xx or 409 → retried with backoff (the latest desired
state is written when it answers); 403 → logged once with the missing RBAC rule, retried every
30 s; 422 → logged, and that condition is not retried until it changes (when several were sent
together, they are sent again one by one first, so that only the bad one is held back).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from kidecar_core import (
    Backoff,
    Event,
    ForbiddenError,
    InvalidError,
    ObjectRef,
    PermanentPersistError,
    PluginContext,
    Result,
    TransientPersistError,
)
from kidecar_plugins.pod_probe.outcome import SUCCEEDED
from kidecar_plugins.pod_probe.worker import Update, WallClock

KIND = "condition"
EVENT_SUCCEEDED = "KruiseProbeSucceeded"
EVENT_FAILED = "KruiseProbeFailed"
SLOW_RETRY = 30.0
"""Seconds between attempts while a write is forbidden or refused for good."""


def rfc3339(epoch: float) -> str:
    """``2024-05-01T12:00:00Z``: how the API server writes a ``metav1.Time`` (whole seconds)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def live_conditions(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if isinstance(c, Mapping) and "type" in c}


def differs(live: Mapping[str, Any] | None, update: Update) -> bool:
    """Whether the live condition needs a write (``status`` or ``message`` differ)."""
    if live is None:
        return True
    return live.get("status") != update.status or (live.get("message") or "") != update.message


class ConditionWriter:
    """The desired condition of each probe, written to the pod when the live one differs."""

    def __init__(self, ctx: PluginContext, pod: ObjectRef, *, clock: WallClock = time.time) -> None:
        self.ctx = ctx
        self.pod = pod
        self.desired: dict[str, Update] = {}
        self.live: dict[str, Mapping[str, Any]] = {}
        self.refused: dict[str, Update] = {}
        self.writes = 0
        self._clock = clock
        self._written_version = -1
        self._problem: str | None = None
        self._one_at_a_time = False
        """After a 422 for several conditions: one per patch, so that only the bad one is
        refused."""
        self._wake = asyncio.Event()

    def set(self, update: Update) -> None:
        """A probe reached a state (called by its worker)."""
        self.desired[update.probe.condition_type] = update
        if differs(self.live.get(update.probe.condition_type), update):
            self._wake.set()

    def forget(self, condition_type: str) -> None:
        """The probe is gone: its condition stays on the pod as last written (as with Kruise),
        but is no longer kept up."""
        self.desired.pop(condition_type, None)

    def observe(self, pod: Mapping[str, Any]) -> None:
        """The live pod changed (from the watch); pods older than our last write are ignored."""
        version = _version(pod)
        if version is not None and version < self._written_version:
            return
        self.live = live_conditions(pod)
        if self.pending():
            self._wake.set()

    def pending(self) -> list[Update]:
        """The desired conditions the live pod does not have (refused ones excepted)."""
        return [
            u
            for t, u in sorted(self.desired.items())
            if differs(self.live.get(t), u) and not self._held_back(t, u)
        ]

    def _held_back(self, condition_type: str, update: Update) -> bool:
        """Whether the API server refused this status and message (a later probe run with the
        same result is not sent again; a new result is)."""
        refused = self.refused.get(condition_type)
        return refused is not None and (refused.status, refused.message) == (
            update.status,
            update.message,
        )

    async def run(self) -> None:
        """Write whenever something is pending, until cancelled."""
        backoff = Backoff(initial=0.2, cap=30.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending():
                delay = await self.write_once()
                if delay is None:
                    backoff.reset()
                    continue
                await asyncio.sleep(delay if delay else backoff.next())

    async def write_once(self) -> float | None:
        """One patch of what is pending; ``None`` when done, else seconds to wait before the
        next attempt (``0``: the caller's backoff decides)."""
        updates = self.pending()
        if not updates:
            return None
        if self._one_at_a_time:
            updates = updates[:1]
        patch = {"status": {"conditions": [self._condition(u) for u in updates]}}
        try:
            pod = await self.ctx.patch_status(self.pod, patch)
        except TransientPersistError as e:
            self._trouble("transient", logging.WARNING, f"cannot write pod conditions yet: {e}")
            return max(e.retry_after or 0.0, 0.0)
        except PermanentPersistError as e:
            return self._refused(updates, e)
        if self._problem is not None:
            self.ctx.log.info("pod conditions written again")
            self._problem = None
        self.writes += 1
        self._written_version = _version(pod) or self._written_version
        self.live = live_conditions(pod)
        for update in updates:
            self._announce(update)
        if not self.pending():
            self._one_at_a_time = False
        return None

    def _condition(self, update: Update) -> dict[str, Any]:
        live = self.live.get(update.probe.condition_type)
        same = live is not None and live.get("status") == update.status
        changed_at = live.get("lastTransitionTime") if same and live else None
        return {
            "type": update.probe.condition_type,
            "status": update.status,
            "message": update.message,
            "lastProbeTime": rfc3339(update.probe_time),
            "lastTransitionTime": changed_at or rfc3339(self._clock()),
        }

    def _refused(self, updates: list[Update], error: PermanentPersistError) -> float:
        if isinstance(error, InvalidError) and len(updates) > 1:
            self._one_at_a_time = True  # find the bad one: the others are written
            self.ctx.log.warning("pod conditions refused; writing them one at a time: %s", error)
            return 0.0
        if isinstance(error, InvalidError):
            for update in updates:
                self.refused[update.probe.condition_type] = update
            self.ctx.log.error("pod conditions refused (not retried until they change): %s", error)
            return 0.0
        kind = "forbidden" if isinstance(error, ForbiddenError) else "permanent"
        self._trouble(kind, logging.ERROR, f"cannot write pod conditions: {error}")
        return SLOW_RETRY

    def _announce(self, update: Update) -> None:
        probe = update.probe
        self.ctx.log.info(
            "probe %s (%s, container %s): %s, condition %s=%s%s",
            probe.name, probe.kind, probe.container_name, update.state, probe.condition_type,
            update.status, f", message {update.message!r}" if update.message else "",
        )  # fmt: skip
        reason = EVENT_SUCCEEDED if update.state == SUCCEEDED else EVENT_FAILED
        text = update.message or f"probe {probe.name}: {update.state}"
        event = Event(reason, text, "Normal")
        self.ctx.emit(
            Result(
                plugin=self.ctx.name,
                state=update.state,
                source=probe.source,
                kind=KIND,
                data={
                    "probe": probe.name,
                    "container": probe.container_name,
                    "conditionType": probe.condition_type,
                    "message": update.message,
                },
                events=(event,),
            )
        )

    def _trouble(self, kind: str, level: int, text: str) -> None:
        """Log a failed write once per kind of trouble (again after a successful write)."""
        if self._problem != kind:
            self._problem = kind
            self.ctx.log.log(level, "%s (retrying)", text)


def _version(pod: Mapping[str, Any]) -> int | None:
    """The pod's ``resourceVersion`` as a number (etcd's revision), ``None`` when it is not."""
    try:
        return int(str((pod.get("metadata") or {}).get("resourceVersion")))
    except ValueError:
        return None

"""The record of each update's outcome: the status, the log, the pod annotation (storage
config), the Event and, when persistence is on, the result ConfigMap (:mod:`.record`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import attrs

from kidecar_core import Event, ObjectRef, PluginContext, Result, Write, redact_url
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.download import Downloaded
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.record import Applied, PodInfo, record_writes, utc_now
from kidecar_plugins.hot_update.request import UpdateRequest
from kidecar_plugins.hot_update.status import LastResult, UpdateOutcome, UpdateStatus

log = logging.getLogger("kidecar.plugin.hot_update")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class Recorder:
    """Records outcomes into :attr:`status` and the results the core writes.

    ``pod`` is this pod's UID and workload once known (:attr:`pod_known` is set then); a success
    before that is recorded in the ConfigMap later, by a task started with ``spawn``.
    """

    def __init__(self, ctx: PluginContext, config: HotUpdateConfig, spawn: Spawn) -> None:
        self.ctx = ctx
        self.config = config
        self.spawn = spawn
        self.status = UpdateStatus()
        self.generation = 0
        """Bumped by every applied update: a replay that finds it changed is superseded."""
        self.pod: PodInfo | None = None
        self.pod_known = asyncio.Event()

    @property
    def configmap(self) -> ObjectRef:
        name = self.config.persistence.config_map_name
        return ObjectRef.configmap(self.ctx.identity.namespace, name)

    def set_pod(self, pod: PodInfo) -> None:
        self.pod = pod
        self.pod_known.set()

    def success(
        self, req: UpdateRequest, sha256: str, target: Path, done: str, got: Downloaded | None
    ) -> dict[str, Any]:
        """Record an applied update; returns the 200 answer's body."""
        who = self.pod
        applied = Applied(
            version=req.version,
            url=redact_url(req.url),
            sha256=sha256,
            file=str(target),
            updated_at=utc_now(),
            url_redacted=req.has_credentials or req.recorded_without_credentials,
            pod=self.ctx.identity.name,
            pod_uid=who.uid if who else None,
            workload=str(who.workload) if who and who.workload else None,
        )
        self.status.current = applied
        self.generation += 1
        fetched = f"downloaded {got.size} bytes" if got else "file already on disk"
        message = f"{req.version} applied: {fetched} to {target}, {done}"
        self.status.last = LastResult(
            req.version, UpdateOutcome.SUCCESS, 200, message, applied.updated_at
        )
        log.info("hot update %s from %s: %s", req.version, redact_url(req.url), message)
        self._emit(
            f"{req.version}: Update success",
            Event("HotUpdateSucceeded", f"{req.version} from {redact_url(req.url)}: {message}"),
            {"version": req.version, "status": str(UpdateOutcome.SUCCESS), "sha256": sha256},
            self._persist(applied, req.version),
        )
        return {
            "status": "ok",
            "version": req.version,
            "url": redact_url(req.url),
            "sha256": sha256,
            "file": str(target),
            "bytes": got.size if got else None,
            "message": message,
        }

    def _persist(self, applied: Applied, version: str) -> tuple[Write, ...]:
        if not self.config.persistence.enabled:
            return ()
        if self.pod is None:
            self.spawn(self._record_later(applied), f"record-{version}")
            return ()
        return record_writes(self.configmap, applied, self.pod, self._source("persistence"))

    async def _record_later(self, applied: Applied) -> None:
        """Record an update that happened before this pod's UID and workload were known."""
        await self.pod_known.wait()
        assert self.pod is not None
        applied = attrs.evolve(
            applied,
            pod_uid=self.pod.uid,
            workload=str(self.pod.workload) if self.pod.workload else None,
        )
        writes = record_writes(self.configmap, applied, self.pod, self._source("persistence"))
        self.ctx.emit(
            Result(plugin=self.ctx.name, state="", kind="hot-update-record", writes=writes)
        )

    def failure(self, req: UpdateRequest, error: UpdateError) -> None:
        """Record a failed update (the previous file is kept)."""
        self.status.last = LastResult(
            req.version, UpdateOutcome.FAILED, error.status, error.message, utc_now()
        )
        log.warning("hot update to %s failed (%d): %s", req.version, error.status, error.message)
        self._emit(
            f"{req.version}: Update failed: {error.reason}",
            Event(
                "HotUpdateFailed",
                f"{req.version} from {redact_url(req.url)}: {error.message}",
                type="Warning",
            ),
            {"version": req.version, "status": str(UpdateOutcome.FAILED), "code": error.status},
            (),
        )

    def _emit(
        self, state: str, event: Event, data: dict[str, Any], writes: tuple[Any, ...]
    ) -> None:
        self.ctx.emit(
            Result(
                plugin=self.ctx.name,
                state=state,
                storage=self.config.storage_config,
                source=self._source("storageConfig"),
                kind="hot-update",
                data=data,
                writes=writes,
                events=(event,),
            )
        )

    def _source(self, key: str) -> str:
        return self.ctx.config_path(key)

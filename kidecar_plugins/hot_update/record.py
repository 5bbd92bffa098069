"""The last applied version, kept in the result ConfigMap for restarts and new replicas.

The ConfigMap (default ``sidecar-result``, in the pod's namespace) holds one key per pod and one
per owning workload, each a JSON object ``{"version", "url", "sha256", "file", "updatedAt",
...}`` describing the **last applied** update (a rollback from v3 to v2 records v2). The ``url``
is stored without credentials (no userinfo, no query string: a presigned URL's signature never
lands in the ConfigMap); ``"urlRedacted": true`` says something was removed, so that a replay
that must download again knows the URL may no longer work as stored.

* ``pod.<pod name>``: written by that pod's sidecar only; it also records the pod's UID, so a
  pod recreated under the same name (StatefulSet, GameServerSet) is recognised as a new replica;
* ``workload.<kind>.<name>``: written by every pod of the workload on each update, read by new
  replicas. It is a one-shot write (``Write.once``): a pod never re-asserts an older value over a
  newer one written by another pod.

Each pod merge-patches distinct keys, so concurrent pods never overwrite each other's records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core import Backoff, ObjectRef, RuntimeView, Write

log = logging.getLogger("kidecar.plugin.hot_update")

OWNER_GSS_LABEL = "game.kruise.io/owner-gss"
POD_TEMPLATE_HASH = "pod-template-hash"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@attrs.frozen
class Workload:
    """The workload that owns the pod (GameServerSet, StatefulSet, Deployment, ...)."""

    kind: str
    name: str

    @property
    def key(self) -> str:
        return f"workload.{self.kind.lower()}.{self.name}"

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@attrs.frozen
class PodInfo:
    """What the records need to know about this pod."""

    name: str
    uid: str | None
    workload: Workload | None


def owner_workload(pod: Mapping[str, Any]) -> Workload | None:
    """The pod's owning workload.

    OpenKruiseGame labels its pods with ``game.kruise.io/owner-gss``; otherwise the controller
    ``ownerReference`` names it. A ReplicaSet's pods belong to the Deployment whose name is the
    ReplicaSet's minus ``-<pod-template-hash>`` (no ReplicaSet read needed, so no RBAC for it).
    """
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    gss = labels.get(OWNER_GSS_LABEL)
    if gss:
        return Workload("GameServerSet", str(gss))
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller") or not ref.get("kind") or not ref.get("name"):
            continue
        kind, name = str(ref["kind"]), str(ref["name"])
        if kind == "ReplicaSet":
            pod_hash = labels.get(POD_TEMPLATE_HASH)
            if pod_hash and name.endswith(f"-{pod_hash}"):
                return Workload("Deployment", name[: -len(pod_hash) - 1])
        return Workload(kind, name)
    return None


def pod_info(pod: Mapping[str, Any], name: str) -> PodInfo:
    meta = pod.get("metadata") or {}
    uid = meta.get("uid")
    return PodInfo(name, str(uid) if uid else None, owner_workload(pod))


def pod_key(pod_name: str) -> str:
    return f"pod.{pod_name}"


@attrs.frozen
class Applied:
    """One applied update, as recorded."""

    version: str
    url: str
    sha256: str
    file: str
    updated_at: str
    pod: str = ""
    pod_uid: str | None = None
    workload: str | None = None
    url_redacted: bool = False
    """Credentials (userinfo, query) were removed from ``url`` before it was recorded."""

    def to_json(self) -> str:
        data = {
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "file": self.file,
            "updatedAt": self.updated_at,
            "pod": self.pod,
            "podUID": self.pod_uid,
            "workload": self.workload,
            "urlRedacted": self.url_redacted or None,
        }
        return json.dumps({k: v for k, v in data.items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, text: Any, key: str = "") -> Applied | None:
        """Parse a record; ``None`` (logged) when it is missing or not one of ours."""
        if not isinstance(text, str):
            return None
        try:
            data = json.loads(text)
            return cls(
                version=str(data["version"]),
                url=str(data["url"]),
                sha256=str(data["sha256"]),
                file=str(data.get("file", "")),
                updated_at=str(data.get("updatedAt", "")),
                pod=str(data.get("pod", "")),
                pod_uid=data.get("podUID"),
                workload=data.get("workload"),
                url_redacted=data.get("urlRedacted") is True,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable hot-update record %s: %.200s", key, text)
            return None


def record_writes(
    configmap: ObjectRef, applied: Applied, who: PodInfo, source: str
) -> tuple[Write, ...]:
    """The ConfigMap writes that record ``applied`` for the pod and its workload."""
    writes = [
        Write(
            configmap,
            {"data": {pod_key(who.name): applied.to_json()}},
            source=source,
            create=True,
        )
    ]
    if who.workload is not None:
        shared = attrs.evolve(applied, pod_uid=None, workload=None)
        writes.append(
            Write(
                configmap,
                {"data": {who.workload.key: shared.to_json()}},
                source=source,
                create=True,
                once=True,
            )
        )
    return tuple(writes)


def choose_replay(configmap: Mapping[str, Any] | None, who: PodInfo) -> tuple[Applied, str] | None:
    """What to re-apply at start: (record, why), or ``None`` when nothing is recorded.

    This pod's own record wins (a sidecar or container restart); a pod recreated under the same
    name (another UID) is a new replica and takes its workload's current version, falling back
    to the name's record when it has no workload.
    """
    data = (configmap or {}).get("data") or {}
    own_key = pod_key(who.name)
    own = Applied.from_json(data.get(own_key), own_key)
    if own is not None and own.pod_uid == who.uid:
        return own, "the last version applied to this pod"
    if who.workload is not None:
        shared = Applied.from_json(data.get(who.workload.key), who.workload.key)
        if shared is not None:
            return shared, f"the current version of {who.workload}"
    if own is not None:
        return own, f"the last version applied to a previous pod named {who.name}"
    return None


async def read_retrying(
    runtime: RuntimeView, ref: ObjectRef, why: str, *, required: bool
) -> dict[str, Any] | None:
    """Read ``ref``, retrying with backoff (up to 30 s) while the store fails, and while the
    object is missing when ``required``. The API server may be away when a pod starts: this never
    gives up and never raises. Logs once when it starts failing and once when it recovers."""
    backoff = Backoff(initial=0.5, cap=30.0)
    warned = False
    while True:
        try:
            found = await runtime.get_object(ref)
        except Exception as e:  # any failure of the store: retry, never crash the plugin
            problem = str(e)
        else:
            if found is not None or not required:
                if warned:
                    log.info("read %s after all", ref)
                return found
            problem = f"{ref} does not exist"
        if not warned:
            log.warning("cannot read %s (%s): %s; retrying", ref, why, problem)
            warned = True
        await runtime.clock.sleep(backoff.next())

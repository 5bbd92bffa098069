"""A deliberately stale second writer of a GameServer's ``spec.opsState``, the way OpenKruiseGame
v1.0.0's GameServer controller behaves: a few milliseconds after kidecar writes the field, it
writes back the value it had cached before (measured: 6 ms median after kidecar's write).

It watches the GameServer (admin credentials, its own field manager ``stale-writer``) and, when
an event shows that kidecar (field manager ``kidecar``) changed ``spec.opsState``, patches the
previous value back.  ``mode``:

* ``"new-values"`` (OKG v1.0.0): only kidecar's writes of a *new* value are reverted, once; a
  re-assert of the same value is left alone (OKG's stale write is triggered by the Pod change
  kidecar makes together with a state change, and a re-assert changes only the GameServer);
* ``"always"``: every write of kidecar is reverted (a hostile controller; proves kidecar backs
  off instead of fighting in a hot loop).

It records every revert and every repair (kidecar's next write of the value it reverted) with
``time.monotonic()``, so that a test can report repair times without asserting on them.  No
pytest imports here (benchmarks may use it too).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from tests.support.apiserver import TestCluster

GROUP, VERSION, PLURAL = "game.kruise.io", "v1alpha1", "gameservers"
MANAGER = "stale-writer"


@dataclass
class Revert:
    """One stale write: kidecar's ``value`` was replaced by ``back`` at ``at``; ``repaired_at``
    is when kidecar's next write of ``value`` was seen (``None``: not yet)."""

    value: str
    back: str
    at: float
    repaired_at: float | None = None

    @property
    def repair_seconds(self) -> float | None:
        return None if self.repaired_at is None else self.repaired_at - self.at


@dataclass
class StaleWriter:
    """Run with ``start()`` / ``stop()`` (or as a context manager)."""

    cluster: TestCluster
    namespace: str
    name: str
    mode: str = "new-values"
    reverts: list[Revert] = field(default_factory=list)
    kidecar_writes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> StaleWriter:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="stale-writer", daemon=True
        )
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the stale writer's watch did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> StaleWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Revert]:
        with self._lock:
            return [Revert(r.value, r.back, r.at, r.repaired_at) for r in self.reverts]

    # -- the watch -------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        with self.cluster.admin_api_client() as api:
            custom = k8s.CustomObjectsApi(api)
            current = custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            state = {"ops": _ops(current), "kidecar_last": None}
            rv = current["metadata"]["resourceVersion"]
            ready.set()
            while not self._stop.is_set():
                stream = k8s_watch.Watch()
                for event in stream.stream(
                    custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                    field_selector=f"metadata.name={self.name}", resource_version=rv,
                    timeout_seconds=2,
                ):  # fmt: skip
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    self._on_object(custom, obj, state)
                    if self._stop.is_set():
                        stream.stop()

    def _on_object(self, custom: k8s.CustomObjectsApi, obj: dict[str, Any], state: Any) -> None:
        ops, before = _ops(obj), state["ops"]
        state["ops"] = ops
        if ops == before or _owner(obj) != "kidecar":
            return
        seen = time.monotonic()
        with self._lock:
            self.kidecar_writes += 1
            for r in self.reverts:
                if r.repaired_at is None and r.value == ops:
                    r.repaired_at = seen
        is_new = ops != state["kidecar_last"]
        state["kidecar_last"] = ops
        if self.mode == "always" or is_new:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name,
                {"spec": {"opsState": before}}, field_manager=MANAGER,
            )  # fmt: skip
            with self._lock:
                self.reverts.append(Revert(ops, before, time.monotonic()))


def _ops(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("opsState"))


def _owner(obj: dict[str, Any]) -> str | None:
    """The field manager that owns ``spec.opsState`` (the last one that set it)."""
    owners = [
        (entry.get("time") or "", entry.get("manager"))
        for entry in obj["metadata"].get("managedFields") or []
        if "f:opsState" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    return max(owners)[1] if owners else None

"""The write applier's logic, with an in-memory store that can fail on demand.

The same behaviours are proven against the real kube-apiserver in tests/kube/; this fake exists
for fault sequences a real server cannot produce on demand and to keep these checks fast.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.applier import Applier, flatten, holds, pointer_path, unflatten
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._store.objects import Event, ObjectRef, merge_patch
from kidecar_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    PersistError,
    TransientPersistError,
)

GS = ObjectRef("game.kruise.io", "v1alpha1", "gameservers", "ns", "gs-0")
POD = ObjectRef("", "v1", "pods", "ns", "gs-0")
CM = ObjectRef.configmap("ns", "sidecar-result")


class FakeStore:
    """Objects in a dict; ``fail`` holds errors to raise on the next calls (FIFO)."""

    description = "fake store"

    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        self.fail: list[PersistError] = []
        self.calls: list[tuple[str, ObjectRef, Any]] = []
        self.rv = 0

    def put(self, ref: ObjectRef, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        self.objects[ref] = obj

    def _maybe_fail(self) -> None:
        if self.fail:
            raise self.fail.pop(0)

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.calls.append(("get", ref, None))
        self._maybe_fail()
        obj = self.objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    async def patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", ref, copy.deepcopy(dict(patch))))
        self._maybe_fail()
        obj = self.objects[ref]
        rv = patch.get("metadata", {}).get("resourceVersion")
        if rv is not None and rv != obj["metadata"]["resourceVersion"]:
            raise ConflictError("stale")
        for k, v in flatten(patch).items():
            if k[:2] == ("metadata", "labels") and isinstance(v, str) and " " in v:
                raise InvalidError(f"invalid label value {v!r}")
        self.put(ref, merge_patch(obj, patch))
        return copy.deepcopy(self.objects[ref])

    async def create(self, ref: ObjectRef, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", ref, copy.deepcopy(dict(body))))
        self._maybe_fail()
        if ref in self.objects:
            raise ConflictError("exists")
        self.put(ref, copy.deepcopy(dict(body)))
        return copy.deepcopy(self.objects[ref])

    async def record_event(self, about: ObjectRef, event: Event) -> None:
        self.calls.append(("event", about, event))

    async def close(self) -> None:
        pass

    def writes(self) -> list[tuple[str, ObjectRef, Any]]:
        return [c for c in self.calls if c[0] in ("patch", "create")]


def gameserver(ops: str = "None") -> dict[str, Any]:
    return {"metadata": {"name": "gs-0", "labels": {"keep": "me"}}, "spec": {"opsState": ops}}


def ops(value: str, guarded: bool = True) -> Write:
    guards = (FieldNotIn("/spec/opsState", ("Maintaining", "Kill")),) if guarded else ()
    return Write(GS, {"spec": {"opsState": value}}, "policy.gameServerOpsState", guards=guards)


async def settle(applier: Applier, timeout: float = 5.0) -> None:
    assert await applier.flush(timeout), applier.problems()


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait (real time, generous) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting for a condition")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make(store: FakeStore, **kw: Any) -> Applier:
    kw.setdefault("backoff_cap", 0.05)
    kw.setdefault("wait_cap", 0.05)
    return Applier(store, Metrics(), **kw)


def test_helpers() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {("a", "b"): 1, ("d",): [1]}
    assert unflatten([(("a", "b"), 1), (("a", "c"), 2)]) == {"a": {"b": 1, "c": 2}}
    assert pointer_path("/metadata/labels/a~1b~0c") == ("metadata", "labels", "a/b~c")
    assert holds({"a": 1}, ("b",), None)
    assert not holds({"a": "1"}, ("a",), 1)


def test_one_patch_with_only_the_changed_leaves_and_none_when_nothing_changed() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        applier = make(store)
        applier.submit(
            [ops("Allocated"), Write(GS, {"metadata": {"labels": {"keep": "me", "a": "b"}}}, "l")]
        )
        await settle(applier)
        assert [c[2] for c in store.writes()] == [
            {
                "spec": {"opsState": "Allocated"},
                "metadata": {"labels": {"a": "b"}, "resourceVersion": "1"},
            }
        ]
        for _ in range(5):  # the same result again and again: no request at all
            applier.submit([ops("Allocated")])
        await settle(applier)
        assert len(store.writes()) == 1
        await applier.close()

    run(main())


def test_desired_state_already_holding_makes_no_write() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver("Allocated"))
        applier = make(store)
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert store.writes() == []
        await applier.close()

    run(main())


def test_human_maintaining_is_not_overridden_but_our_own_state_is() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver("Maintaining"))  # set by a human
        applier = make(store)
        applier.submit([ops("WaitToBeDeleted"), Write(GS, {"metadata": {"labels": {"x": "y"}}})])
        await settle(applier)
        gs = store.objects[GS]
        assert gs["spec"]["opsState"] == "Maintaining"
        assert gs["metadata"]["labels"]["x"] == "y"  # the rest of the plan still lands
        # A policy that itself sets Maintaining can be changed again by kidecar.
        store.put(GS, gameserver("None"))
        applier.submit([ops("Maintaining")])
        await settle(applier)
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        await applier.close()

    run(main())


def test_write_held_back_by_a_guard_lands_soon_after_the_human_is_done() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver("Maintaining"))
        applier = make(store, guard_recheck=0.1)
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Maintaining"
        store.put(GS, gameserver("None"))  # the human is done; no new result arrives
        for _ in range(100):
            await asyncio.sleep(0.02)
            if store.objects[GS]["spec"]["opsState"] == "Allocated":
                break
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        await applier.close()

    run(main())


def test_guarded_write_races_with_a_human_and_loses_safely() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver("None"))
        applier = make(store)
        real_get = store.get

        async def get_then_human_edits(ref: ObjectRef) -> dict[str, Any] | None:
            obj = await real_get(ref)
            if len(store.calls) == 1:  # the human sets Maintaining right after our read
                store.put(GS, gameserver("Maintaining"))
            return obj

        store.get = get_then_human_edits  # type: ignore[method-assign]
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Maintaining"
        await applier.close()

    run(main())


def test_transient_errors_coalesce_and_the_latest_state_lands_once() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        store.fail = [TransientPersistError("connection refused")] * 6
        applier = make(store)
        applier.submit([ops("Allocated")])
        await asyncio.sleep(0.01)
        applier.submit([ops("WaitToBeDeleted")])
        assert "degraded" in applier.problems() or store.fail
        await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "WaitToBeDeleted"
        successful = [c for c in store.writes()]
        assert successful[-1][2]["spec"] == {"opsState": "WaitToBeDeleted"}
        assert applier.problems() == {}
        await applier.close()

    run(main())


def test_conflict_is_reread_and_retried() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        store.fail = [ConflictError("409"), ConflictError("409")]
        applier = make(store)
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        assert [c[0] for c in store.calls].count("get") >= 3
        await applier.close()

    run(main())


def test_missing_object_is_waited_for_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = FakeStore()
        applier = make(store)
        with caplog.at_level(logging.INFO, "kidecar.persist"):
            applier.submit([ops("Allocated")])
            await asyncio.sleep(0.3)
            assert "waiting" in applier.problems()
            store.put(GS, gameserver())
            await until(lambda: store.objects[GS]["spec"]["opsState"] == "Allocated")
        assert caplog.text.count("does not exist yet; waiting") == 1
        await applier.close()

    run(main())


def test_owned_object_is_created_and_create_race_falls_back_to_patch() -> None:
    async def main() -> None:
        store = FakeStore()
        applier = make(store)
        applier.submit([Write(CM, {"data": {"pod.gs-0": "v1"}}, "persistence", create=True)])
        await settle(applier)
        assert store.objects[CM]["data"] == {"pod.gs-0": "v1"}
        assert store.objects[CM]["metadata"]["name"] == "sidecar-result"
        # Another pod creates it between our read and our create: we patch our key in.
        store2 = FakeStore()
        store2.fail = []
        applier2 = make(store2)
        real_get = store2.get

        async def get_none_then_other_pod_creates(ref: ObjectRef) -> dict[str, Any] | None:
            obj = await real_get(ref)
            if obj is None:
                store2.put(CM, {"data": {"pod.gs-1": "v1"}})
            return obj

        store2.get = get_none_then_other_pod_creates  # type: ignore[method-assign]
        applier2.submit([Write(CM, {"data": {"pod.gs-0": "v2"}}, "persistence", create=True)])
        await settle(applier2)
        assert store2.objects[CM]["data"] == {"pod.gs-1": "v1", "pod.gs-0": "v2"}
        await applier.close()
        await applier2.close()

    run(main())


def test_forbidden_is_logged_once_reported_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        denied = ForbiddenError("no", verb="patch", group="game.kruise.io", resource="gameservers")
        store.fail = [denied] * 8
        applier = make(store)
        with caplog.at_level(logging.ERROR, "kidecar.persist"):
            applier.submit([ops("Allocated")])
            await asyncio.sleep(0.2)
            assert applier.problems()["forbidden"]
        assert caplog.text.count("verb=patch apiGroup=game.kruise.io resource=gameservers") == 1
        await settle(applier)  # the Role is fixed (no more failures): recovers by itself
        assert applier.problems() == {}
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        await applier.close()

    run(main())


def test_invalid_value_drops_only_the_offending_write(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        applier = make(store)
        with caplog.at_level(logging.ERROR, "kidecar.persist"):
            applier.submit(
                [
                    Write(GS, {"metadata": {"labels": {"state": "not valid"}}}, "cfg.labelKey"),
                    ops("Allocated"),
                ]
            )
            await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        assert "state" not in store.objects[GS]["metadata"]["labels"]
        assert "cfg.labelKey" in caplog.text and "invalid label value" in caplog.text
        await applier.close()

    run(main())


def test_resync_reasserts_state_changed_by_someone_else() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        applier = make(store, resync_interval=0.1)
        applier.submit([Write(GS, {"metadata": {"annotations": {"a": "1"}}}, "x")])
        await settle(applier)
        store.put(GS, gameserver())  # someone removed our annotation
        for _ in range(100):
            await asyncio.sleep(0.02)
            if store.objects[GS]["metadata"].get("annotations", {}).get("a") == "1":
                break
        assert store.objects[GS]["metadata"]["annotations"]["a"] == "1"
        await applier.close()

    run(main())


def test_retry_after_is_honoured() -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        busy = TransientPersistError("429")
        busy.retry_after = 0.3
        store.fail = [busy]
        applier = make(store, backoff_cap=1.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        applier.submit([ops("Allocated")])
        await settle(applier)
        assert loop.time() - started >= 0.3
        await applier.close()

    run(main())


def test_an_unexpected_store_error_does_not_end_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        store = FakeStore()
        store.put(GS, gameserver())
        store.fail = [RuntimeError("a bug in a store")]  # type: ignore[list-item]
        applier = make(store)
        with caplog.at_level(logging.ERROR, "kidecar.persist"):
            applier.submit([ops("Allocated")])
            await settle(applier)
        assert store.objects[GS]["spec"]["opsState"] == "Allocated"
        assert "unexpected error writing" in caplog.text
        await applier.close()

    run(main())

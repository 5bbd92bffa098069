"""The applier against watched objects: desired state per field, re-assert, contested fields,
write order, missing objects and the flush, with an in-memory store that has a watch and a
clock driven by hand (no test measures wall-clock time).

The same behaviours run against the real kube-apiserver in tests/kube/test_other_writers.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kidecar_core._base.clock import ManualClock
from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.applier import Applier, ApplierOptions, flatten
from kidecar_core._persist.contest import ContestPolicy, manager_of
from kidecar_core._persist.objectstate import MAX_HELD_DELETIONS
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._store.objects import Event, ObjectRef, Observation, merge_patch
from kidecar_core._store.watches import Watches
from kidecar_core.errors import ConflictError, NotFoundError, PersistError

GS = ObjectRef("game.kruise.io", "v1alpha1", "gameservers", "ns", "gs-0")
POD = ObjectRef("", "v1", "pods", "ns", "gs-0")
KIDECAR = "kidecar"


class WatchedStore:
    """Objects in a dict with a watch per object, ``managedFields`` per writer, and faults.

    ``hold`` keeps watch events back until :meth:`release` (to deliver them late or out of
    step with write answers); ``gate`` makes patches of an object wait for an event.
    """

    description = "watched fake store"

    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        self.owners: dict[ObjectRef, dict[tuple[str, ...], str]] = {}
        self.calls: list[tuple[str, ObjectRef, Any]] = []
        self.fail: list[PersistError] = []
        self.feeds: dict[ObjectRef, list[asyncio.Queue[Observation]]] = {}
        self.hold = False
        self.held: list[tuple[ObjectRef, Observation]] = []
        self.gate: dict[ObjectRef, asyncio.Event] = {}
        self.after_patch: Any = None
        """Called after a patch is applied, before it is answered (the watch may be faster)."""
        self.rv = 0

    # -- test controls ------------------------------------------------------------------

    def put(self, ref: ObjectRef, obj: dict[str, Any] | None, manager: str = "human") -> None:
        if obj is None:
            self.objects.pop(ref, None)
            self._emit(ref, None)
            return
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        owners = self.owners.setdefault(ref, {})
        for path in flatten({k: v for k, v in obj.items() if k != "metadata"}):
            owners.setdefault(path, manager)
        obj["metadata"]["managedFields"] = _managed_fields(owners)
        self.objects[ref] = obj
        self._emit(ref, copy.deepcopy(obj))

    def edit(self, ref: ObjectRef, patch: Mapping[str, Any], manager: str) -> None:
        """Someone else's write."""
        for path in flatten(patch):
            self.owners.setdefault(ref, {})[path] = manager
        self.put(ref, merge_patch(self.objects[ref], patch), manager)

    def release(self) -> None:
        self.hold = False
        for ref, observation in self.held:
            for queue in self.feeds.get(ref, []):
                queue.put_nowait(observation)
        self.held.clear()

    def patches(self, ref: ObjectRef | None = None) -> list[dict[str, Any]]:
        return [c[2] for c in self.calls if c[0] == "patch" and ref in (None, c[1])]

    def _emit(self, ref: ObjectRef, obj: dict[str, Any] | None) -> None:
        observation = Observation(obj)
        if self.hold:
            self.held.append((ref, observation))
            return
        for queue in self.feeds.get(ref, []):
            queue.put_nowait(observation)

    # -- ObjectStore ----------------------------------------------------------------------

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.calls.append(("get", ref, None))
        obj = self.objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    async def patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", ref, copy.deepcopy(dict(patch))))
        if ref in self.gate:
            await self.gate[ref].wait()
        if self.fail:
            raise self.fail.pop(0)
        obj = self.objects.get(ref)
        if obj is None:
            raise NotFoundError(f"{ref} not found")
        rv = patch.get("metadata", {}).get("resourceVersion")
        if rv is not None and rv != obj["metadata"]["resourceVersion"]:
            raise ConflictError("stale resourceVersion")
        body = {k: v for k, v in patch.items() if k != "metadata"}
        meta = {k: v for k, v in patch.get("metadata", {}).items() if k != "resourceVersion"}
        if meta:
            body["metadata"] = meta
        self.edit(ref, body, KIDECAR)
        answer = copy.deepcopy(self.objects[ref])
        if self.after_patch is not None:
            await self.after_patch(ref)
        return answer

    async def create(self, ref: ObjectRef, body: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("not used")

    async def record_event(self, about: ObjectRef, event: Event) -> None:
        raise AssertionError("not used")

    async def watch(self, ref: ObjectRef) -> AsyncIterator[Observation]:
        queue: asyncio.Queue[Observation] = asyncio.Queue()
        self.feeds.setdefault(ref, []).append(queue)
        try:
            yield Observation(copy.deepcopy(self.objects.get(ref)), relisted=True)
            while True:
                yield await queue.get()
        finally:
            self.feeds[ref].remove(queue)

    async def close(self) -> None:
        pass


def _managed_fields(owners: Mapping[tuple[str, ...], str]) -> list[dict[str, Any]]:
    by_manager: dict[str, dict[str, Any]] = {}
    for path, manager in owners.items():
        node = by_manager.setdefault(manager, {})
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return [
        {"manager": m, "operation": "Update", "time": "2026-01-01T00:00:00Z", "fieldsV1": f}
        for m, f in by_manager.items()
    ]


def gameserver(ops: str = "None") -> dict[str, Any]:
    return {"metadata": {"name": "gs-0", "labels": {"keep": "me"}}, "spec": {"opsState": ops}}


def ops(value: str, **kw: Any) -> Write:
    return Write(GS, {"spec": {"opsState": value}}, "policy.gameServerOpsState", **kw)


async def until(predicate: Any, timeout: float = 10.0, what: str = "a condition") -> None:
    """Wait (real time, generous) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def quiet(store: WatchedStore) -> None:
    """Let every task run until nothing changes (a short real pause, no clock movement)."""
    for _ in range(20):
        count = len(store.calls)
        await asyncio.sleep(0.02)
        if len(store.calls) == count:
            return


class Rig:
    """A watched store, an applier following GS and POD on a manual clock, recorded Events."""

    def __init__(self, **options: Any) -> None:
        self.store = WatchedStore()
        self.clock = ManualClock()
        self.events: list[Event] = []
        self.metrics = Metrics()
        self.watches = Watches(self.store)
        self.applier = Applier(
            self.store,
            self.metrics,
            watches=self.watches,
            watched=(GS, POD),
            clock=self.clock,
            on_event=self.events.append,
            options=ApplierOptions(**options),
        )

    def ops(self) -> str:
        return str(self.store.objects[GS]["spec"]["opsState"])

    async def close(self) -> None:
        await self.applier.close()
        await self.watches.close()


def run(scenario: Any, **options: Any) -> None:
    async def main() -> None:
        rig = Rig(**options)
        try:
            await scenario(rig)
        finally:
            await rig.close()

    asyncio.run(main())


# -- desired state against the watched object -----------------------------------------------


def test_a_write_is_one_conditional_patch_and_nothing_is_read() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        rig.applier.submit([ops("Allocated")])
        await until(lambda: rig.ops() == "Allocated")
        await quiet(rig.store)
        assert rig.store.patches() == [
            {"spec": {"opsState": "Allocated"}, "metadata": {"resourceVersion": "1"}}
        ]
        assert [c for c in rig.store.calls if c[0] == "get"] == []
        for _ in range(5):  # the same desired state again: nothing is sent
            rig.applier.submit([ops("Allocated")])
        await quiet(rig.store)
        assert len(rig.store.patches()) == 1

    run(scenario)


def test_a_revert_is_reasserted_at_once_and_reported_with_the_manager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        rig.applier.submit([ops("Allocated")])
        await until(lambda: rig.ops() == "Allocated")
        with caplog.at_level(logging.INFO, "kidecar.persist"):
            rig.store.edit(GS, {"spec": {"opsState": "None"}}, "stale-writer")
            await until(lambda: rig.ops() == "Allocated", what="the repair")  # clock frozen
        assert len(rig.store.patches(GS)) == 2
        assert "changed from 'Allocated' to 'None' by stale-writer" in caplog.text
        reverts = rig.metrics.persist_reverts.labels("gameservers", "spec.opsState")
        assert reverts._value.get() == 1
        assert "contested" not in rig.applier.problems()  # one revert is not a contest

    run(scenario)


def test_a_revert_the_watch_delivers_before_the_write_is_answered_is_counted() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        await until(lambda: rig.applier.objects[GS].live_known)

        async def revert_then_answer(ref: ObjectRef) -> None:
            rig.store.after_patch = None
            rig.store.edit(GS, {"spec": {"opsState": "None"}}, "stale-writer")
            await asyncio.sleep(0.05)  # the watch delivers the write and the revert first

        rig.store.after_patch = revert_then_answer
        rig.applier.submit([ops("Allocated")])
        await until(lambda: len(rig.store.patches()) == 2, what="the repair")
        await until(lambda: rig.ops() == "Allocated")
        assert rig.metrics.persist_reverts.labels("gameservers", "spec.opsState")._value.get() == 1

    run(scenario)


def test_a_field_reverted_again_and_again_is_contested_once_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        rig.applier.submit([ops("Allocated")])
        await until(lambda: rig.ops() == "Allocated")
        with caplog.at_level(logging.INFO, "kidecar.persist"):
            for _ in range(6):
                writes = len(rig.store.patches(GS))
                rig.store.edit(GS, {"spec": {"opsState": "None"}}, "stale-writer")
                await quiet(rig.store)
                # Backoff: never a hot loop.  With the clock frozen, at most the repair that is
                # due at once happens; the others wait for the clock.
                assert len(rig.store.patches(GS)) <= writes + 1
                await rig.clock.advance(rig.applier.options.contest.backoff_cap)
                await until(lambda: rig.ops() == "Allocated", what="the repair after backoff")
        assert caplog.text.count("is contested") == 1
        assert "field manager 'stale-writer'" in caplog.text
        contested = [e for e in rig.events if e.reason == "FieldContested"]
        assert len(contested) == 1 and contested[0].type == "Warning"
        (problem,) = rig.applier.problems()["contested"]
        assert "spec.opsState" in problem and "stale-writer" in problem
        gauge = rig.metrics.persist_contested.labels("gameservers", "spec.opsState")
        assert gauge._value.get() == 1
        # Quiet for a long while: no longer contested.
        await rig.clock.advance(rig.applier.options.contest.quiet + 1)
        await until(lambda: "contested" not in rig.applier.problems(), what="the calm")
        assert gauge._value.get() == 0

    run(scenario)


def test_backoff_delays_grow_and_stay_capped() -> None:
    policy = ContestPolicy(threshold=3, window=120, backoff=1.0, backoff_cap=8.0)
    from kidecar_core._persist.contest import Contest

    contest = Contest(policy)
    path = ("spec", "opsState")
    delays = []
    for i in range(7):
        contest.record(path, "Allocated", "x", now=float(i))
        delays.append(contest.delay(path, "Allocated", now=float(i)))
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert contest.delay(path, "WaitToBeDeleted", now=7.0) == 0.0  # a new value: at once
    contest.record(path, "WaitToBeDeleted", "x", now=8.0)
    assert contest.delay(path, "WaitToBeDeleted", now=8.0) == 0.0
    # Back to an earlier value: a new state change, not a repeat of the old streak.
    contest.record(path, "WaitToBeDeleted", "x", now=9.0)
    assert contest.delay(path, "WaitToBeDeleted", now=9.0) == 1.0
    contest.restart(path)
    contest.record(path, "WaitToBeDeleted", "x", now=10.0)
    assert contest.delay(path, "WaitToBeDeleted", now=10.0) == 0.0


@pytest.mark.parametrize("field", ["threshold", "window", "backoff", "backoff_cap", "quiet"])
def test_contest_policy_refuses_values_not_above_zero(field: str) -> None:
    # backoff 0 would re-assert a contested field in a hot loop; the error names the field.
    with pytest.raises(ValueError, match=f"'{field}' must be > 0"):
        ContestPolicy(**{field: 0})


def test_a_state_changed_back_and_forth_is_repaired_at_once_every_time() -> None:
    """OKG v1.0.0 reverts some state changes, once each: Allocated (reverted), None (not),
    Allocated (reverted) ... each revert of a value set anew is a first one: no backoff."""

    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        await until(lambda: rig.applier.objects[GS].live_known)
        for value in ("Allocated", "None", "Allocated", "None", "Allocated"):
            rig.applier.submit([ops(value)])
            await until(lambda v=value: rig.ops() == v)
            if value == "Allocated":
                rig.store.edit(GS, {"spec": {"opsState": "None"}}, "stale-writer")
                # Repaired with the clock frozen: no backoff for a value set anew.
                await until(lambda v=value: rig.ops() == v, what=f"the repair of {value}")

    run(scenario)


def test_manager_of_reads_managed_fields() -> None:
    obj = {
        "metadata": {
            "managedFields": [
                {"manager": "kidecar", "fieldsV1": {"f:spec": {"f:opsState": {}}}, "time": "2"},
                {"manager": "okg", "fieldsV1": {"f:spec": {"f:opsState": {}}}, "time": "1"},
                {"manager": "kubectl", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}},
            ]
        }
    }
    assert manager_of(obj, ("spec", "opsState")) == "okg"
    assert manager_of(obj, ("metadata", "labels", "a")) == "kubectl"
    assert manager_of(obj, ("spec", "other")) == "unknown"
    assert manager_of(None, ("spec",)) == "unknown"


def test_a_humans_maintaining_is_not_a_revert_and_is_left_alone() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        rig.applier.submit([ops("Allocated")])
        await until(lambda: rig.ops() == "Allocated")
        rig.store.edit(GS, {"spec": {"opsState": "Maintaining"}}, "kubectl-edit")
        await quiet(rig.store)
        assert rig.ops() == "Maintaining"
        assert len(rig.store.patches(GS)) == 1
        assert rig.metrics.persist_reverts.labels("gameservers", "spec.opsState")._value.get() == 0
        rig.store.edit(GS, {"spec": {"opsState": "None"}}, "kubectl-edit")  # the human is done
        await until(lambda: rig.ops() == "Allocated", what="kidecar to take over again")

    run(scenario)


def test_the_guard_holds_for_writes_of_the_field_that_bring_no_guard() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver("Maintaining"), manager="kubectl-edit")
        rig.applier.start()
        # A jsonPath / jsonPathConfigs / override write of /spec/opsState carries no guard.
        rig.applier.submit([Write(GS, {"spec": {"opsState": "WaitToBeDeleted"}}, "x.jsonPath")])
        await quiet(rig.store)
        assert rig.ops() == "Maintaining"
        assert rig.store.patches() == []
        # A write that brings its own guard for the field decides for itself ([] = no guard).
        rig.applier.submit([ops("Allocated", guards=(FieldNotIn("/spec/opsState", ()),))])
        await until(lambda: rig.ops() == "Allocated")

    run(scenario)


def test_custom_ops_state_is_written_with_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        with caplog.at_level(logging.WARNING, "kidecar.persist"):
            for value in ("Draining", "None", "Draining"):
                rig.applier.submit([ops(value)])
                await until(lambda v=value: rig.ops() == v)
        assert caplog.text.count("'Draining', which OpenKruiseGame does not know") == 1

    run(scenario)


def test_a_conflict_is_retried_from_the_watched_state_without_a_read() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        await until(lambda: rig.applier.objects[GS].live_known)
        rig.store.hold = True  # the next change reaches kidecar late
        rig.store.edit(GS, {"spec": {"updatePriority": 5}}, "okg")
        rig.applier.submit([ops("Allocated")])
        await until(lambda: len(rig.store.patches()) == 1, what="the stale write")
        rig.store.release()  # the watch catches up
        await until(lambda: rig.ops() == "Allocated", what="the retry")
        assert [c for c in rig.store.calls if c[0] == "get"] == []
        assert rig.store.objects[GS]["spec"]["updatePriority"] == 5
        assert len(rig.store.patches()) == 2

    run(scenario)


def test_events_older_than_our_own_write_are_not_taken_for_a_revert() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        await until(lambda: rig.applier.objects[GS].live_known)
        rig.store.hold = True  # the watch lags behind kidecar's own writes
        rig.applier.submit([ops("Allocated")])
        await until(lambda: rig.ops() == "Allocated")
        rig.applier.submit([ops("WaitToBeDeleted")])  # written on top of the first answer
        await until(lambda: rig.ops() == "WaitToBeDeleted")
        rig.store.release()  # now: the event of the first write, then of the second
        await quiet(rig.store)
        assert len(rig.store.patches()) == 2  # no "repair" of the second by the first's event
        assert rig.metrics.persist_reverts.labels("gameservers", "spec.opsState")._value.get() == 0
        assert rig.applier.objects[GS].awaiting is None

    run(scenario)


def test_gameserver_is_written_before_the_pod_when_one_result_touches_both() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.store.put(POD, {"metadata": {"name": "gs-0"}}, manager="kubelet")
        rig.applier.start()
        await until(lambda: rig.applier.objects[POD].live_known)
        await until(lambda: rig.applier.objects[GS].live_known)
        gate = rig.store.gate[GS] = asyncio.Event()
        rig.applier.submit(
            [
                Write(POD, {"metadata": {"annotations": {"state": "busy"}}}, "annotationKey"),
                ops("Allocated"),
            ]
        )
        await quiet(rig.store)
        assert [c[1] for c in rig.store.calls if c[0] == "patch"] == [GS]  # the pod waits
        gate.set()
        await until(lambda: len(rig.store.patches(POD)) == 1, what="the pod write")
        assert [c[1] for c in rig.store.calls if c[0] == "patch"] == [GS, POD]

    run(scenario)


def test_the_pod_is_not_held_back_by_a_missing_gameserver() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(POD, {"metadata": {"name": "gs-0"}}, manager="kubelet")
        rig.applier.start()
        rig.applier.submit(
            [Write(POD, {"metadata": {"labels": {"state": "idle"}}}, "labelKey"), ops("None")]
        )
        await until(lambda: len(rig.store.patches(POD)) == 1, what="the pod write")

    run(scenario)


def test_a_missing_gameserver_becomes_visible_and_is_written_when_it_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(rig: Rig) -> None:
        rig.applier.start()
        with caplog.at_level(logging.INFO, "kidecar.persist"):
            rig.applier.submit([ops("Allocated")])
            await until(lambda: "waiting" in rig.applier.problems())
            await rig.clock.advance(rig.applier.options.missing_timeout)
            await until(lambda: "missing" in rig.applier.problems(), what="missing")
            await rig.clock.advance(rig.applier.options.missing_timeout * 3)
            await quiet(rig.store)
        assert caplog.text.count("cannot land") == 1
        assert [e.reason for e in rig.events] == ["WriteCannotLand"]
        assert "policy.gameServerOpsState" in rig.events[0].message
        assert rig.store.calls == []  # waiting costs no request: the watch says when it comes
        rig.store.put(GS, gameserver(), manager="okg")
        await until(lambda: rig.ops() == "Allocated", what="the late write")
        assert rig.applier.problems() == {}

    run(scenario, missing_timeout=60.0)


def test_flush_ends_at_once_when_the_pod_is_gone() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.store.put(POD, {"metadata": {"name": "gs-0"}}, manager="kubelet")
        rig.applier.start()
        await until(lambda: rig.applier.objects[POD].live_known)
        rig.store.gate[GS] = asyncio.Event()  # the GameServer write would hang
        rig.store.put(POD, None)  # the pod is deleted
        await until(lambda: rig.applier.objects[POD].live is None)
        rig.applier.submit([ops("Allocated")])
        async with asyncio.timeout(5):  # generous; the budget given is an hour
            assert await rig.applier.flush(3600.0) is True

    run(scenario)


def test_flush_ends_at_once_when_what_is_left_has_no_object() -> None:
    async def scenario(rig: Rig) -> None:
        rig.store.put(POD, {"metadata": {"name": "gs-0"}}, manager="kubelet")
        rig.applier.start()
        rig.applier.submit(
            [Write(POD, {"metadata": {"labels": {"state": "idle"}}}, "labelKey"), ops("None")]
        )
        async with asyncio.timeout(5):
            assert await rig.applier.flush(3600.0) is True
        assert rig.store.objects[POD]["metadata"]["labels"] == {"state": "idle"}

    run(scenario)


def test_removed_keys_are_forgotten_beyond_a_bound_but_recent_ones_are_repaired() -> None:
    """A game that sets and removes a new label per match must not grow the desired state for
    ever; the newest removals still hold against a writer that puts the label back."""

    def label(key: str, value: str | None) -> Write:
        return Write(GS, {"metadata": {"labels": {key: value}}}, "game_api.labels")

    async def scenario(rig: Rig) -> None:
        rig.store.put(GS, gameserver(), manager="okg")
        rig.applier.start()
        count = MAX_HELD_DELETIONS + 100
        for i in range(count):
            rig.applier.submit([label(f"match-{i}", "on")])
            rig.applier.submit([label(f"match-{i}", None)])
        await until(
            lambda: rig.applier.objects[GS].written_generation == rig.applier.objects[GS].generation
        )
        await quiet(rig.store)
        labels = rig.store.objects[GS]["metadata"]["labels"]
        assert not [k for k in labels if k.startswith("match-")]
        rig.applier.submit([ops("Allocated")])  # one more look at the object
        await until(lambda: rig.ops() == "Allocated")
        state = rig.applier.objects[GS]
        removed = [p for p, leaf in state.desired.items() if leaf.value is None]
        assert len(removed) == MAX_HELD_DELETIONS
        assert ("metadata", "labels", f"match-{count - 1}") in state.desired
        assert ("metadata", "labels", "match-0") not in state.desired
        assert len(state.ours) <= MAX_HELD_DELETIONS + 1
        # the newest removal is still kidecar's: a stale writer putting it back is repaired
        rig.store.edit(GS, {"metadata": {"labels": {f"match-{count - 1}": "on"}}}, "stale")
        await until(
            lambda: f"match-{count - 1}" not in rig.store.objects[GS]["metadata"]["labels"],
            what="the repair",
        )

    run(scenario)

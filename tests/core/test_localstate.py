"""The local state file: merge patches, conflicts, and failed saves that lose nothing."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import kidecar_core._store.local as local
from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity
from kidecar_core.errors import (
    ConflictError,
    NotFoundError,
    PermanentPersistError,
    TransientPersistError,
)

WHO = PodIdentity("gs-0", "default")
GS = ObjectRef.gameserver(WHO)
CM = ObjectRef.configmap("default", "sidecar-result")


def test_merge_patch_conflict_and_missing_objects(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        gs = await store.patch(
            GS, {"spec": {"opsState": "Allocated"}, "metadata": {"labels": {"a": "b"}}}
        )
        assert gs["spec"]["opsState"] == "Allocated" and gs["metadata"]["labels"] == {"a": "b"}
        gs = await store.patch(GS, {"metadata": {"labels": {"a": None}}})
        assert gs["metadata"]["labels"] == {}
        with pytest.raises(ConflictError):
            await store.patch(
                GS, {"spec": {"opsState": "None"}, "metadata": {"resourceVersion": "1"}}
            )
        with pytest.raises(NotFoundError):
            await store.patch(CM, {"data": {"a": "1"}})
        await store.create(CM, {"data": {"a": "1"}})
        with pytest.raises(ConflictError):
            await store.create(CM, {"data": {"a": "2"}})
        on_disk = json.loads((tmp_path / "state.json").read_text())
        assert on_disk["configmaps"]["sidecar-result"]["data"] == {"a": "1"}

    asyncio.run(main())


def test_a_failed_save_is_transient_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        real_save = local.save_document
        failures = [OSError(errno.ENOSPC, "No space left on device")]

        def save(path: Path, doc: dict[str, Any], expected: Any) -> Any:
            if failures:
                raise failures.pop()
            return real_save(path, doc, expected)

        monkeypatch.setattr(local, "save_document", save)
        with pytest.raises(TransientPersistError, match="No space left on device"):
            await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        # Neither the cached document nor the file took the failed change ...
        gs = await store.get(GS)
        assert gs is not None and gs["spec"]["opsState"] == "None"
        # ... and the next attempt works.
        await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        on_disk = json.loads((tmp_path / "state.json").read_text())
        assert on_disk["gameserver"]["spec"]["opsState"] == "Allocated"
        failures.append(OSError(errno.EROFS, "Read-only file system"))
        with pytest.raises(TransientPersistError):
            await store.create(CM, {"data": {}})
        assert await store.get(CM) is None
        failures.append(OSError(errno.EIO, "I/O error"))
        with pytest.raises(TransientPersistError):
            await store.record_event(ObjectRef.pod(WHO), Event("R", "m"))
        assert json.loads((tmp_path / "state.json").read_text())["events"] == []

    asyncio.run(main())


def test_hand_edits_are_picked_up(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "state.json"
        store = LocalStore(path, WHO)
        doc = json.loads(path.read_text())
        doc["gameserver"]["spec"]["opsState"] = "Maintaining"
        path.write_text(json.dumps(doc))
        gs = await store.get(GS)
        assert gs is not None and gs["spec"]["opsState"] == "Maintaining"
        path.write_text("not json")
        with pytest.raises(Exception, match="not a readable JSON file"):
            await store.get(GS)

    asyncio.run(main())


POD = ObjectRef.pod(WHO)


def test_patch_status_merges_pod_conditions_by_type_like_the_api_server(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        ready = {"type": "Ready", "status": "True", "reason": "kubelet"}
        await store.patch(POD, {"status": {"conditions": [ready], "phase": "Running"}})
        mine = {"type": "game.kruise.io/idle", "status": "True", "message": "idle"}
        pod = await store.patch_status(POD, {"status": {"conditions": [mine]}})
        assert pod["status"] == {"conditions": [ready, mine], "phase": "Running"}
        pod = await store.patch_status(
            POD, {"status": {"conditions": [{"type": "game.kruise.io/idle", "status": "False"}]}}
        )
        assert pod["status"]["conditions"] == [ready, {**mine, "status": "False"}]
        assert await store.get(POD) == pod
        # No conditions in the patch: a merge patch of the status, like patch().
        pod = await store.patch_status(POD, {"status": {"phase": "Succeeded"}})
        assert pod["status"]["phase"] == "Succeeded" and len(pod["status"]["conditions"]) == 2
        with pytest.raises(NotFoundError):
            await store.patch_status(ObjectRef.pod(PodIdentity("other", "default")), {})

    asyncio.run(main())


def test_list_objects_of_a_resource_in_a_namespace(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    marker: dict[str, Any] = {"kind": "PodProbeMarker", "spec": {}}
    ref = ObjectRef("apps.kruise.io", "v1alpha1", "podprobemarkers", "default", "")
    document = {
        "objects": {
            "apps.kruise.io/v1alpha1/podprobemarkers/default/b": {**marker, "n": "b"},
            "apps.kruise.io/v1alpha1/podprobemarkers/default/a": {**marker, "n": "a"},
            "apps.kruise.io/v1alpha1/podprobemarkers/elsewhere/c": {**marker, "n": "c"},
        },
        "configmaps": {"x": {"data": {}}},
    }
    path.write_text(json.dumps(document))

    async def main() -> None:
        store = LocalStore(path, WHO)
        assert [m["n"] for m in await store.list(ref)] == ["a", "b"]
        assert [p["metadata"]["name"] for p in await store.list(POD)] == ["gs-0"]
        assert await store.list(CM) == [{"data": {}}]
        assert await store.list(ObjectRef.pod(PodIdentity("x", "elsewhere"))) == []

    asyncio.run(main())


@pytest.mark.parametrize("write", ["patch", "event", "create"])
def test_a_hand_edit_made_while_kidecar_saves_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """A human saves the file between kidecar's read and its rename (the moment a real editor can
    hit; made certain here by editing inside kidecar's fsync): both changes end up in the file."""
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO)
        await store.get(GS)
        real_fsync = os.fsync
        edits = ["x"]

        def fsync_then_edit(fd: int) -> None:
            real_fsync(fd)
            if edits:
                doc = json.loads(path.read_text())
                doc["gameserver"]["metadata"]["labels"][edits.pop()] = "human"
                path.write_text(json.dumps(doc))  # in place, as `echo > file` or an editor does

        monkeypatch.setattr(os, "fsync", fsync_then_edit)
        if write == "patch":
            await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        elif write == "event":
            await store.record_event(GS, Event("Tested", "a test event"))
        else:
            await store.create(CM, {"data": {"a": "1"}})
        on_disk = json.loads(path.read_text())
        assert on_disk["gameserver"]["metadata"]["labels"] == {"x": "human"}
        assert (on_disk["gameserver"]["spec"]["opsState"] == "Allocated") == (write == "patch")
        assert len(on_disk["events"]) == (write == "event")
        assert ("sidecar-result" in on_disk["configmaps"]) == (write == "create")
        assert (await store.get(GS))["metadata"]["labels"] == {"x": "human"}  # type: ignore[index]

    asyncio.run(main())


def test_a_file_that_never_stops_changing_is_a_transient_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO)
        real_fsync = os.fsync
        edits = iter(range(1000))

        def fsync_then_edit(fd: int) -> None:
            real_fsync(fd)
            doc = json.loads(path.read_text())
            doc["gameserver"]["metadata"]["labels"]["n"] = str(next(edits))
            path.write_text(json.dumps(doc))

        monkeypatch.setattr(os, "fsync", fsync_then_edit)
        with pytest.raises(TransientPersistError, match="keeps changing while kidecar writes"):
            await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        assert "opsState" not in json.loads(path.read_text())["gameserver"]["spec"] or (
            json.loads(path.read_text())["gameserver"]["spec"]["opsState"] != "Allocated"
        )

    asyncio.run(main())


@pytest.mark.parametrize(
    ("section", "value", "kind"),
    [
        ("configmaps", None, "a JSON object"),
        ("objects", [], "a JSON object"),
        ("events", {}, "a JSON array"),
    ],
)
def test_a_hand_edit_that_changes_a_section_type_is_a_clear_error(
    tmp_path: Path, section: str, value: Any, kind: str
) -> None:
    """Valid JSON whose collections have another type (``"configmaps": null``) is refused with
    the file and the key named, as a broken file is, rather than failing inside a write."""
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO)
        doc = json.loads(path.read_text())
        doc[section] = value
        path.write_text(json.dumps(doc))
        with pytest.raises(PermanentPersistError, match=f"'{section}' must be {kind}"):
            await store.get(GS)
        with pytest.raises(PermanentPersistError, match=str(path)):
            await store.record_event(ObjectRef.pod(WHO), Event("R", "m"))
        assert json.loads(path.read_text())[section] == value  # the file is left as it is

    asyncio.run(main())


def test_a_write_shares_nothing_with_the_caller_s_patch(tmp_path: Path) -> None:
    """The store keeps its own copy of what a patch brought (RFC 7386 values, lists included):
    a caller changing its patch afterwards changes nothing in the store or the file."""

    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO)
        finalizers = ["a"]
        patch: dict[str, Any] = {"metadata": {"finalizers": finalizers}}
        await store.patch(GS, patch)
        finalizers.append("b")
        patch["metadata"]["labels"] = {"x": "y"}
        gs = await store.get(GS)
        assert gs is not None
        assert gs["metadata"]["finalizers"] == ["a"] and gs["metadata"]["labels"] == {}

    asyncio.run(main())


def test_a_cancelled_write_keeps_the_lock_until_its_save_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write cancelled while its worker thread still saves (at shutdown, under a timeout)
    holds the store until the save has ended and keeps what it wrote: a later write is never
    replaced in the file by the cancelled one's rename, and the file and the store agree."""
    path = tmp_path / "state.json"
    entered, release = threading.Event(), threading.Event()
    real_save = local.save_document

    def slow_save(path: Path, doc: dict[str, Any], expected: Any) -> Any:
        if doc["gameserver"]["spec"]["opsState"] == "Allocated":
            entered.set()
            release.wait(10)
        return real_save(path, doc, expected)

    monkeypatch.setattr(local, "save_document", slow_save)

    async def main() -> None:
        store = LocalStore(path, WHO)
        first = asyncio.create_task(store.patch(GS, {"spec": {"opsState": "Allocated"}}))
        assert await asyncio.to_thread(entered.wait, 10)  # the first write is in its save
        first.cancel()
        second = asyncio.create_task(store.record_event(ObjectRef.pod(WHO), Event("R", "m")))
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()  # both wait for the first save
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        on_disk = json.loads(path.read_text())
        assert on_disk["gameserver"]["spec"]["opsState"] == "Allocated"  # saved: kept
        assert [e["reason"] for e in on_disk["events"]] == ["R"]
        gs = await store.get(GS)
        assert gs == on_disk["gameserver"]

    asyncio.run(main())


def test_an_object_a_hand_edit_set_to_null_is_absent_for_every_verb(tmp_path: Path) -> None:
    """``"sidecar-result": null`` in the state file: get says absent, so create creates it
    (it used to answer 409 "already exists" for what get called missing)."""
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO)
        doc = json.loads(path.read_text())
        doc["configmaps"]["sidecar-result"] = None
        path.write_text(json.dumps(doc))
        assert await store.get(CM) is None
        with pytest.raises(NotFoundError):
            await store.patch(CM, {"data": {"a": "1"}})
        created = await store.create(CM, {"data": {"a": "1"}})
        assert created["data"] == {"a": "1"}
        assert json.loads(path.read_text())["configmaps"]["sidecar-result"]["data"] == {"a": "1"}

    asyncio.run(main())

"""The local state file: merge patches, conflicts, and failed saves that lose nothing."""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity
from kidecar_core.errors import ConflictError, NotFoundError, TransientPersistError

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
        real_save = store._save
        failures = [OSError(errno.ENOSPC, "No space left on device")]

        def save(doc: dict[str, Any]) -> None:
            if failures:
                raise failures.pop()
            real_save(doc)

        monkeypatch.setattr(store, "_save", save)
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

"""``Write.once``: values written once and never re-asserted (keys several sidecars share).

Two appliers play two pods of one workload writing the same ConfigMap in a real local state
file. The per-pod key is desired state (re-asserted at resync); the shared per-workload key is
written once, so the older pod never puts its older value back over the newer one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.applier import Applier
from kidecar_core._persist.write import Write
from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import ObjectRef, PodIdentity

CM = ObjectRef.configmap("default", "sidecar-result")


def data(path: Path) -> dict[str, str]:
    result: dict[str, str] = json.loads(path.read_text())["configmaps"]["sidecar-result"]["data"]
    return result


def test_once_writes_are_not_reasserted_at_resync(tmp_path: Path) -> None:
    state = tmp_path / "state.json"

    async def main() -> None:
        stores = [LocalStore(state, PodIdentity(f"gs-{i}", "default")) for i in (0, 1)]
        a, b = (Applier(s, Metrics(), resync_interval=0.05, backoff_cap=0.05) for s in stores)
        a.submit(
            [
                Write(CM, {"data": {"pod.gs-0": "v3"}}, "a", create=True),
                Write(CM, {"data": {"workload.gss": "v3"}}, "a", create=True, once=True),
            ]
        )
        assert await a.flush(5)
        b.submit([Write(CM, {"data": {"workload.gss": "v4"}}, "b", create=True, once=True)])
        assert await b.flush(5)
        # Someone removes gs-0's own key: a resync of gs-0 puts it back, and must not put its
        # older workload value back at the same time.
        await stores[1].patch(CM, {"data": {"pod.gs-0": None}})
        for _ in range(100):
            await asyncio.sleep(0.02)
            if "pod.gs-0" in data(state):
                break
        await asyncio.sleep(0.2)  # several more resync periods
        assert data(state) == {"pod.gs-0": "v3", "workload.gss": "v4"}
        # A new once-write with a new value is written again.
        a.submit([Write(CM, {"data": {"workload.gss": "v5"}}, "a", create=True, once=True)])
        assert await a.flush(5)
        assert data(state)["workload.gss"] == "v5"
        await a.close()
        await b.close()

    asyncio.run(main())


def test_once_write_that_already_holds_is_dropped_without_a_patch(tmp_path: Path) -> None:
    state = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(state, PodIdentity("gs-0", "default"))
        await store.create(CM, {"data": {"workload.gss": "v1"}})
        metrics = Metrics()
        applier = Applier(store, metrics, resync_interval=0.05)
        applier.submit([Write(CM, {"data": {"workload.gss": "v1"}}, "a", create=True, once=True)])
        assert await applier.flush(5)
        assert applier.objects[CM].desired == {}
        assert metrics.persist_writes.labels("configmaps", "patch")._value.get() == 0
        await applier.close()

    asyncio.run(main())

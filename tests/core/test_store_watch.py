"""``ObjectStore.watch``: the local state file (own writes at once, anyone else's by polling)
and the real kube-apiserver (by name, resume, 410, 403, bookmarks), and the shared Watches."""

from __future__ import annotations

import asyncio
import json
import os
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kidecar_core._store.kube import KubeStore
from kidecar_core._store.local import LocalStore
from kidecar_core._store.objects import ObjectRef, Observation, PodIdentity
from kidecar_core._store.watches import Watches, follow_object
from kidecar_core.errors import ConflictError, ForbiddenError, PermanentPersistError
from tests.support.apiserver import TestCluster
from tests.support.faultproxy import FaultProxy

WHO = PodIdentity("gs-0", "default")
GS = ObjectRef.gameserver(WHO)


async def next_of(observations: AsyncIterator[Observation], timeout: float = 10.0) -> Observation:
    """The next observation (generous real-time bound: only a hang fails)."""
    async with asyncio.timeout(timeout):
        return await anext(observations)


async def until_state(
    observations: AsyncIterator[Observation], predicate: Any, timeout: float = 20.0
) -> Observation:
    async with asyncio.timeout(timeout):
        while True:
            observation = await anext(observations)
            if observation.error is None and predicate(observation.object):
                return observation


def ops(obj: dict[str, Any] | None) -> Any:
    return None if obj is None else obj["spec"].get("opsState")


# -- local mode -------------------------------------------------------------------------------


def test_local_watch_reports_own_writes_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        # A poll period of an hour: whatever is seen below comes from the write itself.
        store = LocalStore(tmp_path / "state.json", WHO, poll_interval=3600)
        watch = store.watch(GS)
        first = await next_of(watch)
        assert first.relisted and ops(first.object) == "None"
        await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        second = await next_of(watch)
        assert not second.relisted and ops(second.object) == "Allocated"
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_local_watch_notices_a_hand_edit_and_a_stale_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO, poll_interval=0.05)
        watch = store.watch(GS)
        before = (await next_of(watch)).object
        assert before is not None
        # A human edits the file with an editor that writes a new file and renames it over.
        doc = json.loads(path.read_text())
        doc["gameserver"]["spec"]["opsState"] = "Maintaining"
        tmp = path.with_suffix(".edit")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
        seen = await until_state(watch, lambda o: ops(o) == "Maintaining")
        assert seen.object is not None
        rv_before = before["metadata"]["resourceVersion"]
        assert seen.object["metadata"]["resourceVersion"] != rv_before  # a new version
        # A write prepared against the state before the edit is refused, as by the API server.
        with pytest.raises(ConflictError):
            await store.patch(
                GS, {"spec": {"opsState": "None"}, "metadata": {"resourceVersion": rv_before}}
            )
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_local_watch_reports_an_unreadable_file_once_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    async def main() -> None:
        store = LocalStore(path, WHO, poll_interval=0.05)
        watch = store.watch(GS)
        await next_of(watch)
        good = path.read_text()
        path.write_text(good[: len(good) // 2])  # a half-saved edit
        problem = await next_of(watch)
        assert isinstance(problem.error, PermanentPersistError)
        assert "not a readable JSON file" in str(problem.error)
        path.write_text(good.replace('"opsState": "None"', '"opsState": "Kill"'))
        fixed = await next_of(watch)  # no second error in between
        assert fixed.error is None and ops(fixed.object) == "Kill" and fixed.relisted
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


@pytest.mark.parametrize("fix", ["renamed back", "deleted"])
def test_local_watch_recovers_when_the_file_comes_back_as_it_was(tmp_path: Path, fix: str) -> None:
    """The good file renamed back over a broken one has the identity kidecar last read (inode,
    mtime, size), and a deleted file leaves kidecar's document as it was: the watch reports the
    state again all the same (both are fixes of the error it reported)."""
    path = tmp_path / "state.json"
    kept = tmp_path / "state.json.good"

    async def main() -> None:
        store = LocalStore(path, WHO, poll_interval=0.05)
        watch = store.watch(GS)
        await next_of(watch)
        os.link(path, kept)  # the good file, the same inode
        broken = path.with_suffix(".broken")
        broken.write_text("{not json")
        os.replace(broken, path)
        problem = await next_of(watch)
        assert isinstance(problem.error, PermanentPersistError)
        if fix == "renamed back":
            os.replace(kept, path)
        else:
            path.unlink()
        fixed = await next_of(watch)
        assert fixed.error is None and ops(fixed.object) == "None" and fixed.relisted
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_local_watch_polls_of_an_unchanged_file_copy_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll costs a ``stat`` while nothing changed; the object is copied again only after a
    change."""
    import kidecar_core._store.local as local

    copies = 0
    real_deepcopy = local.copy.deepcopy

    def counting(value: Any) -> Any:
        nonlocal copies
        copies += 1
        return real_deepcopy(value)

    monkeypatch.setattr(local, "copy", types.SimpleNamespace(deepcopy=counting))

    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO, poll_interval=0.01)
        watch = store.watch(GS)
        await next_of(watch)
        polled = asyncio.create_task(anext(watch))
        for _ in range(20):  # about 20 polls of the unchanged file
            await asyncio.sleep(0.01)
        assert not polled.done()
        assert copies == 1  # the first observation only
        # Writes in a row: the watch follows them to the last one.
        await store.patch(GS, {"spec": {"opsState": "Kill"}})
        await store.patch(GS, {"spec": {"opsState": "None"}})
        last = await store.patch(GS, {"spec": {"opsState": "Kill"}})
        async with asyncio.timeout(10):
            seen = await polled

        def is_last(obj: dict[str, Any] | None) -> bool:
            return obj is not None and obj["metadata"] == last["metadata"]

        if not is_last(seen.object):  # the watch may have read the file after the last write
            await until_state(watch, is_last)
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_watches_share_one_store_watch_and_replay_the_latest(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "state.json", WHO, poll_interval=3600)
        opened = 0
        real_watch = store.watch

        def counting_watch(ref: ObjectRef) -> AsyncIterator[Observation]:
            nonlocal opened
            opened += 1
            return real_watch(ref)

        store.watch = counting_watch  # type: ignore[method-assign]
        watches = Watches(store)
        a = watches.subscribe(GS)
        assert ops((await next_of(a)).object) == "None"
        b = watches.subscribe(GS)  # a late subscriber gets the latest state first
        assert ops((await next_of(b)).object) == "None"
        follower = follow_object(watches, GS)
        assert ops(await asyncio.wait_for(anext(follower), 10)) == "None"
        await store.patch(GS, {"spec": {"opsState": "Allocated"}})
        assert ops((await next_of(a)).object) == "Allocated"
        assert ops((await next_of(b)).object) == "Allocated"
        assert ops(await asyncio.wait_for(anext(follower), 10)) == "Allocated"
        assert opened == 1
        a.close()
        b.close()
        await follower.aclose()  # type: ignore[attr-defined]
        assert watches.latest(GS) is None  # nobody follows it: the store's watch is closed
        await watches.close()

    asyncio.run(main())


# -- the real API server ----------------------------------------------------------------------


def kube_refs(namespace: str, name: str = "gs-0") -> ObjectRef:
    return ObjectRef.gameserver(PodIdentity(name, namespace))


def run_with_store(kubeconfig: Path, scenario: Any, **attributes: Any) -> None:
    async def main() -> None:
        store = KubeStore.from_kubeconfig(str(kubeconfig))
        for key, value in attributes.items():
            setattr(store, key, value)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def admin_patch(cluster: TestCluster, namespace: str, name: str, ops_state: str) -> None:
    with cluster.admin_api_client() as api:
        k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
            "game.kruise.io", "v1alpha1", namespace, "gameservers", name,
            {"spec": {"opsState": ops_state}},
        )  # fmt: skip


@pytest.mark.kube
def test_kube_watch_follows_one_object_by_name(
    kube_cluster: TestCluster, kube_namespace: str, sa_kubeconfig: Path, make_game_server: Any
) -> None:
    make_game_server("gs-0")
    make_game_server("gs-1")
    gs = kube_refs(kube_namespace)

    async def scenario(store: KubeStore) -> None:
        watch = store.watch(gs)
        first = await next_of(watch)
        assert first.relisted and ops(first.object) == "None"
        await asyncio.to_thread(admin_patch, kube_cluster, kube_namespace, "gs-1", "Kill")
        await asyncio.to_thread(admin_patch, kube_cluster, kube_namespace, "gs-0", "Allocated")
        seen = await next_of(watch)  # gs-1's change is not reported: the watch is by name
        assert seen.object is not None and seen.object["metadata"]["name"] == "gs-0"
        assert ops(seen.object) == "Allocated"
        await store.patch(gs, {"spec": {"opsState": "WaitToBeDeleted"}})
        own = await next_of(watch)
        assert ops(own.object) == "WaitToBeDeleted"
        managers = {e["manager"] for e in own.object["metadata"]["managedFields"]}  # type: ignore[index]
        assert "kidecar" in managers  # writes carry kidecar's field manager
        await watch.aclose()  # type: ignore[attr-defined]

    run_with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_kube_watch_sees_deletion_and_creation(
    kube_cluster: TestCluster, kube_namespace: str, sa_kubeconfig: Path
) -> None:
    gs = kube_refs(kube_namespace)

    async def scenario(store: KubeStore) -> None:
        watch = store.watch(gs)
        assert (await next_of(watch)).object is None  # does not exist yet
        await asyncio.to_thread(kube_cluster.create_game_server, kube_namespace, "gs-0")
        assert ops((await until_state(watch, lambda o: o is not None)).object) == "None"
        with kube_cluster.admin_api_client() as api:
            await asyncio.to_thread(
                k8s.CustomObjectsApi(api).delete_namespaced_custom_object,
                "game.kruise.io", "v1alpha1", kube_namespace, "gameservers", "gs-0",
            )  # fmt: skip
        assert (await until_state(watch, lambda o: o is None)).object is None
        await watch.aclose()  # type: ignore[attr-defined]

    run_with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_kube_watch_resumes_after_the_server_ends_it_and_relists_on_410(
    kube_cluster: TestCluster,
    kube_namespace: str,
    fault_proxy_kubeconfig: Path,
    fault_proxy: FaultProxy,
    make_game_server: Any,
) -> None:
    make_game_server("gs-0")
    gs = kube_refs(kube_namespace)
    collection = r"/gameservers$"
    one = r"/gameservers/gs-0$"

    async def scenario(store: KubeStore) -> None:
        watch = store.watch(gs)
        await next_of(watch)
        # The server ends each watch after 1 s here: kidecar resumes from the last version,
        # without a read, and misses nothing.
        for value in ("Allocated", "None", "WaitToBeDeleted"):
            await asyncio.sleep(1.5)
            await asyncio.to_thread(admin_patch, kube_cluster, kube_namespace, "gs-0", value)
            assert ops((await until_state(watch, lambda o, v=value: ops(o) == v)).object) == value
        assert fault_proxy.count("GET", one) == 1  # only the first list
        assert fault_proxy.count("GET", collection) >= 3  # one watch request per period
        # The server no longer keeps the version to resume from: a relist, then on.
        fault_proxy.inject("GET", collection, 410)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(admin_patch, kube_cluster, kube_namespace, "gs-0", "Kill")
        assert ops((await until_state(watch, lambda o: ops(o) == "Kill")).object) == "Kill"
        assert fault_proxy.count("GET", one) == 2
        await watch.aclose()  # type: ignore[attr-defined]

    run_with_store(fault_proxy_kubeconfig, scenario, watch_timeout=(1, 1))
    watch_requests = [r for r in fault_proxy.requests() if r.path.endswith("/gameservers")]
    assert all("allowWatchBookmarks=true" in r.query for r in watch_requests)
    assert all("fieldSelector=metadata.name%3Dgs-0" in r.query for r in watch_requests)


def drop_watch_from_role(cluster: TestCluster, namespace: str) -> None:
    """Take the ``watch`` verb out of every rule of the ``kidecar`` Role (an older Role)."""
    with cluster.admin_api_client() as api:
        rbac = k8s.RbacAuthorizationV1Api(api)
        role = api.sanitize_for_serialization(rbac.read_namespaced_role("kidecar", namespace))
        for rule in role["rules"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
        rbac.patch_namespaced_role("kidecar", namespace, {"rules": role["rules"]})


@pytest.mark.kube
def test_kube_watch_without_the_rbac_verb_reports_forbidden_and_keeps_reading(
    kube_cluster: TestCluster, kube_namespace: str, sa_kubeconfig: Path, make_game_server: Any
) -> None:
    make_game_server("gs-0")
    gs = kube_refs(kube_namespace)
    drop_watch_from_role(kube_cluster, kube_namespace)

    async def scenario(store: KubeStore) -> None:
        watch = store.watch(gs)
        assert ops((await next_of(watch)).object) == "None"  # the read is allowed
        problem = await next_of(watch)
        assert isinstance(problem.error, ForbiddenError)
        assert problem.error.rule == "verb=watch apiGroup=game.kruise.io resource=gameservers"
        await watch.aclose()  # type: ignore[attr-defined]

    run_with_store(sa_kubeconfig, scenario)


@pytest.mark.kube
def test_follow_object_raises_the_errors_asked_for_and_skips_the_others(
    kube_cluster: TestCluster, kube_namespace: str, sa_kubeconfig: Path, make_game_server: Any
) -> None:
    """``watch_object(ref, stop_on=(ForbiddenError,))`` (through :func:`follow_object`): the
    state first (the read is allowed), then the 403 of the watch request raised, the
    subscription closed; without ``stop_on`` the same watch yields the state and no error."""
    make_game_server("gs-0")
    gs = kube_refs(kube_namespace)
    drop_watch_from_role(kube_cluster, kube_namespace)

    async def scenario(store: KubeStore) -> None:
        watches = Watches(store)
        stopping = follow_object(watches, gs, stop_on=(ForbiddenError,))
        assert ops(await asyncio.wait_for(anext(stopping), 10)) == "None"
        patient = follow_object(watches, gs)  # skips the errors: the watch reads again
        assert ops(await asyncio.wait_for(anext(patient), 20)) == "None"
        with pytest.raises(ForbiddenError) as raised:
            await asyncio.wait_for(anext(stopping), 10)
        assert raised.value.verb == "watch"
        assert watches.latest(gs) is not None  # the patient one still follows it
        await patient.aclose()  # type: ignore[attr-defined]
        assert watches.latest(gs) is None  # both gone: the store's watch is closed
        await watches.close()

    run_with_store(sa_kubeconfig, scenario)

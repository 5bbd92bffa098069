"""kidecar keeps what it writes true, against the real API server with real ``kidecar run``
processes: another writer reverting kidecar's fields is repaired (a stale writer like OKG
v1.0.0's GameServer controller), a field reverted again and again is reported once and
re-asserted with backoff, guards protect the field whatever writes it, and a pod that is gone
ends the shutdown flush at once.

Timing is never asserted: the tests wait for each outcome with generous deadlines; the repair
times the stale writer measured are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import functools
import statistics
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.support.apiserver import TestCluster
from tests.support.faultproxy import FaultProxy
from tests.support.kubeobjects import Objects
from tests.support.sidecars import Sidecars
from tests.support.stalewriter import StaleWriter

pytestmark = pytest.mark.kube

NAME = "gs-0"
GS_PATH = rf"/apis/game\.kruise\.io/v1alpha1/namespaces/[^/]+/gameservers/{NAME}$"
STATES = ("Allocated", "WaitToBeDeleted", "None")
REPAIR_SECONDS = 2.0
"""Issue 11: a field kidecar owns is right again within 2 s of a revert."""
REPAIR_DEADLINE = 15.0
"""Seconds a test waits for a repair: generous (the target is 2 s; the machine is shared)."""


def inkube(**options: Any) -> dict[str, Any]:
    """The state in a pod annotation (as in the measured OKG run: the Pod and the GameServer
    change together) and each state's opsState through a policy."""
    return {
        "type": "InKube",
        "inKube": {
            "annotationKey": "kidecar.example.com/state",
            "markerPolicies": [{"state": s, "gameServerOpsState": s} for s in STATES],
            **options,
        },
    }


def filestate(state_file: Path, storage: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": [
            {
                "name": "tp_filestate",
                "config": {"path": str(state_file), "interval": 0.05, "storageConfig": storage},
            }
        ]
    }


SidecarFactory = Callable[..., Sidecar]


@pytest.fixture
def sidecar(kube_sidecars: Sidecars, testplugins_env: dict[str, str]) -> SidecarFactory:
    """``sidecar(kubeconfig, config, *plugin_files)``: with the test plugins."""
    return functools.partial(kube_sidecars, env=testplugins_env)


def ok_gs_patches(proxy: FaultProxy) -> int:
    return sum(
        1
        for r in proxy.requests()
        if r.method == "PATCH" and r.path.endswith(f"/gameservers/{NAME}") and r.status < 300
    )


# -- another writer of kidecar's fields ---------------------------------------------------------


def test_a_stale_writer_is_repaired_every_time_and_reported_once(
    tmp_path: Path, kube_cluster: TestCluster, kube_namespace: str, make_game_server: Any,
    fault_proxy: FaultProxy, fault_proxy_kubeconfig: Path, objects: Objects,
    sidecar: SidecarFactory,
) -> None:  # fmt: skip
    """OKG v1.0.0 writes back a stale spec right after kidecar's write of a state change:
    kidecar sees it in its watch and writes its value again, every time."""
    make_game_server(NAME)
    state = tmp_path / "state"
    state.write_text("None")
    sc = sidecar(fault_proxy_kubeconfig, filestate(state, inkube())).start(wait_ready=True)
    sc.wait_for(lambda: "kidecar.example.com/state" in objects.pod_annotations(), 15)
    changes = 12
    with StaleWriter(kube_cluster, kube_namespace, NAME, mode="new-values") as stale:
        for i in range(changes):
            wanted = STATES[i % 3]
            state.write_text(wanted)

            def repaired(w: str = wanted, n: int = i + 1) -> bool:
                reverts = stale.snapshot()
                return len(reverts) >= n and reverts[n - 1].repaired_at is not None

            sc.wait_for(repaired, REPAIR_DEADLINE, f"change {i + 1} ({wanted}): revert + repair")
            sc.wait_for(lambda w=wanted: objects.ops() == w, REPAIR_DEADLINE, f"{wanted} holds")
        reverts = stale.snapshot()
    assert len(reverts) == changes  # each change was reverted once, and repaired
    writes = ok_gs_patches(fault_proxy)
    report_repairs("stale writer (OKG v1.0.0-like)", reverts, writes)
    # Issue 11: repaired within 2 s (seen in the writer's own watch: its revert, then kidecar's
    # value again), and no storm: the change and its repair, one write each.
    slowest = max(r.repair_seconds or 0.0 for r in reverts)
    assert slowest <= REPAIR_SECONDS, f"a repair took {slowest:.3f} s"
    assert writes <= 2 * changes, writes
    log = sc.log()
    assert log.count("is contested") == 1, log[-3000:]
    assert "field manager 'stale-writer'" in log
    (contested,) = sc.readyz()["persistence"]["contested"]
    assert "spec.opsState" in contested and "stale-writer" in contested
    assert sc.readyz()["ready"] is True  # working, and saying so
    sc.wait_for(lambda: len(objects.events("FieldContested")) == 1, 10, "the Event")
    assert sc.metric("kidecar_persist_contested_fields", {"field": "spec.opsState"}) == 1
    reverted = sc.metric("kidecar_persist_reverts_total", {"field": "spec.opsState"})
    assert reverted == changes
    assert sc.stop() == 0


def test_a_writer_that_always_reverts_meets_backoff_not_a_hot_loop(
    tmp_path: Path, kube_cluster: TestCluster, kube_namespace: str, make_game_server: Any,
    fault_proxy: FaultProxy, fault_proxy_kubeconfig: Path, objects: Objects,
    sidecar: SidecarFactory,
) -> None:  # fmt: skip
    make_game_server(NAME)
    state = tmp_path / "state"
    state.write_text("None")
    sc = sidecar(fault_proxy_kubeconfig, filestate(state, inkube())).start(wait_ready=True)
    sc.wait_for(lambda: "kidecar.example.com/state" in objects.pod_annotations(), 15)
    watched = 30.0
    with StaleWriter(kube_cluster, kube_namespace, NAME, mode="always") as stale:
        fault_proxy.reset()
        state.write_text("Allocated")
        sc.wait_for(lambda: "is contested" in sc.log(), REPAIR_DEADLINE, "the contest report")
        time.sleep(watched)
        reverts = stale.snapshot()
    writes = ok_gs_patches(fault_proxy)
    report_repairs(f"hostile writer, {watched:g} s", reverts, writes)
    # Re-asserts wait 0, 0, 1, 2, 4, 8, 16 s ... (capped at 30 s): about 7 writes in the first
    # 30 s, 2 a minute after that.  Without backoff it would be hundreds.
    assert 4 <= writes <= 10, writes
    assert sc.log().count("is contested") == 1
    assert len(objects.events("FieldContested")) <= 1  # the Event may still be on its way
    assert sc.stop() == 0


def report_repairs(what: str, reverts: list[Any], writes: int) -> None:
    """Print the measured repair times (for the record)."""
    times = [r.repair_seconds for r in reverts if r.repair_seconds is not None]
    if times:
        print(
            f"\n{what}: {len(reverts)} reverts, {len(times)} repaired; repair time "
            f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
            f"kidecar's GameServer writes: {writes}"
        )


# -- guards protect the field, whatever writes it (issue 13 item 1) ------------------------------

OVERRIDE = textwrap.dedent(
    '''
    """An override that writes the result straight into the GameServer's spec.opsState, with no
    guard of its own."""

    from kidecar_core import ObjectRef, Result, RuntimeView, Write, hookimpl


    @hookimpl
    def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write]:
        gs = ObjectRef.gameserver(runtime.identity)
        return [Write(gs, {"spec": {"opsState": result.state}}, "override.opsState")]
    '''
)

WAYS = {
    "gameServerOpsState": {"markerPolicies": [{"state": "WaitToBeDeleted",
                                               "gameServerOpsState": "WaitToBeDeleted"}]},
    "jsonPath": {"jsonPath": "/spec/opsState"},
    "jsonPathConfigs": {"markerPolicies": [{"state": "WaitToBeDeleted", "jsonPathConfigs": [
        {"jsonPath": "/spec/opsState", "value": "WaitToBeDeleted"}]}]},
    "override": {},
}  # fmt: skip
"""Every way a config can write ``/spec/opsState`` (the annotation shows the result landed)."""


def guard_config(tmp_path: Path, way: str) -> tuple[dict[str, Any], list[Path]]:
    state = tmp_path / "state"
    state.write_text("WaitToBeDeleted")
    storage = {
        "type": "InKube",
        "inKube": {"annotationKey": "kidecar.example.com/state", **WAYS[way]},
    }
    files = []
    if way == "override":
        override = tmp_path / "ops_override.py"
        override.write_text(OVERRIDE)
        files.append(override)
    return filestate(state, storage), files


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_humans_maintaining_holds_whatever_writes_ops_state(
    tmp_path: Path, make_game_server: Any, sa_kubeconfig: Path, objects: Objects,
    sidecar: SidecarFactory, way: str,
) -> None:  # fmt: skip
    make_game_server(NAME, gameserver_spec={"opsState": "Maintaining"})
    config, files = guard_config(tmp_path, way)
    sc = sidecar(sa_kubeconfig, config, *files).start(wait_ready=True)
    sc.wait_for(
        lambda: objects.pod_annotations().get("kidecar.example.com/state") == "WaitToBeDeleted",
        15,
        "the result to land on the pod",
    )
    time.sleep(1.0)  # the GameServer write would have followed by now
    assert objects.ops() == "Maintaining"
    # The human is done: the same write now lands (proof that this way writes the field).
    objects.set_ops("None", manager="kubectl-edit")
    sc.wait_for(lambda: objects.ops() == "WaitToBeDeleted", 15, f"{way} to write opsState")
    assert "Traceback" not in sc.log()
    assert sc.stop() == 0


# -- shutdown ---------------------------------------------------------------------------------


def test_a_pod_that_is_gone_ends_the_shutdown_flush_at_once(
    tmp_path: Path, make_game_server: Any, fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path, objects: Objects, sidecar: SidecarFactory,
) -> None:  # fmt: skip
    make_game_server(NAME)
    state = tmp_path / "state"
    state.write_text("Allocated")
    sc = sidecar(fault_proxy_kubeconfig, filestate(state, inkube()))
    sc.extra_args += ["--shutdown-timeout", "600"]
    sc.start(wait_ready=True)
    sc.wait_for(lambda: objects.ops() == "Allocated", 15, "Allocated")
    fault_proxy.inject("PATCH", GS_PATH, 503, times=None)  # GameServer writes fail from now on
    objects.delete_pod()
    state.write_text("WaitToBeDeleted")
    sc.wait_for(
        lambda: any("pods/" in w for w in sc.readyz()["persistence"]["waiting"]),
        15,
        "kidecar to see that its pod is gone",
    )
    assert sc.stop() == 0  # with a budget of 600 s: only an early end lets this return soon
    log = sc.log()
    assert "the pod is gone: nothing left to write" in log
    assert "shutdown budget exhausted" not in log

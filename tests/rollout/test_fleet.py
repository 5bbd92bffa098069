"""The fleet test: ``kidecar rollout`` over 30 real sidecars on the real API server.

One GameServerSet of 30 pods, each with a real game process (``fleetgame.py``) and a real
``kidecar run`` sidecar (hot_update following rollouts, http_probe on the game's health), one
file server whose downloads take 0.5 s (so that updates overlap and can be counted), and a
watch of the slot Leases. In order:

1. v1 with ``--max-unavailable 20%`` (6 slots), ``--when idle``: the 27 idle servers update, the
   3 Allocated ones wait, and update once released;
2. v2, whose game fails its probe after the reload: the first batch applies it, rolls back to
   v1 and pauses the rollout (an Event on the GameServerSet names the pod); nobody else tries;
3. v3 replaces the paused rollout; the API server is restarted mid-rollout; it finishes with
   every game reloaded exactly once to v3 and every pod's record written;
4. ``undo`` returns everyone to v1.

Throughout, never more than 6 pods hold a slot (the Lease watch) or download at once (the file
server). Deadlines are generous: 60 Python processes share the machine's cores with the API
server, and nothing here measures speed (the figures are printed, ``-s`` shows them).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.rollout.conftest import FleetFactory
from tests.rollout.fleet import Fleet, FleetFiles, SlotWatch, phases, wait_until
from tests.support.apiserver import TestCluster

pytestmark = pytest.mark.kube

SIZE = 30
SLOTS = 6  # 20% of 30
ALLOCATED = frozenset({3, 11, 27})
ROLL_DEADLINE = 240.0


def updated(fleet: Fleet, revision: int) -> int:
    return phases(fleet.progress(), revision)["Updated"]


def start(fleet: Fleet, version: str, url: str) -> None:
    code, out, err = fleet.rollout(
        "start", "gameserverset/game", "--version", version, "--url", url,
        "--max-unavailable", "20%",
    )  # fmt: skip
    assert code == 0, err
    print(out, end="")


def rollout_document(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    with cluster.admin_api_client() as api:
        configmap = k8s.CoreV1Api(api).read_namespaced_config_map("kidecar-rollout", namespace)
    document: dict[str, Any] = json.loads(configmap.data["gameserverset.game"])
    return document


def failure_pause(cluster: TestCluster, namespace: str) -> dict[str, str]:
    """The annotations of the failure pause Lease (empty when there is none)."""
    with cluster.admin_api_client() as api:
        try:
            lease = k8s.CoordinationV1Api(api).read_namespaced_lease(
                "kidecar-rollout-gameserverset-game-paused", namespace
            )
        except k8s.ApiException as e:
            assert e.status == 404
            return {}
    return dict(lease.metadata.annotations or {})


def workload_events(cluster: TestCluster, namespace: str) -> list[Any]:
    with cluster.admin_api_client() as api:
        events = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e for e in events if e.involved_object.kind == "GameServerSet"]


def records(cluster: TestCluster, namespace: str) -> dict[str, str]:
    """Each pod's last applied version in hot_update's result ConfigMap."""
    with cluster.admin_api_client() as api:
        data = k8s.CoreV1Api(api).read_namespaced_config_map("sidecar-result", namespace).data
    return {
        key.removeprefix("pod."): json.loads(value)["version"]
        for key, value in data.items()
        if key.startswith("pod.")
    }


def test_fleet_rollout(
    make_fleet: FleetFactory,
    files: FleetFiles,
    slot_watch: SlotWatch,
    kube_cluster: TestCluster,
    kube_namespace: str,
) -> None:
    figures: dict[str, float] = {}
    urls = {v: files.add(v, f"{v} content") for v in ("v1", "v3")}
    urls["v2"] = files.add("v2", "bad v2 content")
    began = time.monotonic()
    fleet = make_fleet(SIZE, ALLOCATED)
    figures["start 30 sidecars + games (s)"] = time.monotonic() - began
    figures["RSS of 30 sidecars + 30 games (MiB)"] = fleet.rss_mib()

    figures["v1: 27 idle pods (s)"], figures["v1: all 30 (s)"] = roll_v1(fleet, urls["v1"])
    roll_bad_v2(fleet, urls["v2"], kube_cluster, kube_namespace)
    figures["v3 with an API server restart (s)"] = roll_v3_through_restart(
        fleet, urls["v3"], kube_cluster, kube_namespace
    )

    began = time.monotonic()
    code, out, err = fleet.rollout("undo", "gameserverset/game")
    assert code == 0, err
    print(out, end="")
    wait_until(lambda: updated(fleet, 4) == SIZE, ROLL_DEADLINE, "undo to v1 everywhere")
    figures["undo: 30 pods back to v1 (s)"] = time.monotonic() - began
    assert all(m.loads()[-1] == "v1 content" for m in fleet.members)

    figures["slots held at once, max"] = slot_watch.max_held
    figures["downloads at once, max"] = files.max_in_flight
    print("\nfleet figures:", json.dumps({k: round(v, 1) for k, v in figures.items()}, indent=1))
    assert 1 <= slot_watch.max_held <= SLOTS
    assert 1 <= files.max_in_flight <= SLOTS


def roll_v1(fleet: Fleet, url: str) -> tuple[float, float]:
    """Step 1; the seconds until the idle pods, then all pods, are updated."""
    began = time.monotonic()
    start(fleet, "v1", url)

    def idle_done() -> bool:
        found = phases(fleet.progress(), 1)
        return found["Updated"] == SIZE - len(ALLOCATED) and found["WaitingForIdle"] == 3

    wait_until(idle_done, ROLL_DEADLINE, "the idle pods updated, the Allocated ones waiting")
    idle_seconds = time.monotonic() - began
    code, out, _ = fleet.rollout("status", "gameserverset/game")
    print(out)
    assert code == 0 and "waiting for idle" in out
    for i in ALLOCATED:
        assert "v1 content" not in fleet.members[i].loads(), "an Allocated server was updated"
    for i in ALLOCATED:
        fleet.set_ops_state(fleet.members[i].name, "None")
    wait_until(lambda: updated(fleet, 1) == SIZE, ROLL_DEADLINE, "the released pods updated")
    assert all(m.loads()[-1] == "v1 content" for m in fleet.members)
    return idle_seconds, time.monotonic() - began


def roll_bad_v2(fleet: Fleet, url: str, cluster: TestCluster, namespace: str) -> None:
    """Step 2: the first batch tries v2, fails its probe, rolls back; the rollout pauses."""
    start(fleet, "v2", url)
    wait_until(lambda: failure_pause(cluster, namespace), ROLL_DEADLINE, "a failure pause")
    assert failure_pause(cluster, namespace)["rollout.kidecar.io/revision"] == "2"
    assert not rollout_document(cluster, namespace)["paused"]  # the sidecars cannot write it

    def tried() -> list[str]:
        return [m.name for m in fleet.members if "bad v2 content" in m.loads()]

    def settled() -> bool:
        failed = [n for n, p in fleet.progress().items() if p and p.phase == "Failed"]
        return bool(failed) and sorted(failed) == sorted(tried())

    wait_until(settled, ROLL_DEADLINE, "the pods that tried v2 to report Failed")
    bad = tried()
    assert 1 <= len(bad) <= SLOTS, bad
    for member in fleet.members:
        if member.name in bad:
            wait_until(lambda m=member: m.loads()[-1] == "v1 content", 60, f"{member.name} back")
    reason = failure_pause(cluster, namespace)["rollout.kidecar.io/reason"]
    assert any(name in reason for name in bad) and "Failed" in reason, reason
    events = [e for e in workload_events(cluster, namespace) if e.reason == "RolloutPaused"]
    assert events and any(name in events[0].message for name in bad), events
    code, out, _ = fleet.rollout("status", "gameserverset/game")
    print(out)
    assert code == 0 and "PAUSED" in out
    assert tried() == bad, "a pod tried v2 after the rollout paused"


def roll_v3_through_restart(fleet: Fleet, url: str, cluster: TestCluster, namespace: str) -> float:
    """Step 3; the seconds it took."""
    began = time.monotonic()
    start(fleet, "v3", url)
    wait_until(lambda: updated(fleet, 3) >= SLOTS, ROLL_DEADLINE, "the first pods on v3")
    cluster.stop_apiserver()
    time.sleep(5)  # an outage of a few seconds, in the middle of the rollout
    cluster.start_apiserver()
    wait_until(lambda: updated(fleet, 3) == SIZE, ROLL_DEADLINE, "every pod on v3")
    seconds = time.monotonic() - began
    for member in fleet.members:
        loads = member.loads()
        assert loads[-1] == "v3 content" and loads.count("v3 content") == 1, (member.name, loads)
    wait_until(
        lambda: set(records(cluster, namespace).values()) == {"v3"}, 60, "every record on v3"
    )
    assert len(records(cluster, namespace)) == SIZE
    return seconds

"""The sidecar's parts of a rollout: the target check, the probe watch, and the slot Leases on
the real API server (as the ``kidecar`` ServiceAccount, so the Role of deploy/base is tested)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from kidecar_core import (
    FailurePause,
    Result,
    RolloutTarget,
    Workload,
    read_failure_pause,
    record_failure_pause,
)
from kidecar_core._config.schema import make_converter
from kidecar_core._rollout.cluster import Cluster
from kidecar_core._store.kube import KubeStore
from kidecar_core._store.rollout_leases import lease_base
from kidecar_core.errors import ConfigError
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.plugin import kidecar_check_rollout
from kidecar_plugins.hot_update.rollout.check import check_target
from kidecar_plugins.hot_update.rollout.config import RolloutFollowConfig
from kidecar_plugins.hot_update.rollout.probes import ProbeWatch
from kidecar_plugins.hot_update.rollout.slots import Slots, home_slot
from tests.support.apiserver import TestCluster
from tests.support.faultproxy import FaultProxy


def hot_update(**config: Any) -> HotUpdateConfig:
    raw = {"signal": {"processName": "game"}, **config}
    structured: HotUpdateConfig = make_converter().structure(raw, HotUpdateConfig)
    return structured


ALLOWED = hot_update(allowedUrlPrefixes=["https://cdn.example/game/"])


def test_kidecar_check_rollout_accepts_a_good_target() -> None:
    target = RolloutTarget("v1.2.3", "https://cdn.example/game/v1/game.pak", "ab" * 32)
    assert check_target(ALLOWED, target) == []
    assert kidecar_check_rollout("hot_update", ALLOWED, target) == []
    assert kidecar_check_rollout("http_probe", ALLOWED, target) is None  # another plugin's


def test_a_sidecar_that_does_not_follow_rollouts_says_so() -> None:
    off = hot_update(rollout={"enabled": False})
    assert kidecar_check_rollout("hot_update", off, RolloutTarget("v1", "https://x/f")) is None


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (RolloutTarget("v1", "https://elsewhere/game/f"), "is not under allowedUrlPrefixes"),
        (RolloutTarget("v1", "https://cdn.example/gamex/f"), "(https://cdn.example/game/)"),
        (RolloutTarget("x.y", "https://cdn.example/game/f"), "is not a version like v1"),
        (RolloutTarget("v1", "https://cdn.example/game/f", "zz"), "sha256 must be 64 hex"),
        (RolloutTarget("v1", "https://cdn.example/game/"), "does not name a file"),
    ],
)
def test_targets_the_sidecars_would_refuse(target: RolloutTarget, problem: str) -> None:
    problems = check_target(ALLOWED, target)
    assert len(problems) == 1 and problem in problems[0], problems


def test_link_local_addresses_are_refused_unless_allowed() -> None:
    target = RolloutTarget("v1", "http://169.254.169.254/latest/f")
    assert "link-local" in check_target(hot_update(), target)[0]
    assert check_target(hot_update(allowLinkLocal=True), target) == []


def result(plugin: str, state: str, reason: str = "") -> Result:
    return Result(plugin=plugin, state=state, data={"reason": reason} if reason else {})


def test_the_probe_watch_sees_a_failed_state_after_it_is_armed() -> None:
    asyncio.run(probe_watch_sees_a_failed_state())


async def probe_watch_sees_a_failed_state() -> None:
    watch = ProbeWatch("hot_update", RolloutFollowConfig(probe_plugins=("http_probe",)))
    watch.observe(result("http_probe", "Failed"))  # not armed: before the update
    watch.arm()
    for ignored in (result("hot_update", "Failed"), result("tcp_probe", "Failed"),
                    result("http_probe", "Ready")):  # fmt: skip
        watch.observe(ignored)
    assert await watch.wait_failed(0) is None
    watch.arm()
    watch.observe(result("http_probe", "Failed", "status 500"))
    assert await watch.wait_failed(30) == "http_probe state Failed (status 500)"
    watch.observe(result("http_probe", "Failed"))  # disarmed again
    assert not watch.armed


def test_probe_plugins_never_heard_from_are_named() -> None:
    """``probePlugins: [http_prob]`` (a typo) or a probe that never ran: no result ever comes,
    so nothing is verified; the watch names them (the pod's report says so) instead of passing
    every update in silence."""
    watch = ProbeWatch("hot_update", RolloutFollowConfig(probe_plugins=("http_prob",)))
    watch.observe(result("http_probe", "Ready"))
    assert watch.unheard() == "http_prob"
    watch.observe(result("http_prob", "Ready"))
    assert watch.unheard() is None
    assert ProbeWatch("hot_update", RolloutFollowConfig()).unheard() is None  # every plugin


def test_the_probe_watch_waits_for_the_window() -> None:
    asyncio.run(probe_watch_waits())


async def probe_watch_waits() -> None:
    watch = ProbeWatch("hot_update", RolloutFollowConfig(failed_states=("Broken",)))
    watch.arm()
    waiting = asyncio.ensure_future(watch.wait_failed(30))
    await asyncio.sleep(0)
    watch.observe(result("anything", "Failed"))
    assert not waiting.done()
    watch.observe(result("anything", "Broken"))
    assert await waiting == "anything state Broken"


def test_lease_names() -> None:
    gss = Workload.parse("gss/game", "prod")
    assert lease_base(gss) == "kidecar-rollout-gameserverset-game"
    long = Workload.parse("gss/" + "a" * 250, "prod")
    assert len(lease_base(long)) <= 240 and lease_base(long) != lease_base(gss)
    assert {home_slot(f"game-{i}", 6) for i in range(30)} == set(range(6))


# -- slots on the real API server -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Scenario = Callable[[Cluster], Awaitable[None]]


@pytest.fixture
def on_cluster(fault_proxy_kubeconfig: Path, kube_namespace: str) -> Callable[[Scenario], None]:
    """Run an async scenario with a :class:`Cluster` (the command's store) as the sidecar's
    direct reads and writes, through the fault proxy, as the ``kidecar`` ServiceAccount."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            store = KubeStore.from_kubeconfig(str(fault_proxy_kubeconfig))
            try:
                await scenario(Cluster(store, kube_namespace))
            finally:
                await store.close()

        asyncio.run(main())

    return run


def slots_for(cluster: Cluster, pod: str, clock: Clock) -> Slots:
    workload = Workload.parse("gss/game", cluster.namespace)
    return Slots(cluster, workload, pod, lease_seconds=30, clock=clock)  # type: ignore[arg-type]


@pytest.mark.kube
def test_one_holder_per_slot(on_cluster: Callable[[Scenario], None]) -> None:
    on_cluster(one_holder_per_slot)


async def one_holder_per_slot(cluster: Cluster) -> None:
    clock = Clock()
    a, b = slots_for(cluster, "game-0", clock), slots_for(cluster, "game-1", clock)
    held = await a.try_acquire(1, revision=1)
    assert held is not None and held.index == 0
    lease = await cluster.get_object(held.ref)
    assert lease is not None and lease["spec"]["holderIdentity"] == "game-0"
    assert lease["metadata"]["labels"]["rollout.kidecar.io/workload"] == "gameserverset.game"
    assert await b.try_acquire(1, revision=1) is None
    # With two slots, the busy one is followed by the next one at the following attempt.
    assert await b.try_acquire(2, revision=1) is None
    other = await b.try_acquire(2, revision=1)
    assert other is not None and other.index == 1
    await b.release(other)
    await a.release(held)
    lease = await cluster.get_object(held.ref)
    assert lease is not None and "holderIdentity" not in lease["spec"]
    retaken = await b.try_acquire(1, revision=1)
    assert retaken is not None and await a.try_acquire(1, revision=1) is None


@pytest.mark.kube
def test_a_dead_holder_is_taken_over(
    on_cluster: Callable[[Scenario], None],
) -> None:
    on_cluster(a_dead_holder_is_taken_over)


async def a_dead_holder_is_taken_over(cluster: Cluster) -> None:
    clock = Clock()
    dead, alive = slots_for(cluster, "game-0", clock), slots_for(cluster, "game-1", clock)
    held = await dead.try_acquire(1, revision=1)
    assert held is not None
    assert await alive.try_acquire(1, revision=1) is None  # first seen now
    clock.now += 29
    assert await alive.try_acquire(1, revision=1) is None  # unchanged, but not for 30 s yet
    clock.now += 2
    taken = await alive.try_acquire(1, revision=1)
    assert taken is not None
    assert await dead.renew(held) is False  # the dead pod learns it lost the slot ...
    await dead.release(held)  # ... and giving it back leaves the new holder alone
    lease = await cluster.get_object(taken.ref)
    assert lease is not None and lease["spec"]["holderIdentity"] == "game-1"
    assert lease["spec"]["leaseTransitions"] == 1


@pytest.mark.kube
def test_a_slot_deleted_while_held(
    on_cluster: Callable[[Scenario], None], kube_cluster: TestCluster
) -> None:
    """Someone deletes the Lease of a held slot (``kubectl delete lease``): the holder learns it
    lost it and giving it back ends (it used to retry the 404 for ever, and the pod never
    followed another rollout)."""

    async def scenario(cluster: Cluster) -> None:
        holder = slots_for(cluster, "game-0", Clock())
        held = await holder.try_acquire(1, revision=1)
        assert held is not None
        with kube_cluster.admin_api_client() as api:
            k8s.CoordinationV1Api(api).delete_namespaced_lease(held.ref.name, cluster.namespace)
        assert await holder.renew(held) is False
        await asyncio.wait_for(holder.release(held), 30)
        assert await cluster.get_object(held.ref) is None  # not made again by giving it back

    on_cluster(scenario)


@pytest.mark.kube
def test_a_renewing_holder_is_never_taken_over(on_cluster: Callable[[Scenario], None]) -> None:
    on_cluster(a_renewing_holder_is_never_taken_over)


async def a_renewing_holder_is_never_taken_over(cluster: Cluster) -> None:
    clock = Clock()
    holder, waiting = slots_for(cluster, "game-0", clock), slots_for(cluster, "game-1", clock)
    held = await holder.try_acquire(1, revision=1)
    assert held is not None
    for _ in range(4):
        assert await waiting.try_acquire(1, revision=1) is None
        clock.now += 20
        assert await holder.renew(held)
    assert await waiting.try_acquire(1, revision=1) is None


@pytest.mark.kube
def test_time_unseen_in_an_outage_is_not_time_dead(
    on_cluster: Callable[[Scenario], None], fault_proxy: FaultProxy
) -> None:
    async def scenario(cluster: Cluster) -> None:
        await outage_scenario(cluster, fault_proxy)

    on_cluster(scenario)


async def outage_scenario(cluster: Cluster, fault_proxy: FaultProxy) -> None:
    clock = Clock()
    holder, waiting = slots_for(cluster, "game-0", clock), slots_for(cluster, "game-1", clock)
    assert await holder.try_acquire(1, revision=1) is not None
    assert await waiting.try_acquire(1, revision=1) is None
    fault_proxy.inject("GET", "/leases/", 503, times=1)
    with pytest.raises(Exception, match="503"):
        await waiting.try_acquire(1, revision=1)
    clock.now += 60
    assert await waiting.try_acquire(1, revision=1) is None  # observed anew from now
    clock.now += 31
    assert await waiting.try_acquire(1, revision=1) is not None


@pytest.mark.kube
def test_the_first_failure_of_an_attempt_names_the_pause(
    on_cluster: Callable[[Scenario], None],
) -> None:
    on_cluster(first_failure_names_the_pause)


async def first_failure_names_the_pause(cluster: Cluster) -> None:
    workload = Workload.parse("gss/game", cluster.namespace)
    assert await read_failure_pause(cluster, workload) is None
    first = FailurePause(2, 1, "game-3", "game-3: probe Failed")
    assert await record_failure_pause(cluster, workload, first)
    assert not await record_failure_pause(cluster, workload, FailurePause(2, 1, "game-4", "x"))
    assert await read_failure_pause(cluster, workload) == first
    after_resume = FailurePause(2, 2, "game-4", "game-4: probe Failed again")
    assert await record_failure_pause(cluster, workload, after_resume)
    assert await read_failure_pause(cluster, workload) == after_resume
    # The document deleted and started again counts from revision 1 again: its first failure
    # replaces the pause of the old document's run with the same numbers.
    old = FailurePause(1, 1, "game-3", "old", started="2026-01-01T00:00:00Z")
    assert await record_failure_pause(cluster, workload, old)
    new = FailurePause(1, 1, "game-5", "new", started="2026-01-02T00:00:00Z")
    assert await record_failure_pause(cluster, workload, new)
    assert await read_failure_pause(cluster, workload) == new


@pytest.mark.parametrize(
    ("rollout", "problem"),
    [
        ({"retrySeconds": 1e-9}, "rollout.retrySeconds: must be >= 1, got 1e-09 (each period"),
        ({"pollSeconds": 0.5}, "rollout.pollSeconds: must be >= 1, got 0.5"),
        ({"leaseSeconds": 2**31}, "rollout.leaseSeconds: must be between 1 and 2147483647"),
        ({"leaseSeconds": 0}, "rollout.leaseSeconds: must be between 1 and 2147483647"),
    ],
)
def test_rollout_settings_that_would_hurt_the_api_server(
    rollout: dict[str, Any], problem: str
) -> None:
    """A period of a nanosecond was accepted (every waiting pod of the fleet in a loop of GETs),
    and a Lease duration the API server refuses (no pod could ever take a slot)."""
    with pytest.raises(ConfigError) as caught:
        hot_update(rollout=rollout)
    assert any(problem in str(p) for p in caught.value.problems), caught.value.problems


def test_the_shortest_rollout_settings_are_accepted() -> None:
    config = hot_update(rollout={"pollSeconds": 1, "retrySeconds": 1, "leaseSeconds": 1})
    assert (config.rollout.poll_seconds, config.rollout.lease_seconds) == (1, 1)

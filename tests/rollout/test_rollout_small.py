"""A rollout over a few real sidecars: partition, pause and resume, a new replica."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.rollout.conftest import FleetFactory
from tests.rollout.fleet import Fleet, FleetFiles, Timing, phases, wait_until
from tests.support.apiserver import TestCluster
from tests.support.faultproxy import FaultProxy, status_body

pytestmark = pytest.mark.kube

DEADLINE = 120.0


def start(fleet: Fleet, version: str, url: str, *options: str) -> str:
    code, out, err = fleet.rollout(
        "start", "gss/game", "--version", version, "--url", url, "--when", "always", *options
    )
    assert code == 0, err
    return out


def loaded(fleet: Fleet) -> list[str | None]:
    return [(m.loads() or [None])[-1] for m in fleet.members]


def test_partition_pause_resume_and_a_new_replica(
    make_fleet: FleetFactory, files: FleetFiles
) -> None:
    fleet = make_fleet(3)
    v1, v2 = files.add("v1", "v1 content"), files.add("v2", "v2 content")

    # A canary: only ordinals >= 2 update; below the partition, with no version to return
    # to, the pods are left as they are.
    start(fleet, "v1", v1, "--partition", "2", "--max-unavailable", "1")
    wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 1, DEADLINE, "game-2 on v1")
    wait_until(lambda: phases(fleet.progress(), 1)["Held"] == 2, DEADLINE, "0 and 1 held")
    assert loaded(fleet) == [None, None, "v1 content"]
    out = fleet.rollout("status", "gss/game")[1]
    assert "1/1 at v1, 2 held (partition)" in out and "complete" in out
    # The same version with partition 0: the same revision goes on to every pod.
    assert "revision 1" in start(fleet, "v1", v1, "--max-unavailable", "1")
    wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 3, DEADLINE, "all on v1")

    # v2, paused as soon as it starts: at most the pod already in flight updates.
    start(fleet, "v2", v2, "--max-unavailable", "1")
    assert fleet.rollout("pause", "gss/game")[0] == 0
    wait_until(lambda: phases(fleet.progress(), 2)["Pending"] >= 2, DEADLINE, "the others pending")
    assert loaded(fleet).count("v2 content") <= 1
    assert fleet.rollout("resume", "gss/game")[0] == 0
    wait_until(lambda: phases(fleet.progress(), 2)["Updated"] == 3, DEADLINE, "all on v2")
    assert loaded(fleet) == ["v2 content"] * 3

    # A new replica gets the workload's current version.
    member = fleet.add_member()
    wait_until(lambda: member.loads()[-1:] == ["v2 content"], DEADLINE, "the new pod on v2")
    wait_until(lambda: phases(fleet.progress(), 2)["Updated"] == 4, DEADLINE, "4 on v2")
    assert member.loads().count("v2 content") == 1


def test_a_sha256_spelled_as_post_takes_it(make_fleet: FleetFactory, files: FleetFiles) -> None:
    """``--sha256`` in upper case with ``sha256:`` is what ``POST /hot-update`` and the check of
    ``start`` accept: every pod updates once and reports Updated (it used to fail the first pod,
    comparing the file's lower-case digest with the text as given, and pause the rollout)."""
    fleet = make_fleet(2)
    url = files.add("v1", "v1 content")
    digest = hashlib.sha256(b"v1 content").hexdigest().upper()
    start(fleet, "v1", url, "--sha256", f"sha256:{digest}", "--max-unavailable", "2")
    wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 2, DEADLINE, "both on v1")
    assert [m.loads().count("v1 content") for m in fleet.members] == [1, 1]
    assert "complete" in fleet.rollout("status", "gss/game")[1]


def test_when_idle_without_openkruisegame(
    kube_cluster: TestCluster,
    kube_namespace: str,
    files: FleetFiles,
    fault_proxy: FaultProxy,
    fault_proxy_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    """A cluster that does not serve GameServers (a StatefulSet or a Deployment without
    OpenKruiseGame): nothing can allocate the pod, so ``--when idle`` (the default) updates it.
    It used to wait for ever, the unreadable GameServer counting as Allocated."""
    not_served = status_body(404, "the server could not find the requested resource")
    fault_proxy.inject("*", r"/gameservers", 404, times=None, body=not_served)
    fleet = Fleet(
        kube_cluster, kube_namespace, tmp_path / "fleet", 1, files, fault_proxy_kubeconfig
    )
    fleet.create_objects()
    try:
        fleet.start()
        start(fleet, "v1", files.add("v1", "v1 content"), "--when", "idle")
        wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 1, DEADLINE, "game-0 on v1")
    finally:
        fleet.stop()


def test_what_the_role_forbids_is_shown_by_status(
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    files: FleetFiles,
    tmp_path: Path,
) -> None:
    """A Role without the GameServer rule, then without the Lease rule: each pod says why it
    waits in its report (it used to say "its GameServer is Allocated" and "waiting for a slot",
    the reason only in its log), and goes on once the rules are back. The rules go before the
    sidecar starts: a watch the Role allowed when it opened goes on until it is renewed."""
    fleet = Fleet(kube_cluster, kube_namespace, tmp_path / "fleet", 1, files, sa_kubeconfig)
    fleet.create_objects()

    def saying(text: str) -> Callable[[], bool]:
        def check() -> bool:
            report = fleet.progress()["game-0"]
            return report is not None and text in report.message

        return check

    try:
        with kube_cluster.admin_api_client() as api:
            rbac = k8s.RbacAuthorizationV1Api(api)

            def rules_without(*resources: str) -> None:
                role = rbac.read_namespaced_role("kidecar", fleet.namespace)
                role.rules = [r for r in full if not set(resources) & set(r.resources or [])]
                rbac.replace_namespaced_role("kidecar", fleet.namespace, role)

            full = list(rbac.read_namespaced_role("kidecar", fleet.namespace).rules)
            rules_without("leases", "gameservers")
            fleet.start()
            start(fleet, "v1", files.add("v1", "v1 content"), "--when", "idle")
            wait_until(saying("cannot read its GameServer (forbidden"), DEADLINE, "game-0: why")
            rules_without("leases")
            wait_until(saying("waiting for a slot (cannot take one: forbidden"), DEADLINE, "why")
            assert (
                "add {apiGroups: [coordination.k8s.io], resources: [leases]"
                in (fleet.rollout("status", "gss/game")[1])
            )
            rules_without()
        wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 1, DEADLINE, "on v1")
    finally:
        fleet.stop()


def test_a_new_document_and_a_released_server_arrive_by_watch(
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    files: FleetFiles,
    tmp_path: Path,
) -> None:
    """The rollout ConfigMap and the GameServer are watched: with ``pollSeconds`` and
    ``retrySeconds`` of an hour, the rollout started after the sidecar is up reaches it, and the
    GameServer leaving ``Allocated`` starts the update (a poll would take an hour)."""
    hour = Timing(poll=3600, retry=3600)
    fleet = Fleet(kube_cluster, kube_namespace, tmp_path / "fleet", 1, files, sa_kubeconfig, hour)
    fleet.create_objects(allocated=frozenset({0}))
    try:
        fleet.start()
        start(fleet, "v1", files.add("v1", "v1 content"), "--when", "idle")
        wait_until(lambda: phases(fleet.progress(), 1)["WaitingForIdle"] == 1, DEADLINE, "seen")
        fleet.set_ops_state("game-0", "None")
        wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 1, DEADLINE, "game-0 on v1")
        assert loaded(fleet) == ["v1 content"]
    finally:
        fleet.stop()


def test_without_the_watch_rule_the_follower_says_so_once_and_polls(
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    files: FleetFiles,
    tmp_path: Path,
) -> None:
    """A Role from before the watch (``get`` only on ``kidecar-rollout``): one log line names
    the missing rule, and the rollout still reaches the pod by reading every ``pollSeconds``."""
    with kube_cluster.admin_api_client() as api:
        rbac = k8s.RbacAuthorizationV1Api(api)
        role = rbac.read_namespaced_role("kidecar", kube_namespace)
        for rule in role.rules:
            if "kidecar-rollout" in (rule.resource_names or []):
                rule.verbs = ["get"]
        rbac.replace_namespaced_role("kidecar", kube_namespace, role)
    fleet = Fleet(kube_cluster, kube_namespace, tmp_path / "fleet", 1, files, sa_kubeconfig)
    fleet.create_objects()
    try:
        fleet.start()
        start(fleet, "v1", files.add("v1", "v1 content"))
        wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == 1, DEADLINE, "game-0 on v1")
        start(fleet, "v2", files.add("v2", "v2 content"))
        wait_until(lambda: phases(fleet.progress(), 2)["Updated"] == 1, DEADLINE, "game-0 on v2")
    finally:
        fleet.stop()
    log = fleet.members[0].sidecar.log()
    said = [line for line in log.splitlines() if "cannot watch configmaps/" in line]
    assert len(said) == 1, log[-3000:]
    assert "lacks verb=watch" in said[0] and "resource=configmaps" in said[0]
    assert "resourceNames=[kidecar-rollout]" in said[0] and "every 1s instead" in said[0]

"""Fixtures of the rollout tests: a file server and a fleet on the real API server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rollout.fleet import Fleet, FleetFiles, SlotWatch
from tests.support.apiserver import TestCluster


@pytest.fixture
def files() -> Iterator[FleetFiles]:
    server = FleetFiles(delay=0.5).start()
    yield server
    server.stop()


FleetFactory = Callable[..., Fleet]


@pytest.fixture
def make_fleet(
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    files: FleetFiles,
    tmp_path: Path,
) -> Iterator[FleetFactory]:
    """``make_fleet(size, allocated=frozenset())``: the fleet's objects created and its
    processes started; stopped at the end of the test."""
    made: list[Fleet] = []

    def make(size: int, allocated: frozenset[int] = frozenset()) -> Fleet:
        fleet = Fleet(kube_cluster, kube_namespace, tmp_path / "fleet", size, files, sa_kubeconfig)
        made.append(fleet)
        fleet.create_objects(allocated)
        fleet.start()
        return fleet

    yield make
    for fleet in made:
        fleet.stop()


@pytest.fixture
def slot_watch(kube_cluster: TestCluster, kube_namespace: str) -> Iterator[SlotWatch]:
    with kube_cluster.admin_api_client() as api:
        watcher = SlotWatch(api, kube_namespace).start()
        yield watcher
        watcher.stop()

"""Shared pytest configuration and fixtures for the kidecar test suite."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apiserver import (
    KIDECAR_RBAC,
    ClusterUnavailableError,
    GameServerFactory,
    GameServerPair,
    TestCluster,
)
from tests.support.faultproxy import FaultProxy
from tests.support.kruise_crds import KruiseCrdsUnavailableError, locate_kruise_crds
from tests.support.kubeobjects import Objects
from tests.support.sidecars import Sidecars

# ======================================================================================
# Kubernetes integration harness: a real kube-apiserver + etcd (tests/support/apiserver.py)
# ======================================================================================

KIDECAR_SERVICE_ACCOUNT = "kidecar"


def pytest_configure(config: pytest.Config) -> None:
    """Register the `kube` marker (tests that need the real API server)."""
    config.addinivalue_line(
        "markers", "kube: needs the real kube-apiserver + etcd started by the test suite"
    )


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """The session's API server with the test CRDs installed, started on first use.

    If it cannot be started, every test using it fails with the reason and the fix; with
    KIDECAR_SKIP_KUBE=1 those tests are skipped with that reason instead.
    """
    try:
        cluster = TestCluster.start(tmp_path_factory.mktemp("kube"))
    except (ClusterUnavailableError, OSError) as e:
        reason = f"no test kube-apiserver: {e}"
        if os.environ.get("KIDECAR_SKIP_KUBE") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason}\nSet KIDECAR_SKIP_KUBE=1 to skip instead.", pytrace=False)
    try:
        cluster.install_crds()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kruise_sidecarset_crd(
    kube_cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Kruise's own SidecarSet CRD (generated from its Go types by `hack/kruise-crds.sh`),
    installed into the session's API server; returns its path.

    If it cannot be generated, every test using it fails with the reason and the fix; with
    KIDECAR_SKIP_KUBE=1 those tests are skipped with that reason instead, like the API server's.
    """
    try:
        crds = locate_kruise_crds(tmp_path_factory.mktemp("kruise-crds"))
    except (KruiseCrdsUnavailableError, OSError) as e:
        reason = f"no Kruise SidecarSet CRD: {e}"
        if os.environ.get("KIDECAR_SKIP_KUBE") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason}\nSet KIDECAR_SKIP_KUBE=1 to skip instead.", pytrace=False)
    kube_cluster.install_crds([crds.sidecarset])
    return crds.sidecarset


@pytest.fixture
def kube_namespace(kube_cluster: TestCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards (it then stays
    Terminating: there is no namespace controller, but nothing reuses the name).

    If the test left the API server stopped (e.g. it failed during an outage test), it is
    restarted here so that the following tests do not fail for that reason.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = kube_cluster.create_namespace(f"t-{slug}-{secrets.token_hex(3)}")
    yield name
    if not kube_cluster.apiserver_running:
        kube_cluster.start_apiserver()
    kube_cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def admin_kubeconfig(kube_cluster: TestCluster) -> Path:
    """Path of a kubeconfig for the cluster admin (client certificate, `system:masters`)."""
    return kube_cluster.admin_kubeconfig


@pytest.fixture
def kidecar_rbac(kube_cluster: TestCluster, kube_namespace: str) -> str:
    """Apply deploy/base/rbac.yaml into the test namespace; return the ServiceAccount name."""
    kube_cluster.apply_yaml(KIDECAR_RBAC, kube_namespace)
    return KIDECAR_SERVICE_ACCOUNT


@pytest.fixture
def sa_kubeconfig(kube_cluster: TestCluster, kube_namespace: str, kidecar_rbac: str) -> Path:
    """Path of a kubeconfig for the `kidecar` ServiceAccount (bearer token, RBAC from
    deploy/base/rbac.yaml) whose default namespace is the test namespace."""
    return kube_cluster.serviceaccount_kubeconfig(kube_namespace, kidecar_rbac)


@pytest.fixture
def fault_proxy(kube_cluster: TestCluster) -> Iterator[FaultProxy]:
    """A counting, fault-injecting HTTP proxy in front of the API server; point clients at
    it with `fault_proxy_kubeconfig`."""
    with FaultProxy(kube_cluster.server, kube_cluster.ca_file) as proxy:
        yield proxy


@pytest.fixture
def fault_proxy_kubeconfig(
    kube_cluster: TestCluster,
    kube_namespace: str,
    kidecar_rbac: str,
    fault_proxy: FaultProxy,
    tmp_path: Path,
) -> Path:
    """Path of a kubeconfig for the `kidecar` ServiceAccount that goes through `fault_proxy`."""
    return fault_proxy.write_kubeconfig(
        tmp_path / "proxy-kubeconfig.yaml",
        kube_cluster.serviceaccount_token(kube_namespace, kidecar_rbac),
        namespace=kube_namespace,
    )


@pytest.fixture
def make_game_server(kube_cluster: TestCluster, kube_namespace: str) -> GameServerFactory:
    """`make_game_server(name, **options) -> GameServerPair`: create a Pod and its GameServer
    in the test namespace (options: see `TestCluster.create_game_server`)."""

    def make(name: str, **options: Any) -> GameServerPair:
        return kube_cluster.create_game_server(kube_namespace, name, **options)

    return make


@pytest.fixture
def objects(kube_cluster: TestCluster, kube_namespace: str) -> Objects:
    """Pod and GameServer ``gs-0`` of the test's namespace, read and changed as an admin."""
    return Objects(kube_cluster, kube_namespace)


@pytest.fixture
def kube_sidecars(tmp_path: Path, kube_namespace: str) -> Iterator[Sidecars]:
    """``kube_sidecars(kubeconfig, config, *plugin_files, env=...)``: kidecar processes for pod
    ``gs-0`` of the test's namespace (made, not started); those still running are stopped after
    the test."""
    sidecars = Sidecars(tmp_path, kube_namespace)
    yield sidecars
    sidecars.stop()


# ======================================================================================
# End of the Kubernetes integration harness.
# ======================================================================================


# ======================================================================================
# The test plugin distribution (tests/testplugin), installed for real
# ======================================================================================

TESTPLUGIN = Path(__file__).resolve().parent / "testplugin"


@pytest.fixture(scope="session")
def testplugins_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for subprocesses that see the ``kidecar-testplugins`` distribution.

    It is pip-installed into a private target directory (not the venv), so its entry points are
    real entry points but only processes started with this environment load them.  It is
    installed without the network (no index, no pip version check), so a slow or absent network
    cannot hold a run.  Variables that would change how kidecar runs (a cluster, override files)
    are removed.
    """
    target = tmp_path_factory.mktemp("testplugins-site")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--disable-pip-version-check",
            "--target", str(target), str(TESTPLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    for name in (
        "KUBERNETES_SERVICE_HOST",
        "KIDECAR_PLUGIN_FILES",
        "KIDECAR_DRY_RUN_OPSSTATE",
        "KIDECAR_PLUGINS",
        "KIDECAR_DISABLE_PLUGINS",
        "KIDECAR_CONFIG",
    ):
        env.pop(name, None)
    return env

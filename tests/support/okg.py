"""The real OpenKruiseGame (OKG) manager against the test API server, for the okg e2e tier.

`locate_okg(workdir)` runs `hack/test-okg.sh` (which builds OKG's manager from the Go module
`github.com/openkruise/kruise-game` at the latest release and at a pinned master commit, cached
like kube-apiserver) and returns the targets it produced. `OkgManager.start(cluster, target,
workdir)` installs what OKG needs into a `TestCluster` and runs the manager out of cluster:

- OKG's own CRDs (GameServer, GameServerSet) from the target's module files, and the project's
  fixtures for the two OpenKruise kinds OKG watches (`tests/support/crds/kruise/`: Advanced
  StatefulSet, PodProbeMarker);
- its own identity: ServiceAccount `kruise-game-system/kruise-game-controller-manager` bound
  to OKG's ClusterRole from the module (`config/rbac/role.yaml`), so the API server's audit
  log tells OKG's writes from everyone else's;
- webhook certificate generation off (with it on, OKG registers webhooks with `failurePolicy:
  Fail` pointing at a Service that does not exist here, which blocks every Pod and
  GameServerSet write) and a throw-away serving certificate, because the webhook server
  refuses to start without one (it listens on all interfaces; nothing calls it);
- a cloud-provider config that enables no provider (OKG exits without a config file);
- metrics, health and scale servers on free loopback ports.

This module deliberately does not import pytest.
"""

from __future__ import annotations

import http.client
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.apiserver import (
    CRD_DIR,
    REPO_ROOT,
    ClusterUnavailableError,
    ServerProcess,
    TestCluster,
    free_port,
    load_yaml_documents,
    run_build_script,
    tail,
    write_serving_cert,
)

BUILD_SCRIPT = REPO_ROOT / "hack" / "test-okg.sh"
KRUISE_CRDS = CRD_DIR / "kruise"
TARGETS = ("release", "master")
"""The OKG builds the tier runs against: the latest release and a pinned master commit."""

NAMESPACE = "kruise-game-system"
SERVICE_ACCOUNT = "kruise-game-controller-manager"
USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
"""The user name of OKG's writes in the audit log."""

# Every cloud provider OKG knows, disabled: it then runs only the GameServer(Set) controllers.
PROVIDER_CONFIG = "".join(
    f"[{name}]\nenable = false\n\n"
    for name in ("kubernetes", "alibabacloud", "volcengine", "aws", "tencentcloud", "jdcloud",
                 "hwcloud")
)  # fmt: skip
# controller-runtime logs this once per controller when its workers start (cache synced).
WORKERS_STARTED = re.compile(
    r'Starting workers.*"controller": ?"(gameserver(?:set)?)(?:-controller)?"'
)
CONTROLLERS = ("gameserverset", "gameserver")


class OkgUnavailableError(ClusterUnavailableError):
    """OKG's manager could not be built or started; the message says why and how to fix it."""


@dataclass(frozen=True)
class OkgTarget:
    """One build of OKG's manager and the files of the module it was built from."""

    name: str
    version: str
    manager: Path
    crds: Path
    role: Path


@dataclass(frozen=True)
class OkgBuilds:
    """What `hack/test-okg.sh` produced: targets by name, and its log for the missing ones."""

    targets: dict[str, OkgTarget]
    log: str

    def target(self, name: str) -> OkgTarget:
        """The target `name` (`release` or `master`); raises `OkgUnavailableError` with the
        build script's log when it could not be built."""
        if name in self.targets:
            return self.targets[name]
        raise OkgUnavailableError(
            f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} produced no OKG manager for {name!r}, so "
            f"the okg tier cannot run against it. Its log ends with:\n{self.log}\n"
            "How to fix: run `hack/test-okg.sh` by hand and fix what it reports. Usually `go` "
            "is not on PATH, or the Go module proxy is unreachable or refuses the version "
            "(then set KIDECAR_OKG_SOURCE_GIT to a git directory with OKG's history, or "
            "choose the version with KIDECAR_OKG_RELEASE_VERSION / KIDECAR_OKG_MASTER_VERSION)."
        )


def locate_okg(workdir: Path) -> OkgBuilds:
    """Run `hack/test-okg.sh` (building what is missing) under the test cache's build lock,
    the one `hack/test-apiserver.sh` runs under, and parse what it printed. Its stderr goes to
    `workdir/test-okg.log`."""
    build_log = workdir / "test-okg.log"
    _, values = run_build_script(BUILD_SCRIPT, build_log)
    targets = {}
    for name in TARGETS:
        suffix = name.upper()
        manager = Path(values.get(f"OKG_MANAGER_{suffix}", ""))
        if manager.is_file() and os.access(manager, os.X_OK):
            targets[name] = OkgTarget(
                name=name,
                version=values[f"OKG_VERSION_{suffix}"],
                manager=manager,
                crds=Path(values[f"OKG_CRDS_{suffix}"]),
                role=Path(values[f"OKG_ROLE_{suffix}"]),
            )
    return OkgBuilds(targets, tail(build_log))


def install_okg_prerequisites(cluster: TestCluster, target: OkgTarget) -> None:
    """CRDs (OKG's game.kruise.io ones from its module, the project's Kruise fixtures), and
    OKG's namespace, ServiceAccount, ClusterRole and ClusterRoleBinding."""
    okg_crds = sorted(target.crds.glob("game.kruise.io_*.yaml"))
    if not okg_crds:
        raise OkgUnavailableError(f"no game.kruise.io CRDs in {target.crds}")
    cluster.install_crds([*okg_crds, *sorted(KRUISE_CRDS.glob("*.yaml"))])
    cluster.create_namespace(NAMESPACE)
    roles = [d for d in load_yaml_documents(target.role) if d.get("kind") == "ClusterRole"]
    if len(roles) != 1:
        raise OkgUnavailableError(f"{target.role}: expected one ClusterRole, found {len(roles)}")
    cluster.apply_yaml(roles)
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"kidecar-test-{SERVICE_ACCOUNT}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": roles[0]["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
    }
    cluster.apply_yaml([account], NAMESPACE)
    cluster.apply_yaml([binding])


class OkgManager:
    """OKG's manager process (see the module docstring). Log: `workdir/okg-manager.log`."""

    def __init__(self, cluster: TestCluster, target: OkgTarget, workdir: Path) -> None:
        self.cluster = cluster
        self.target = target
        self.workdir = workdir
        self.log_path = workdir / "okg-manager.log"
        self.health_port = free_port()
        self._process: ServerProcess | None = None

    @classmethod
    def start(
        cls, cluster: TestCluster, target: OkgTarget, workdir: Path, ready_timeout: float = 60.0
    ) -> OkgManager:
        """Install the prerequisites, start the manager and wait until its GameServerSet and
        GameServer controllers run (caches synced). Raises `OkgUnavailableError` with the end
        of its log if it exits or does not get there within `ready_timeout`."""
        workdir.mkdir(parents=True, exist_ok=True)
        install_okg_prerequisites(cluster, target)
        manager = cls(cluster, target, workdir)
        manager._process = ServerProcess("okg-manager", manager.argv(), manager.log_path)
        try:
            manager._wait_ready(ready_timeout)
        except BaseException:
            manager.stop()
            raise
        return manager

    def argv(self) -> list[str]:
        """The manager's command line (writes its kubeconfig, certificate and provider
        config into the workdir)."""
        kubeconfig = self.cluster.serviceaccount_kubeconfig(NAMESPACE, SERVICE_ACCOUNT)
        certs = write_serving_cert(self.workdir / "webhook-certs")
        provider_config = self.workdir / "provider-config.toml"
        provider_config.write_text(PROVIDER_CONFIG)
        return [
            str(self.target.manager),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--enable-cert-generation=false",
            f"--webhook-server-certs-dir={certs}",
            f"--webhook-port={free_port()}",
            f"--provider-config={provider_config}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
            f"--scale-server-bind-address=127.0.0.1:{free_port()}",
        ]

    def started_controllers(self) -> set[str]:
        """The controllers whose workers have started, from the log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return set(WORKERS_STARTED.findall(text))

    def _healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=2)
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (self._healthy() and set(CONTROLLERS) <= self.started_controllers()):
            if not self.running:
                raise OkgUnavailableError(
                    f"OKG's manager {self.target.version} exited while starting. "
                    f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise OkgUnavailableError(
                    f"OKG's manager {self.target.version} did not start its controllers within "
                    f"{timeout:.0f}s. Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        """Whether the manager process is alive."""
        return self._process is not None and self._process.running()

    def stop(self) -> None:
        """Stop the manager (SIGTERM, then SIGKILL). Idempotent."""
        if self._process is not None:
            self._process.stop(timeout=10)
            self._process = None

    def __enter__(self) -> OkgManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A sidecar with a pod's in-cluster configuration, on this machine: what a pod runs.

``kidecar run`` without ``--kubeconfig`` uses the official client's in-cluster loader, which reads
the ServiceAccount token and CA from fixed paths (``/var/run/secrets/kubernetes.io/
serviceaccount/{token,ca.crt}``) and the API server's address from ``KUBERNETES_SERVICE_HOST``
and ``KUBERNETES_SERVICE_PORT``. Nothing is written to ``/var/run``: the sidecar runs in its own
user and mount namespaces (``unshare --user --map-root-user --mount``, no privilege needed where
the kernel allows unprivileged user namespaces), in which a directory of the benchmark holding
``secrets/kubernetes.io/serviceaccount`` is bind-mounted over ``/var/run``. The process is the
same ``kidecar run`` (``exec``, same PID) with the same code path as in a pod; only that one mount
differs, which the sidecar does not otherwise use.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import BenchSidecar, lifeline
from bench.kube import SERVICE_ACCOUNT, BenchCluster
from kidecar_core.testing import Sidecar

SERVICE_ACCOUNT_DIR = "secrets/kubernetes.io/serviceaccount"
"""Below ``/var/run``: where the kubelet mounts the ServiceAccount's token, CA and namespace."""
MOUNT_THEN_EXEC = 'mount --bind "$0" /var/run && exec "$@"'


def unavailable() -> str | None:
    """Why an in-cluster sidecar cannot run here (``None``: it can)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "no `unshare` (util-linux) on this machine"
    with tempfile.TemporaryDirectory() as empty:
        probe = subprocess.run(
            [unshare, "--user", "--map-root-user", "--mount", "--", "sh", "-c", MOUNT_THEN_EXEC,
             empty, "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )  # fmt: skip
    if probe.returncode != 0:
        return (
            "no unprivileged user + mount namespace with a bind mount over /var/run: "
            f"{probe.stderr.strip()[:200]}"
        )
    return None


class InClusterSidecar(BenchSidecar):
    """``kidecar run`` (no ``--kubeconfig``, no ``--local-state``) against the bench's API
    server as the ``kidecar`` ServiceAccount, its token and CA where a pod has them."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], *, bench: BenchCluster, pod_name: str
    ) -> None:
        run = Path(workdir) / "var-run"
        secrets = run / SERVICE_ACCOUNT_DIR
        secrets.mkdir(parents=True, exist_ok=True)
        cluster = bench.cluster
        token = cluster.serviceaccount_token(bench.namespace, SERVICE_ACCOUNT)
        (secrets / "token").write_text(token)
        (secrets / "ca.crt").write_bytes(Path(cluster.ca_file).read_bytes())
        (secrets / "namespace").write_text(bench.namespace)
        self.var_run = run
        server = urlsplit(cluster.server)
        assert server.hostname is not None and server.port is not None
        env = {
            "KUBERNETES_SERVICE_HOST": server.hostname,
            "KUBERNETES_SERVICE_PORT": str(server.port),
        }
        super().__init__(workdir, config, pod_name=pod_name, namespace=bench.namespace, env=env)

    def argv(self) -> list[str]:
        plain = Sidecar.argv(self)
        at = plain.index("--local-state")
        del plain[at : at + 2]  # neither local mode nor a kubeconfig: in-cluster
        unshare = shutil.which("unshare") or "unshare"
        return lifeline(
            [unshare, "--user", "--map-root-user", "--mount", "--", "sh", "-c", MOUNT_THEN_EXEC,
             str(self.var_run), *plain]
        )  # fmt: skip

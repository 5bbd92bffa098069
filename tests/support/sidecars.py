"""``kidecar run`` processes for one kube test, each in a directory of its own, all stopped at
the end of the test: the ``kube_sidecars`` fixture in ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kidecar_core.testing import Sidecar

RESYNC_OFF = {"KIDECAR_RESYNC_SECONDS": "3600"}
"""Environment that keeps the periodic resync out of a test that counts API writes."""


class Sidecars:
    """Makes (does not start) :class:`~kidecar_core.testing.Sidecar` processes for pod
    ``pod_name`` of ``namespace``; :meth:`stop` stops those still running."""

    def __init__(self, root: Path, namespace: str, pod_name: str = "gs-0") -> None:
        self.root = root
        self.namespace = namespace
        self.pod_name = pod_name
        self.started: list[Sidecar] = []

    def __call__(
        self,
        kubeconfig: Path,
        config: dict[str, Any],
        *plugin_files: Path,
        env: Mapping[str, str] | None = None,
    ) -> Sidecar:
        """A sidecar talking to the API server through ``kubeconfig``, with override files
        ``plugin_files`` (``--plugin-file``) and ``env`` on top of this process's environment."""
        sc = Sidecar(
            self.root / f"sidecar{len(self.started)}",
            config,
            kubeconfig=str(kubeconfig),
            env=env,
            extra_args=[a for f in plugin_files for a in ("--plugin-file", str(f))],
            pod_name=self.pod_name,
            namespace=self.namespace,
        )
        self.started.append(sc)
        return sc

    def stop(self) -> None:
        for sc in self.started:
            if sc.proc is not None and sc.proc.returncode is None:
                sc.stop()

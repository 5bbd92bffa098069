"""Real kidecar sidecars for the Pods of a GameServerSet (the okg tier).

Each Pod gets one `kidecar run --kubeconfig` process (`kidecar_core.testing.Sidecar`) with the
identity of deploy/base/rbac.yaml's `kidecar` ServiceAccount, `POD_NAME`/`POD_NAMESPACE` of its
Pod, and an http_probe of its game's state endpoint (`tests.support.gamestate.GameStates`). The
game's answer is written the way issue 11 measured it: the GameServer's `spec.opsState` through
`markerPolicies` AND the Pod annotation `STATE_ANNOTATION`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kidecar_core.testing import Sidecar
from tests.support.gamestate import GameStates

STATE_ANNOTATION = "game.example.com/state"
OPS_STATE = {"idle": "None", "allocated": "Allocated", "draining": "WaitToBeDeleted"}
"""Game state (what the game's endpoint says) → the GameServer opsState kidecar writes."""
PROBE_INTERVAL_SECONDS = 0.1


def sidecar_config(url: str) -> dict[str, Any]:
    """kidecar's config for one Pod: probe `url`, write opsState and the Pod annotation."""
    policies = [{"state": s, "gameServerOpsState": ops} for s, ops in OPS_STATE.items()]
    return {
        "plugins": [
            {
                "name": "http_probe",
                "config": {
                    "startDelaySeconds": 0,
                    "probeIntervalSeconds": PROBE_INTERVAL_SECONDS,
                    "endpoints": [
                        {
                            "url": url,
                            "timeout": 2,
                            "expectedStatusCode": 200,
                            "storageConfig": {
                                "type": "InKube",
                                "inKube": {
                                    "annotationKey": STATE_ANNOTATION,
                                    "markerPolicies": policies,
                                },
                            },
                        }
                    ],
                },
            }
        ]
    }


class Fleet:
    """The sidecars of one namespace's Pods; `start(pods)`, `stop()`, or use with `with`."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        namespace: str,
        games: GameStates,
        config: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        """`config(pod)`: each sidecar's config (default: `sidecar_config` of its game's
        state endpoint)."""
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.games = games
        self.config = config or (lambda pod: sidecar_config(games.url(pod)))
        self.sidecars: dict[str, Sidecar] = {}

    def start(self, pods: Iterable[str], timeout: float = 60.0) -> None:
        """Start a sidecar for each Pod (its game must have a state already) and wait until
        all answer /readyz with 200."""
        new = [
            Sidecar(
                self.workdir / pod,
                self.config(pod),
                kubeconfig=str(self.kubeconfig),
                pod_name=pod,
                namespace=self.namespace,
            )
            for pod in pods
        ]
        with ThreadPoolExecutor(max_workers=len(new) or 1) as pool:
            list(pool.map(lambda sc: sc.start(wait_ready=True, timeout=timeout), new))
        self.sidecars.update({sc.env["POD_NAME"]: sc for sc in new})

    def stop(self, pods: Iterable[str] | None = None) -> None:
        """Stop (SIGTERM) the sidecars of `pods` (default: all) in parallel."""
        names = list(self.sidecars) if pods is None else list(pods)
        running = [self.sidecars.pop(n) for n in names if n in self.sidecars]
        with ThreadPoolExecutor(max_workers=len(running) or 1) as pool:
            list(pool.map(lambda sc: sc.stop(), [sc for sc in running if sc.proc is not None]))

    def logs(self) -> str:
        """The end of every sidecar's log, for failure messages."""
        return "\n".join(
            f"--- {name} ---\n{sc.log()[-2000:]}" for name, sc in sorted(self.sidecars.items())
        )

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

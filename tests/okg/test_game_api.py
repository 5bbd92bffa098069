"""Games tell OKG themselves, through game_api: one real `kidecar run` per Pod with only game_api,
each game PATCHing its own GameServer on localhost; the real OKG manager scales in by it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kidecar_core.testing import Sidecar, free_port
from kidecar_plugins.game_api.client import GameApiClient, GameApiError
from tests.okg.conftest import KIDECAR_ACCOUNT, OkgEnv
from tests.support.apiserver import KIDECAR_RBAC
from tests.support.gss import GameServerSets

pytestmark = [pytest.mark.okg, pytest.mark.kube]

GSS = "gs"
ALL = ["gs-0", "gs-1", "gs-2"]


class Games:
    """A game_api sidecar per Pod of the test namespace, and each game's client of it."""

    def __init__(self, env: OkgEnv, sets: GameServerSets, workdir: Path) -> None:
        env.cluster.apply_yaml(KIDECAR_RBAC, sets.namespace)
        self.kubeconfig = env.cluster.serviceaccount_kubeconfig(sets.namespace, KIDECAR_ACCOUNT)
        self.namespace = sets.namespace
        self.workdir = workdir
        self.sidecars: dict[str, Sidecar] = {}
        self.api: dict[str, GameApiClient] = {}

    def start(self, pods: list[str]) -> None:
        ports = {pod: free_port() for pod in pods}
        for pod in pods:
            config = {"name": "game_api", "config": {"listen": f"127.0.0.1:{ports[pod]}"}}
            self.sidecars[pod] = Sidecar(
                self.workdir / pod,
                {"plugins": [config]},
                kubeconfig=str(self.kubeconfig),
                pod_name=pod,
                namespace=self.namespace,
            )
            self.api[pod] = GameApiClient(f"http://127.0.0.1:{ports[pod]}")
        with ThreadPoolExecutor(max_workers=len(pods)) as pool:
            list(pool.map(lambda p: self.sidecars[p].start(wait_ready=True, timeout=60), pods))

    def stop(self, pods: list[str] | None = None) -> None:
        for pod in list(self.sidecars) if pods is None else pods:
            sidecar = self.sidecars.pop(pod)
            if sidecar.proc is not None:
                sidecar.stop()


@pytest.fixture
def games(okg_env: OkgEnv, okg_sets: GameServerSets, tmp_path: Path) -> Iterator[Games]:
    running = Games(okg_env, okg_sets, tmp_path / "sidecars")
    yield running
    running.stop()


def test_the_game_that_patches_wait_to_be_deleted_is_the_one_okg_removes(
    okg_sets: GameServerSets, games: Games
) -> None:
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    games.start(ALL)
    games.api["gs-0"].set_ops_state("Allocated")
    games.api["gs-1"].set_ops_state("WaitToBeDeleted")  # this match is over
    want = {"gs-0": "Allocated", "gs-1": "WaitToBeDeleted", "gs-2": "None"}
    okg_sets.wait_for(lambda: okg_sets.ops_states(GSS) == want, 30, f"opsStates {want}")
    assert games.api["gs-1"].gameserver().ops_state == "WaitToBeDeleted"

    okg_sets.scale(GSS, 2)  # the server its game drained goes, never the allocated one
    okg_sets.wait_ready(GSS, ["gs-0", "gs-2"])
    games.stop(["gs-1"])
    assert okg_sets.ops_states(GSS) == {"gs-0": "Allocated", "gs-2": "None"}

    # A human's Maintaining holds against the game: 409, nothing written.
    okg_sets.set_ops_state("gs-2", "Maintaining")
    gs2 = games.api["gs-2"]
    okg_sets.wait_for(lambda: gs2.gameserver().ops_state == "Maintaining", 30, "gs-2 sees it")
    with pytest.raises(GameApiError) as refused:
        gs2.set_ops_state("WaitToBeDeleted")
    assert refused.value.status == 409
    okg_sets.scale(GSS, 1)  # Allocated goes before Maintaining
    okg_sets.wait_ready(GSS, ["gs-2"])
    assert okg_sets.ops_states(GSS) == {"gs-2": "Maintaining"}

"""Real kidecar sidecars drive OKG: one `kidecar run` per Pod probes its game's state endpoint and
writes the GameServer's opsState (and a Pod annotation); OKG scales in by it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.fleet import STATE_ANNOTATION, Fleet
from tests.support.gamestate import GameStates
from tests.support.gss import GameServerSets

pytestmark = [pytest.mark.okg, pytest.mark.kube]

GSS = "gs"
ALL = ["gs-0", "gs-1", "gs-2"]


def annotations(sets: GameServerSets, pod: str) -> dict[str, Any]:
    with sets.cluster.admin_api_client() as api:
        meta = k8s.CoreV1Api(api).read_namespaced_pod(pod, sets.namespace).metadata
        return dict(meta.annotations or {})


def test_sidecars_drain_scale_in_and_a_humans_maintaining_and_kill_win(
    okg_sets: GameServerSets, games: GameStates, fleet: Fleet
) -> None:
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    games.set("gs-0", "allocated")
    games.set("gs-1", "draining")
    games.set("gs-2", "idle")
    fleet.start(ALL)
    want = {"gs-0": "Allocated", "gs-1": "WaitToBeDeleted", "gs-2": "None"}
    okg_sets.wait_for(lambda: okg_sets.ops_states(GSS) == want, 30, f"opsStates {want}")
    # The GameServer is written before the Pod (issue 11): the annotation follows it.
    okg_sets.wait_for(
        lambda: annotations(okg_sets, "gs-1").get(STATE_ANNOTATION) == "draining",
        30, "gs-1's annotation",
    )  # fmt: skip

    okg_sets.scale(GSS, 2)  # the drained server goes, never the allocated one
    okg_sets.wait_ready(GSS, ["gs-0", "gs-2"])
    fleet.stop(["gs-1"])

    # A human's Maintaining holds: the game's next answer reaches the Pod, not the opsState.
    okg_sets.set_ops_state("gs-2", "Maintaining")
    games.set("gs-2", "allocated")
    okg_sets.wait_for(
        lambda: annotations(okg_sets, "gs-2").get(STATE_ANNOTATION) == "allocated",
        30, "gs-2's sidecar to see the new state",
    )  # fmt: skip
    assert okg_sets.ops_states(GSS) == {"gs-0": "Allocated", "gs-2": "Maintaining"}
    okg_sets.scale(GSS, 1)  # Allocated goes before Maintaining
    okg_sets.wait_ready(GSS, ["gs-2"])
    fleet.stop(["gs-0"])

    okg_sets.set_ops_state("gs-2", "Kill")  # and Kill shrinks the set
    okg_sets.wait_for(lambda: okg_sets.pods(GSS) == [], 30, "gs-2 to be killed")
    assert okg_sets.replicas(GSS) == 0
    assert okg_sets.ops_states(GSS) == {}

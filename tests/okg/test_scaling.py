"""OKG's scaling rules with a plain API client: the chain GameServerSet → Advanced StatefulSet →
Pods (the Kruise stand-in) → GameServers (OKG) works, and OKG scales in by opsState (Kill >
WaitToBeDeleted > None > Allocated > Maintaining)."""

from __future__ import annotations

import pytest

from tests.okg.conftest import OkgEnv
from tests.support.gss import GameServerSets

pytestmark = [pytest.mark.okg, pytest.mark.kube]

GSS = "gs"
ALL = ["gs-0", "gs-1", "gs-2"]


def test_a_set_of_three_gets_three_pods_and_game_servers(
    okg_env: OkgEnv, okg_sets: GameServerSets
) -> None:
    errors_before = len(okg_env.standin.errors)
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    assert okg_sets.ops_states(GSS) == dict.fromkeys(ALL, "None")
    assert okg_env.standin.errors[errors_before:] == []


def test_scale_in_removes_the_server_waiting_to_be_deleted(okg_sets: GameServerSets) -> None:
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    okg_sets.set_ops_state("gs-1", "WaitToBeDeleted")
    okg_sets.wait_for(lambda: okg_sets.ops_states(GSS)["gs-1"] == "WaitToBeDeleted", 10, "gs-1")
    okg_sets.scale(GSS, 2)
    okg_sets.wait_ready(GSS, ["gs-0", "gs-2"])
    assert okg_sets.ops_states(GSS) == {"gs-0": "None", "gs-2": "None"}


def test_a_humans_maintaining_holds_on_scale_in(okg_sets: GameServerSets) -> None:
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    okg_sets.set_ops_state("gs-0", "Maintaining")
    okg_sets.set_ops_state("gs-1", "Allocated")
    okg_sets.wait_for(
        lambda: okg_sets.ops_states(GSS) == {"gs-0": "Maintaining", "gs-1": "Allocated",
                                             "gs-2": "None"},
        10, "the opsStates",
    )  # fmt: skip
    okg_sets.scale(GSS, 2)  # None goes first ...
    okg_sets.wait_ready(GSS, ["gs-0", "gs-1"])
    okg_sets.scale(GSS, 1)  # ... then Allocated, and Maintaining stays
    okg_sets.wait_ready(GSS, ["gs-0"])
    assert okg_sets.ops_states(GSS) == {"gs-0": "Maintaining"}


def test_kill_shrinks_the_set(okg_sets: GameServerSets) -> None:
    okg_sets.create(GSS, 3)
    okg_sets.wait_ready(GSS, ALL)
    okg_sets.set_ops_state("gs-0", "Kill")
    okg_sets.wait_ready(GSS, ["gs-1", "gs-2"])
    assert okg_sets.replicas(GSS) == 2  # OKG lowered the set's replicas itself

"""Object names and label keys are checked by the one set of naming rules in
``kidecar_core/_store/validation.py`` (issue 10: the DNS-subdomain rule in one place), also by
``kidecar rollout`` and ``kidecar inject --sidecarset``, so both refuse what the API server
refuses (an empty label between two dots, for one)."""

from __future__ import annotations

import pytest

from kidecar_core._inject.sidecarset import parse_selector
from kidecar_core._store.rollout import RolloutUsageError, Workload
from kidecar_core.errors import KidecarError


@pytest.mark.parametrize("name", ["game..a", "game.-a", "-game", "game-", "Game"])
def test_a_workload_name_follows_the_dns_subdomain_rule(name: str) -> None:
    with pytest.raises(RolloutUsageError, match="is not a valid object name"):
        Workload.parse(f"gameserverset/{name}", "prod")


def test_a_valid_workload_name_is_accepted() -> None:
    assert Workload.parse("gss/game.eu-1", "prod").name == "game.eu-1"


@pytest.mark.parametrize(
    "pair", ["example..com/app=game", "Example.com/app=game", "app=-game", "/app=game"]
)
def test_a_selector_follows_the_label_rules(pair: str) -> None:
    with pytest.raises(KidecarError, match="expected KEY=VALUE with a valid label"):
        parse_selector([pair])


def test_valid_selectors_are_accepted() -> None:
    pairs = ["game.kruise.io/app=game", "tier=", "x=a.b_c-d"]
    assert parse_selector(pairs) == {"game.kruise.io/app": "game", "tier": "", "x": "a.b_c-d"}

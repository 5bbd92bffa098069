"""The http_probe configs of the Go predecessor (tests/compat/go_configs/) run for real against
the real API server: one ``kidecar run`` per config, driven through every state of its policies,
and the writes land on the real Pod and GameServer exactly where the local-mode test
(:mod:`tests.compat.test_go_configs`, whose expectations this module reuses) says they do.

Where the Go version put them (its ``pkg/store/in_kube.go``): ``annotationKey``/``labelKey`` and a
policy's ``labels``/``annotations`` on the **Pod**; ``gameServerOpsState``, ``jsonPath`` and
``jsonPathConfigs`` on the ``target`` (default: the pod's GameServer).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from kidecar_core.testing import Sidecar
from tests.compat.test_go_configs import (
    WHO,
    go_writes,
    inkube_configs,
    probe_cases,
    raw,
    run_config,
    states,
    target_of,
)
from tests.plugins.http_probe.game import GameHTTP
from tests.support.apiserver import GameServerFactory, TestCluster

pytestmark = pytest.mark.kube

NAME = WHO.name


def live(api: k8s.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """The real Pod and GameServer as JSON-shaped dicts: ``{"pod": ..., "gameserver": ...}``."""
    pod = k8s.CoreV1Api(api).read_namespaced_pod(NAME, namespace)
    gs = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        "game.kruise.io", "v1alpha1", namespace, "gameservers", NAME
    )
    return {
        "pod": cast(dict[str, Any], api.sanitize_for_serialization(pod)),
        "gameserver": cast(dict[str, Any], gs),
    }


def leaf(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def missing(
    objects: Mapping[str, Mapping[str, Any]],
    wanted: Mapping[str, Mapping[tuple[str, ...], Any]],
    target: str,
) -> list[str]:
    """The wanted leaves the real objects do not (yet) hold, as ``object:/path=want (got)``."""
    where = {"pod": "pod", "pod-policy": "pod", "target": target}
    out = []
    for group, key in where.items():
        for path, value in wanted[group].items():
            got = leaf(objects[key], path)
            if got != value:
                out.append(f"{key}:/{'/'.join(path)}={value!r} (got {got!r})")
    return out


def strays(
    objects: Mapping[str, Mapping[str, Any]],
    wanted: Mapping[str, Mapping[tuple[str, ...], Any]],
    target: str,
) -> list[str]:
    """The Pod-bound keys (state key, policy labels/annotations) that also showed up on the
    target: the Go version wrote them to the Pod only."""
    if target == "pod":
        return []
    paths = [*wanted["pod"], *wanted["pod-policy"]]
    return [f"{target}:/{'/'.join(p)}" for p in paths if leaf(objects[target], p) is not None]


@pytest.mark.parametrize("name", probe_cases())
def test_http_probe_configs_write_the_real_pod_and_gameserver(
    name: str,
    tmp_path: Path,
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    make_game_server: GameServerFactory,
) -> None:
    (inkube,) = [i for p, i in inkube_configs(raw(name)) if p == "http_probe"]
    target = "pod" if target_of(inkube).resource == "pods" else "gameserver"
    sequence = [*states(inkube), states(inkube)[0]]
    make_game_server(NAME)
    with GameHTTP() as game, kube_cluster.admin_api_client() as api:
        game.set("/", sequence[0])
        sc = Sidecar(
            tmp_path / "sidecar",
            run_config(name, game.url("/")),
            kubeconfig=str(sa_kubeconfig),
            env={"KIDECAR_RESYNC_SECONDS": "3600"},
            pod_name=NAME,
            namespace=kube_namespace,
        )
        with sc:
            sc.start(wait_ready=True)
            for state in sequence:
                game.set("/", state)
                wanted = go_writes(inkube, state)
                assert any(wanted.values()), f"{name}: state {state!r} writes nothing"
                try:
                    sc.wait_for(
                        lambda w=wanted: not missing(live(api, kube_namespace), w, target),
                        15,
                        f"the writes of {state!r}",
                    )
                except AssertionError as error:
                    lacking = missing(live(api, kube_namespace), wanted, target)
                    raise AssertionError(f"{name}, state {state!r}: {lacking}") from error
                assert not strays(live(api, kube_namespace), wanted, target), (name, state)
            assert sc.stop() == 0

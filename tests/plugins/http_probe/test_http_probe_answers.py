"""Which answers drive the GameServer, end to end in local mode (``kidecar run --local-state``)
and against the real API server: a draining game's 503, an expected redirect, an HTTPS game with
a self-signed certificate, a redirect to another host."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.http_probe.game import GameHTTP, answer, redirect
from tests.plugins.http_probe.test_http_probe_kube import NAME, Objects
from tests.plugins.http_probe.test_http_probe_local import (
    inkube,
    ops_state,
    plugin,
    pod_meta,
    probes,
)
from tests.plugins.http_probe.tls import self_signed
from tests.support.apiserver import GameServerFactory, TestCluster

POLICIES = [
    {"state": "Allocated", "gameServerOpsState": "Allocated"},
    {"state": "draining", "gameServerOpsState": "WaitToBeDeleted"},
    {"state": "Failed", "gameServerOpsState": "Maintaining"},
]


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


def endpoint(url: str, **options: Any) -> dict[str, Any]:
    storage = inkube(annotationKey="example.com/state", markerPolicies=POLICIES)
    return {"url": url, "timeout": 2, "failureThreshold": 2, "storageConfig": storage, **options}


def test_a_draining_503_is_a_state_a_dead_503_is_a_failure(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", {"state": "Allocated"})
    config = plugin(
        endpoint(
            game.url("/state"),
            expectedStatusCode=[200, 503],
            jsonPathConfig={"jsonPath": "state"},
        )
    )
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        game.set("/state", answer({"state": "draining"}, status=503))
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "draining → WaitToBeDeleted")
        # The Pod and the GameServer are written one after the other.
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "draining", 15, "the pod")
        # A proxy in front of a dead game answers 503 too, without a state: a failed probe.
        game.set("/state", answer("<html>503 Service Unavailable</html>", status=503))
        sc.wait_for(lambda: ops_state(sc) == "Maintaining", 15, "Failed → Maintaining")
        assert probes(sc, outcome="body") >= 2


def test_an_expected_301_drives_the_state_without_following(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", redirect(game.url("/moved"), status=301, body="Allocated"))
    game.set("/moved", "draining")
    config = plugin(endpoint(game.url("/state"), expectedStatusCode=301))
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated from the 301's body")
        game.wait_for_requests("/state", game.count("/state") + 3)
        assert game.count("/moved") == 0


def test_a_redirect_to_another_host_fails_the_probe(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", redirect(game.url("/moved", host="localhost")))
    game.set("/moved", "Allocated")
    with Sidecar(tmp_path, plugin(endpoint(game.url("/state")))) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Maintaining", 15, "Failed → Maintaining")
        assert game.count("/moved") == 0
        assert "(redirect to http://localhost:" in sc.log()
        (event,) = [e for e in sc.state()["events"] if e["reason"] == "ProbeFailed"]
        assert "not followed), expected 200" in event["message"]


def test_an_https_game_with_a_self_signed_certificate(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path / "tls")
    with GameHTTP(tls=certificate.server_context()) as game:
        game.set("/state", "Allocated")
        config = plugin(
            endpoint(game.url("/state")),
            endpoint(game.url("/state"), caFile=str(certificate.cert)),
            endpoint(game.url("/state"), insecureSkipVerify=True),
        )
        for e, key in zip(config["plugins"][0]["config"]["endpoints"], "abc", strict=True):
            e["storageConfig"] = inkube(annotationKey=f"example.com/{key}")
        with Sidecar(tmp_path / "sidecar", config) as sc:
            sc.start(wait_ready=True)

            def annotations() -> dict[str, str]:
                return {k: v for k, v in pod_meta(sc).items() if k.startswith("example.com/")}

            expected = {"example.com/a": "Failed", "example.com/b": "Allocated"}
            expected["example.com/c"] = "Allocated"
            sc.wait_for(lambda: annotations() == expected, 15, "each endpoint's state")
        assert "self-signed certificate): set caFile" in sc.log()


@pytest.mark.kube
def test_kube_an_https_game_drains_with_503_and_redirects_as_expected(
    tmp_path: Path,
    make_game_server: GameServerFactory,
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
) -> None:
    make_game_server(NAME, gameserver_spec={"opsState": "None"})
    objects = Objects(kube_cluster, kube_namespace)
    certificate = self_signed(tmp_path / "tls")
    with GameHTTP(tls=certificate.server_context()) as game:
        game.set("/state", {"state": "Allocated"})
        game.set("/moved", redirect(game.url("/state"), status=308, body="draining"))
        config = plugin(
            endpoint(
                game.url("/state"),
                caFile=str(certificate.cert),
                expectedStatusCode=[200, 503],
                jsonPathConfig={"jsonPath": "state"},
            ),
            endpoint(game.url("/moved"), insecureSkipVerify=True, expectedStatusCode=308),
        )
        config["plugins"][0]["config"]["endpoints"][1]["storageConfig"] = inkube(
            annotationKey="example.com/moved"
        )
        sc = Sidecar(
            tmp_path / "sidecar",
            config,
            kubeconfig=str(sa_kubeconfig),
            pod_name=NAME,
            namespace=kube_namespace,
        )
        with sc:
            sc.start(wait_ready=True)
            sc.wait_for(lambda: objects.ops() == "Allocated", 10, "Allocated over HTTPS")
            sc.wait_for(
                lambda: objects.pod_annotations().get("example.com/moved") == "draining",
                10,
                "the 308's own body",
            )
            game.set("/state", answer({"state": "draining"}, status=503))
            sc.wait_for(lambda: objects.ops() == "WaitToBeDeleted", 10, "draining")
            game.set("/state", answer("<html>bad gateway</html>", status=503))
            sc.wait_for(lambda: objects.ops() == "Maintaining", 10, "Failed → Maintaining")
            assert sc.stop() == 0


def test_a_missing_ca_file_stops_the_sidecar_with_exit_code_2(tmp_path: Path) -> None:
    config = plugin(endpoint("https://127.0.0.1:1/state", caFile=str(tmp_path / "missing.pem")))
    sc = Sidecar(tmp_path / "sidecar", config)
    with sc:
        sc.proc = subprocess.Popen(sc.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = sc.proc.communicate(timeout=30)
    assert sc.proc.returncode == 2, out
    text = out.decode()
    assert "plugins[0].config.endpoints[0].caFile: cannot load" in text
    assert "No such file or directory" in text and "Traceback" not in text

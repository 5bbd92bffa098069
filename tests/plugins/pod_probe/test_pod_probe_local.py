"""pod_probe end to end in local mode: ``kidecar run`` as a subprocess, the pod in the state file
(its annotation holds the probes, its ``status.conditions`` receive the results), real probe
targets (commands, a TCP listener, an HTTP server)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.http_probe.game import GameHTTP
from tests.plugins.pod_probe.podstate import (
    KUBELET_CONDITIONS,
    condition,
    conditions,
    edit_pod,
    events,
    exec_probe,
    probe_entry,
    seed_pod,
    set_annotation,
    wait_condition,
)

CONFIG: dict[str, Any] = {"plugins": [{"name": "pod_probe", "config": {}}]}


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def sidecar(tmp_path: Path, config: dict[str, Any] | None = None) -> Sidecar:
    return Sidecar(tmp_path / "sidecar", config or CONFIG)


def test_every_handler_writes_its_condition_and_nothing_else(
    tmp_path: Path, game: GameHTTP, listener: int
) -> None:
    game.set("/state", "idle")
    entries = [
        exec_probe("idle", "echo idle"),
        probe_entry("port", {"tcpSocket": {"port": listener}}),
        probe_entry("http", {"httpGet": {"port": game.port, "path": "/state"}}),
        probe_entry("down", {"tcpSocket": {"port": 1}}),
    ]
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, entries)
    with sc.start():
        idle = wait_condition(sc, "idle", "True", "idle")
        assert wait_condition(sc, "port", "True", "")
        assert wait_condition(sc, "http", "True", "idle")
        down = wait_condition(sc, "down", "False")
        assert down["message"] == "dial tcp 127.0.0.1:1: connect: connection refused"
        assert set(idle) == {"type", "status", "message", "lastProbeTime", "lastTransitionTime"}
        assert idle["lastProbeTime"].endswith("Z") and idle["lastTransitionTime"].endswith("Z")
        # The kubelet's conditions and someone else's are exactly as they were.
        assert list(conditions(sc).values())[:3] == KUBELET_CONDITIONS
        wanted = {
            ("KruiseProbeSucceeded", "idle", "Normal"),
            ("KruiseProbeFailed", down["message"], "Normal"),
        }
        # Events are recorded in the background, after the condition: wait for them.
        sc.wait_for(
            lambda: wanted <= {(e["reason"], e["message"], e["type"]) for e in events(sc)},
            10,
            "the probes' Events",
        )
        assert game.requests("/state")[0].headers["User-Agent"] == "kube-probe"
        assert sc.stop() == 0
    assert "Traceback" not in sc.log()


def test_a_steady_probe_writes_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, [exec_probe("idle", f"echo x >> {runs}; echo idle")])
    with sc.start():
        wait_condition(sc, "idle", "True", "idle")
        version = sc.state()["pod"]["metadata"]["resourceVersion"]
        probed = len(runs.read_text().split())
        sc.wait_for(lambda: len(runs.read_text().split()) >= probed + 3, 20, "3 more probes")
        assert sc.state()["pod"]["metadata"]["resourceVersion"] == version
        assert len(events(sc, "KruiseProbeSucceeded")) == 1


def test_thresholds_keep_the_condition_until_reached(tmp_path: Path) -> None:
    flag, runs = tmp_path / "healthy", tmp_path / "runs"
    flag.write_text("yes")
    script = f"echo x >> {runs}; test -e {flag} && echo ok || {{ echo sick >&2; exit 1; }}"
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, [exec_probe("health", script, failureThreshold=3)])
    with sc.start():
        first = wait_condition(sc, "health", "True", "ok")
        flag.unlink()
        failed_from = len(runs.read_text().split())
        sick = wait_condition(sc, "health", "False", "sick")
        # The condition turned only after three failures in a row.
        assert len(runs.read_text().split()) >= failed_from + 3
        flag.write_text("yes")
        ok = wait_condition(sc, "health", "True", "ok")
        assert ok["lastTransitionTime"] >= sick["lastTransitionTime"] >= first["lastTransitionTime"]
        # (The Event of the second success is the same as the first's: deduplicated.)
        assert [e["reason"] for e in events(sc) if e["reason"].startswith("Kruise")] == [
            "KruiseProbeSucceeded", "KruiseProbeFailed",
        ]  # fmt: skip


def test_a_changed_spec_restarts_the_probe_and_a_removed_one_stops(tmp_path: Path) -> None:
    gone_runs = tmp_path / "gone-runs"
    sc = sidecar(tmp_path)
    seed_pod(
        sc.state_path,
        [exec_probe("version", "echo v1"), exec_probe("gone", f"echo x >> {gone_runs}; echo g")],
    )
    with sc.start():
        first = wait_condition(sc, "version", "True", "v1")
        wait_condition(sc, "gone", "True", "g")
        set_annotation(sc, [exec_probe("version", "echo v2")])
        second = wait_condition(sc, "version", "True", "v2")
        # Same status: the transition time stays, the probe time moves on.
        assert second["lastTransitionTime"] == first["lastTransitionTime"]
        sc.wait_for(lambda: "probe gone of container game stopped (gone)" in sc.log(), 10)
        stopped_at = len(gone_runs.read_text().split())
        sc.wait_for(lambda: "probe version of container game restarted" in sc.log(), 10)
        time.sleep(2.5)  # more than two periods: a running probe would have run again
        assert len(gone_runs.read_text().split()) == stopped_at
        assert condition(sc, "gone") is not None  # left as last written, as Kruise leaves it


def test_a_removed_probe_leaves_no_metric_series_behind(tmp_path: Path) -> None:
    # Probe names come and go with the annotation: their series must not pile up.
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, [exec_probe("first", "echo 1")])
    with sc.start(wait_ready=True):
        wait_condition(sc, "first", "True", "1")
        sc.wait_for(lambda: 'probe="first"' in sc.get("/metrics")[1], 10, "first's series")
        set_annotation(sc, [exec_probe("second", "echo 2")])
        wait_condition(sc, "second", "True", "2")
        sc.wait_for(lambda: 'probe="second"' in sc.get("/metrics")[1], 10, "second's series")
        assert 'probe="first"' not in sc.get("/metrics")[1]


def test_bad_input_is_reported_once_and_the_other_probes_keep_running(tmp_path: Path) -> None:
    config = {"plugins": [{"name": "pod_probe", "config": {"probes": [
        exec_probe("static", "echo from-config")]}}]}  # fmt: skip
    sc = sidecar(tmp_path, config)
    seed_pod(sc.state_path, "[{not json")
    with sc.start():
        wait_condition(sc, "static", "True", "from-config")
        sc.wait_for(lambda: events(sc, "InvalidPodProbe"), 10, "an InvalidPodProbe event")
        assert "annotation kruise.io/podprobe is not valid JSON" in sc.log()
        set_annotation(
            sc,
            [
                exec_probe("good", "echo fine"),
                probe_entry("grpc", {"grpc": {"port": 9000}}),
                exec_probe("negative", "echo never", periodSeconds=-1),
                probe_entry("named", {"tcpSocket": {"port": "no-such-port"}}),
                probe_entry("unknown", {"udpSocket": {"port": 9000}}),
            ],
        )
        wait_condition(sc, "good", "True", "fine")
        wait_condition(sc, "static", "True", "from-config")
        sc.wait_for(lambda: len(events(sc, "InvalidPodProbe")) == 5, 10, "5 InvalidPodProbe")
        time.sleep(2.5)  # more periods: nothing more is reported, nothing written for the bad
        messages = [e["message"] for e in events(sc, "InvalidPodProbe")]
        assert messages == [
            "probe not run: annotation kruise.io/podprobe is not valid JSON: Expecting property "
            "name enclosed in double quotes: line 1 column 3 (char 2)",
            "probe not run: annotation kruise.io/podprobe[1].probe.grpc: grpc probes are not "
            "supported (exec, tcpSocket and httpGet are)",
            "probe not run: annotation kruise.io/podprobe[2].probe.periodSeconds: must be >= 0, "
            "got -1",
            "probe not run: annotation kruise.io/podprobe[4].probe: no handler: expected one of "
            "exec, tcpSocket, httpGet (unknown key(s): udpSocket)",
            "probe not run: annotation kruise.io/podprobe[3].probe.tcpSocket.port: container "
            "'game' has no port named 'no-such-port'",
        ]
        assert sc.log().count("probe not run:") == 5
        assert {"grpc", "negative", "named", "unknown"}.isdisjoint(
            t.removeprefix("game.kruise.io/") for t in conditions(sc)
        )
    assert "Traceback" not in sc.log()


def test_an_annotation_that_turns_bad_keeps_the_probes_it_described(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, [exec_probe("keep", f"echo x >> {runs}; echo kept")])
    with sc.start():
        wait_condition(sc, "keep", "True", "kept")
        set_annotation(sc, "definitely not json")
        sc.wait_for(lambda: events(sc, "InvalidPodProbe"), 10, "an InvalidPodProbe event")
        assert "still running the 1 probe(s) it described before" in sc.log()
        probed = len(runs.read_text().split())
        sc.wait_for(lambda: len(runs.read_text().split()) >= probed + 2, 10, "probes go on")


def test_a_stopped_game_container_fails_its_probes_at_once(tmp_path: Path) -> None:
    sc = sidecar(tmp_path)
    running = {"containerStatuses": [{"name": "game", "state": {"running": {
        "startedAt": "2024-01-01T00:00:00Z"}}}]}  # fmt: skip
    seed_pod(sc.state_path, [exec_probe("alive", "echo up", failureThreshold=5)], status=running)
    with sc.start():
        wait_condition(sc, "alive", "True", "up")

        def crash(pod: dict[str, Any]) -> None:
            pod["status"]["containerStatuses"] = [
                {"name": "game", "restartCount": 1, "state": {"waiting": {"reason": "Error"}}}
            ]

        edit_pod(sc, crash)
        wait_condition(sc, "alive", "False", "Container(game) is Non-running")


def test_a_condition_someone_removes_is_written_again(tmp_path: Path) -> None:
    sc = sidecar(tmp_path)
    seed_pod(sc.state_path, [exec_probe("idle", "echo idle")])
    with sc.start():
        wait_condition(sc, "idle", "True", "idle")

        def remove(pod: dict[str, Any]) -> None:
            pod["status"]["conditions"] = [
                c for c in pod["status"]["conditions"] if c["type"] != "game.kruise.io/idle"
            ]

        written = "condition game.kruise.io/idle=True"
        sc.wait_for(lambda: sc.log().count(written) == 1 and events(sc), 10, "a quiet kidecar")
        edit_pod(sc, remove, holds=lambda pod: True)
        sc.wait_for(lambda: sc.log().count(written) == 2, 20, "the condition written again")
        wait_condition(sc, "idle", "True", "idle")


def test_pod_probe_markers_are_read_when_the_annotation_is_absent(tmp_path: Path) -> None:
    marker = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "PodProbeMarker",
        "metadata": {"name": "gss", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"game.kruise.io/owner-gss": "gss"}},
            "probes": [
                {
                    **exec_probe("marker", "echo from-marker"),
                    "markerPolicy": [{"state": "Succeeded"}],
                },
                {**exec_probe("elsewhere", "echo never"), "containerName": "not-in-pod"},
                {**exec_probe("no-condition", "echo never"), "podConditionType": ""},
            ],
        },
    }
    other = json.loads(json.dumps(marker))
    other["metadata"]["name"] = "other"
    other["spec"]["selector"] = {"matchLabels": {"app": "else"}}
    other["spec"]["probes"] = [exec_probe("unselected", "echo never")]
    config = {"plugins": [{"name": "pod_probe", "config": {"podProbeMarkers": True}}]}
    sc = sidecar(tmp_path, config)
    objects = {
        "apps.kruise.io/v1alpha1/podprobemarkers/default/gss": marker,
        "apps.kruise.io/v1alpha1/podprobemarkers/default/other": other,
    }
    seed_pod(sc.state_path, None, labels={"game.kruise.io/owner-gss": "gss"}, objects=objects)
    with sc.start():
        wait_condition(sc, "marker", "True", "from-marker")
        time.sleep(1.5)
        probed = {t for t in conditions(sc) if t.startswith("game.kruise.io/")}
        assert probed == {"game.kruise.io/marker", "game.kruise.io/other"}  # other: a fixture's
        assert not events(sc, "InvalidPodProbe")

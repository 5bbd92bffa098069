"""End to end in local mode: a real game HTTP server, ``kidecar run`` as a subprocess, and the
GameServer / pod in the local state file."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.http_probe.game import GameHTTP, answer

OPS_STATES = ("None", "Allocated", "WaitToBeDeleted")
SEED = """\
plugins:
  - name: http_probe
    config:
      endpoints:
        - expectedStatusCode: 200 ## The status code representing successful detection
          method: GET # HTTP request method
          storageConfig: # Result saving configuration
            inKube:
              markerPolices: # Result saving rules
                - gameServerOpsState: WaitToBeDeleted
                  state: WaitToBeDeleted
                - gameServerOpsState: Allocated
                  state: Allocated
                - gameServerOpsState: None
                  state: None
            type: InKube
          timeout: 30  # Detection timeout period in seconds
          url: {url} # HTTP detection address
      startDelaySeconds: 0 # Detection start delay in seconds
      probeIntervalSeconds: 0.1 # Detection interval in seconds
    bootorder: 1
restartPolicy: Always
resources:
  CPU: 100m
  Memory: 128Mi
sidecarStartOrder: Before ## The startup order of the Sidecar
"""


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


def plugin(*endpoints: dict[str, Any], interval: float = 0.1, **options: Any) -> dict[str, Any]:
    config = {"probeIntervalSeconds": interval, "endpoints": list(endpoints), **options}
    return {"plugins": [{"name": "http_probe", "config": config}]}


def inkube(**options: Any) -> dict[str, Any]:
    return {"type": "InKube", "inKube": options}


def ops_policies(**extra: Any) -> list[dict[str, Any]]:
    return [{"state": s, "gameServerOpsState": s, **extra.get(s, {})} for s in OPS_STATES]


def gameserver(sc: Sidecar) -> dict[str, Any]:
    gs: dict[str, Any] = sc.state()["gameserver"]
    return gs


def ops_state(sc: Sidecar) -> str:
    return str(gameserver(sc)["spec"]["opsState"])


def pod_meta(sc: Sidecar, kind: str = "annotations") -> dict[str, str]:
    meta: dict[str, str] = sc.state()["pod"]["metadata"].get(kind, {})
    return meta


def writes(sc: Sidecar) -> float:
    return sum(
        sc.metric("kidecar_persist_writes_total", {"resource": r}) or 0.0
        for r in ("pods", "gameservers")
    )


def probes(sc: Sidecar, endpoint: str = "0", outcome: str = "success") -> float:
    labels = {"plugin": "http_probe", "endpoint": endpoint, "outcome": outcome}
    return sc.metric("kidecar_http_probe_probes_total", labels) or 0.0


def edit_state(sc: Sidecar, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the state file by hand, atomically, as a human (or OKG) changing objects would."""
    doc = sc.state()
    change(doc)
    tmp = sc.state_path.with_suffix(".edit")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, sc.state_path)


def test_seed_config_drives_ops_state_through_transitions(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/", "None")
    with Sidecar(tmp_path, SEED.format(url=game.url("/"))) as sc:
        sc.start(wait_ready=True)
        for state in ("Allocated", "WaitToBeDeleted", "None", "Allocated"):
            game.set("/", f"{state}\n")
            sc.wait_for(lambda s=state: ops_state(sc) == s, 15, f"opsState {state}")
        assert sc.stop() == 0
    assert "state 'WaitToBeDeleted' -> 'None'" in sc.log()


def test_transitions_write_ops_state_labels_and_annotations(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "None")
    storage = inkube(
        annotationKey="example.com/state",
        labelKey="example.com/state",
        markerPolicies=ops_policies(
            Allocated={"labels": {"example.com/busy": "true"}},
            WaitToBeDeleted={
                "labels": {"example.com/busy": "false"},
                "annotations": {"example.com/drain": "yes"},
                "gameServerLabels": {"example.com/pool": "draining"},
                "jsonPathConfigs": [{"jsonPath": "/spec/deletionPriority", "value": 10}],
            },
        ),
    )
    config = plugin({"url": game.url("/state"), "storageConfig": storage})
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: pod_meta(sc).get("example.com/state") == "None", 15, "None")
        sc.wait_for(lambda: ops_state(sc) == "None", 15, "opsState None")

        game.set("/state", "Allocated")
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        # A policy's labels and annotations go to the Pod (the Go semantics) ...
        sc.wait_for(lambda: pod_meta(sc, "labels").get("example.com/busy") == "true", 15, "busy")
        assert gameserver(sc)["metadata"]["labels"] == {}
        assert pod_meta(sc)["example.com/state"] == "Allocated"
        assert pod_meta(sc, "labels")["example.com/state"] == "Allocated"

        game.set("/state", "WaitToBeDeleted")
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "WaitToBeDeleted")
        sc.wait_for(lambda: pod_meta(sc).get("example.com/drain") == "yes", 15, "drain")
        gs = gameserver(sc)
        # ... and to the GameServer only when asked for explicitly.
        assert gs["metadata"]["labels"] == {"example.com/pool": "draining"}
        assert gs["spec"]["deletionPriority"] == 10
        assert pod_meta(sc, "labels")["example.com/busy"] == "false"
        assert pod_meta(sc)["example.com/state"] == "WaitToBeDeleted"
        assert "status" not in gs

        # The next state's policy sets none of them: they are removed (a set, not a history).
        game.set("/state", "None")
        sc.wait_for(lambda: "example.com/drain" not in pod_meta(sc), 15, "drain removed")
        sc.wait_for(lambda: gameserver(sc)["metadata"]["labels"] == {}, 15, "pool removed")
        assert "example.com/busy" not in pod_meta(sc, "labels")
        assert gameserver(sc)["spec"]["deletionPriority"] == 10  # jsonPathConfigs stay


def test_json_states_with_nested_paths_and_non_string_values(
    tmp_path: Path, game: GameHTTP
) -> None:
    def body(state: str, ready: bool, players: int, load: float) -> dict[str, Any]:
        return {"data": {"state": state, "ready": ready, "players": players, "load": load}}

    game.set("/status", body("None", False, 0, 0.0))
    url = game.url("/status")
    config = plugin(
        {
            "url": url,
            "jsonPathConfig": {"jsonPath": "data.state"},
            "storageConfig": inkube(markerPolicies=ops_policies()),
        },
        {
            "url": url,
            "jsonPathConfig": {"jsonPath": "data.ready"},
            "storageConfig": inkube(annotationKey="example.com/ready"),
        },
        {
            "url": url,
            "jsonPathConfig": {"jsonPath": "$.data.players"},
            "storageConfig": inkube(labelKey="example.com/players"),
        },
        {
            "url": url,
            "jsonPathConfig": {"jsonPath": "$.data.load"},
            "storageConfig": inkube(annotationKey="example.com/load"),
        },
    )
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)

        def seen(state: str, ready: str, players: str, load: str) -> bool:
            return (
                ops_state(sc) == state
                and pod_meta(sc).get("example.com/ready") == ready
                and pod_meta(sc, "labels").get("example.com/players") == players
                and pod_meta(sc).get("example.com/load") == load
            )

        sc.wait_for(lambda: seen("None", "false", "0", "0"), 15, "initial state")
        game.set("/status", body("Allocated", True, 3, 2.5))
        sc.wait_for(lambda: seen("Allocated", "true", "3", "2.5"), 15, "Allocated")
        game.set("/status", body("WaitToBeDeleted", False, 0, 1.0))
        sc.wait_for(lambda: seen("WaitToBeDeleted", "false", "0", "1"), 15, "WaitToBeDeleted")


def test_a_steady_game_makes_no_writes(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "Allocated")
    storage = inkube(annotationKey="example.com/state", markerPolicies=ops_policies())
    with Sidecar(tmp_path, plugin({"url": game.url("/state"), "storageConfig": storage})) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        sc.wait_for(lambda: writes(sc) == 2, 15, "the pod and the GameServer written once each")
        before = sc.state()
        probes_before = probes(sc)
        time.sleep(1.5)  # ~15 probes at 0.1 s, all answering the same state
        assert probes(sc) - probes_before >= 8
        assert writes(sc) == 2
        after = sc.state()
        for kind in ("pod", "gameserver"):
            assert after[kind] == before[kind]
        results = sc.metric("kidecar_results_total", {"plugin": "http_probe"})
        assert results == 1  # one effective state, one result: not one per probe


def test_failed_after_the_failure_threshold_and_no_flapping_before(
    tmp_path: Path, game: GameHTTP
) -> None:
    game.set("/state", {"data": {"state": "Allocated"}})
    storage = inkube(
        annotationKey="example.com/state",
        markerPolicies=[
            *ops_policies(),
            {"state": "Failed", "labels": {"example.com/health": "failed"}},
        ],
    )
    endpoint = {
        "url": game.url("/state"),
        "timeout": 0.3,
        "failureThreshold": 3,
        "jsonPathConfig": {"jsonPath": "data.state"},
        "storageConfig": storage,
    }
    with Sidecar(tmp_path, plugin(endpoint)) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        # Two failures of different kinds in a row, then good answers: below the threshold.
        for odd in (answer("x", status=500), answer(b"\x00garbage")):
            game.set_once("/state", odd)
        game.set_once("/state", {"data": {"state": "Allocated"}})
        game.set_once("/state", answer({"data": {"state": "Allocated"}}, delay=1))  # timeout
        game.set_once("/state", {"data": {}})  # path missing
        count = game.count("/state")
        game.wait_for_requests("/state", count + 8)
        assert pod_meta(sc)["example.com/state"] == "Allocated"
        assert probes(sc, outcome="status") == 1
        assert probes(sc, outcome="body") == 2
        assert probes(sc, outcome="timeout") == 1

        game.set("/state", answer("Internal Server Error", status=500))
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "Failed", 15, "Failed")
        assert probes(sc, outcome="status") >= 1 + 3
        sc.wait_for(
            lambda: pod_meta(sc, "labels").get("example.com/health") == "failed", 5, "health"
        )
        assert ops_state(sc) == "Allocated"  # no policy sets an opsState for Failed
        events = [e for e in sc.state()["events"] if e["reason"] == "ProbeFailed"]
        assert len(events) == 1 and events[0]["type"] == "Warning"
        assert "status 500, expected 200" in events[0]["message"]

        game.set("/state", {"data": {"state": "WaitToBeDeleted"}})
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "recovered")
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "WaitToBeDeleted", 15, "the pod")
        sc.wait_for(
            lambda: "example.com/health" not in pod_meta(sc, "labels"), 15, "health removed"
        )


def test_one_odd_answer_does_not_flip_the_state(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "Allocated")
    storage = inkube(markerPolicies=ops_policies())
    endpoint = {"url": game.url("/state"), "successThreshold": 2, "storageConfig": storage}
    with Sidecar(tmp_path, plugin(endpoint)) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        sc.wait_for(lambda: writes(sc) == 1, 15, "the GameServer written")
        game.set_once("/state", "WaitToBeDeleted", "Allocated", "WaitToBeDeleted")
        count = game.count("/state")
        game.wait_for_requests("/state", count + 6)
        # Not even a short excursion: no write, no result.
        assert writes(sc) == 1
        assert sc.metric("kidecar_results_total", {"plugin": "http_probe"}) == 1
        assert ops_state(sc) == "Allocated"
        game.set("/state", "WaitToBeDeleted")
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "WaitToBeDeleted")


def test_a_human_set_maintaining_is_not_overridden(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "Allocated")
    storage = inkube(annotationKey="example.com/state", markerPolicies=ops_policies())
    with Sidecar(tmp_path, plugin({"url": game.url("/state"), "storageConfig": storage})) as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")
        sc.wait_for(
            lambda: any(e["reason"] == "OpsStateChanged" for e in sc.state()["events"]),
            5,
            "the opsState event (the last write of this change)",
        )

        def maintain(doc: dict[str, Any]) -> None:
            doc["gameserver"]["spec"]["opsState"] = "Maintaining"
            meta = doc["gameserver"]["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

        edit_state(sc, maintain)
        game.set("/state", "WaitToBeDeleted")
        # The probe result is recorded on the pod, but the GameServer keeps the human's state.
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "WaitToBeDeleted", 15, "pod")
        time.sleep(0.5)
        assert ops_state(sc) == "Maintaining"
        game.set("/state", "None")
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "None", 15, "pod")
        time.sleep(0.3)
        assert ops_state(sc) == "Maintaining"


def test_a_hanging_endpoint_does_not_delay_another(tmp_path: Path, game: GameHTTP) -> None:
    # /hang answers after two minutes and its timeout is as long: its first probe is still
    # outstanding for the whole test, while /state is probed at its own period and each of its
    # changes is written (counted, not timed: a busy machine only makes it slower).
    game.set("/hang", answer("None", delay=120))
    game.set("/state", "None")
    config = plugin(
        {
            "url": game.url("/hang"),
            "timeout": 120,
            "storageConfig": inkube(annotationKey="example.com/hang"),
        },
        {"url": game.url("/state"), "storageConfig": inkube(annotationKey="example.com/state")},
        interval=0.2,
    )
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        game.wait_for_requests("/hang", 1)
        sc.wait_for(lambda: pod_meta(sc).get("example.com/state") == "None", 20, "None")
        game.set("/state", "Allocated")
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "Allocated", 20, "Allocated")
        game.set("/state", "WaitToBeDeleted")
        sc.wait_for(lambda: pod_meta(sc)["example.com/state"] == "WaitToBeDeleted", 20, "WtbD")
        game.wait_for_requests("/state", game.count("/state") + 5, 20)
        # Still within the first (hanging) probe of /hang, which has produced no result.
        assert game.count("/hang") == 1
        assert "example.com/hang" not in pod_meta(sc)


def test_interval_zero_probes_continuously_without_burning_cpu(
    tmp_path: Path, game: GameHTTP
) -> None:
    game.set("/a", "None")
    game.set("/b", "None")
    config = plugin(
        {"url": game.url("/a"), "storageConfig": inkube(markerPolicies=ops_policies())},
        {"url": game.url("/b")},
        interval=0,
    )
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        process = psutil.Process(sc.proc.pid if sc.proc else 0)
        game.wait_for_requests("/a", 2)
        cpu_before = sum(process.cpu_times()[:2])
        count_before = game.count("/a")
        # Back to back: 15 more probes come (within a generous bound: only a stall fails) ...
        game.wait_for_requests("/a", count_before + 15, timeout=30)
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        arrived = [r.at for r in game.requests("/a")[count_before : count_before + 15]]
        # ... at most every 0.1 s (MIN_PERIOD): 15 probes span at least 14 periods, less one
        # period of jitter in the first arrival; a loaded machine only makes them slower.
        assert arrived[-1] - arrived[0] >= 13 * 0.1
        # No busy loop between probes: the CPU per probe stays small (figure 2: under 1 ms),
        # where a loop spinning through the 0.1 s waits would spend most of them on the CPU.
        assert cpu / 15 < 0.02
        game.set("/a", "Allocated")
        sc.wait_for(lambda: ops_state(sc) == "Allocated", 15, "Allocated")


def test_start_delay_is_honoured(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "None")
    config = plugin({"url": game.url("/state")}, startDelaySeconds=1.5)
    with Sidecar(tmp_path, config) as sc:
        started = time.monotonic()
        sc.start(wait_ready=True)
        game.wait_for_requests("/state", 1)
        assert game.requests("/state")[0].at - started >= 1.5


def test_templates_in_target_names(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/state", "WaitToBeDeleted")
    storage = inkube(
        target={"name": "${SELF:POD_NAME}", "namespace": "${POD:NAMESPACE}"},
        markerPolicies=[
            {
                "state": "WaitToBeDeleted",
                "gameServerOpsState": "WaitToBeDeleted",
                "gameServerLabels": {"example.com/pod": "${SELF:POD_NAME}"},
                "jsonPathConfigs": [{"jsonPath": "/spec/deletionPriority", "value": 10}],
            }
        ],
    )
    config = plugin({"url": game.url("/state"), "storageConfig": storage})
    with Sidecar(tmp_path, config, pod_name="gs-7", namespace="games") as sc:
        sc.start(wait_ready=True)
        sc.wait_for(lambda: ops_state(sc) == "WaitToBeDeleted", 15, "WaitToBeDeleted")
        gs = gameserver(sc)
        assert gs["metadata"]["name"] == "gs-7"
        assert gs["metadata"]["labels"] == {"example.com/pod": "gs-7"}
        assert gs["spec"]["deletionPriority"] == 10
        assert sc.state().get("objects", {}) == {}  # nothing written anywhere else


def test_http_metric_exports_the_numeric_state(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/players", {"data": {"players": 3}})
    storage = {"type": "HTTPMetric", "httpMetric": {"metricName": "game_players"}}
    endpoint = {
        "url": game.url("/players"),
        "failureThreshold": 1,
        "jsonPathConfig": {"jsonPath": "$.data.players"},
        "storageConfig": storage,
    }
    with Sidecar(tmp_path, plugin(endpoint)) as sc:
        sc.start(wait_ready=True)

        def gauge() -> float | None:
            return sc.metric("game_players", {"plugin": "http_probe"})

        sc.wait_for(lambda: gauge() == 3, 15, "game_players 3")
        game.set("/players", {"data": {"players": 12}})
        sc.wait_for(lambda: gauge() == 12, 15, "game_players 12")
        game.set("/players", answer("down", status=503))
        sc.wait_for(lambda: math.isnan(gauge() or 0.0), 15, "game_players NaN when Failed")
        game.set("/players", {"data": {"players": 2.5}})
        sc.wait_for(lambda: gauge() == 2.5, 15, "game_players 2.5")
        assert sc.readyz()["ready"] is True


def test_sigterm_while_a_probe_hangs_stops_promptly(tmp_path: Path, game: GameHTTP) -> None:
    game.set("/hang", answer("None", delay=60))
    config = plugin({"url": game.url("/hang"), "timeout": 60})
    with Sidecar(tmp_path, config) as sc:
        sc.start(wait_ready=True)
        game.wait_for_requests("/hang", 1)
        started = time.monotonic()
        assert sc.stop() == 0
        # Without waiting for the hanging probe (60 s); the bound is loose on purpose: a loaded
        # machine may be slow to stop, but not by the probe's minute.
        assert time.monotonic() - started < 30
    assert "Unclosed" not in sc.log() and "Traceback" not in sc.log()

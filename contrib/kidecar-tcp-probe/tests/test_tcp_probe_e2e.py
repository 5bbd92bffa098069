"""End to end: the installed distribution, loaded by a real ``kidecar`` process in local mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from kidecar_core.testing import Sidecar
from tcp_probe_servers import GamePort

ANNOTATION = "game.example.com/tcp"


def config(port: int, **endpoint: Any) -> dict[str, Any]:
    return {
        "plugins": [
            {
                "name": "tcp_probe",
                "config": {
                    "probeIntervalSeconds": 0.1,
                    "endpoints": [
                        {
                            "port": port,
                            "timeout": 0.5,
                            "failureThreshold": 2,
                            "storageConfig": {
                                "type": "InKube",
                                "inKube": {
                                    "annotationKey": ANNOTATION,
                                    "markerPolicies": [
                                        {
                                            "state": "Unreachable",
                                            "gameServerOpsState": "Maintaining",
                                        },
                                        {"state": "Reachable", "gameServerOpsState": "None"},
                                    ],
                                },
                            },
                            **endpoint,
                        }
                    ],
                },
            }
        ]
    }


def test_kidecar_plugins_lists_the_distribution() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "plugins"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (line,) = [row for row in out.splitlines() if row.startswith("tcp_probe ")]
    name, dist, version, kind, hooks = line.split(maxsplit=4)
    assert (name, dist, kind) == ("tcp_probe", "kidecar-tcp-probe", "service")
    assert version[0].isdigit()
    assert hooks.split(", ") == ["config_schema", "start"]


def test_opsstate_follows_the_port_down_and_up(tmp_path: Path, game: GamePort) -> None:
    with Sidecar(tmp_path, config(game.port)) as kidecar:
        kidecar.start(wait_ready=True)
        kidecar.wait_for(
            lambda: kidecar.annotations().get(ANNOTATION) == "Reachable", what="Reachable"
        )
        assert kidecar.ops_state() == "None"

        game.down()
        kidecar.wait_for(lambda: kidecar.ops_state() == "Maintaining", what="Maintaining")
        assert kidecar.annotations()[ANNOTATION] == "Unreachable"
        events = [e["reason"] for e in kidecar.state().get("events", [])]
        assert "TcpProbeUnreachable" in events

        game.up()  # same port again
        kidecar.wait_for(lambda: kidecar.ops_state() == "None", what="opsState back to None")
        assert kidecar.annotations()[ANNOTATION] == "Reachable"
        # Dozens of probes, but one result per change of state: up, down, up.
        results = {"kind": "probe", "plugin": "tcp_probe"}
        assert kidecar.metric_total("kidecar_results_total", results) == 3
        assert kidecar.metric_total("kidecar_tcp_probe_probes_total", {"endpoint": "0"}) > 3
        assert kidecar.stop() == 0
    log = kidecar.log()
    assert "probing 1 TCP endpoint(s) every 0.1s" in log
    assert "Traceback" not in log


def test_a_wrong_reply_makes_the_endpoint_unreachable(tmp_path: Path, game: GamePort) -> None:
    game.reply, game.wait_for, game.close_after_reply = b"NOPE\n", b"PING\n", True
    with Sidecar(tmp_path, config(game.port, send="PING\n", expect="^PONG")) as kidecar:
        kidecar.start(wait_ready=True)
        kidecar.wait_for(lambda: kidecar.ops_state() == "Maintaining", what="Maintaining")
        game.reply = b"PONG\n"
        kidecar.wait_for(lambda: kidecar.ops_state() == "None", what="opsState back to None")
    assert game.received and set(game.received) == {b"PING\n"}


def test_a_bad_config_is_refused_with_paths(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "plugins:\n  - name: tcp_probe\n    config:\n      endpoints: [{port: 70000, timeout: 0}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "plugins[0].config.endpoints[0].port: must be a TCP port (1-65535)" in done.stderr
    assert "plugins[0].config.endpoints[0].timeout: must be > 0" in done.stderr
    assert "Traceback" not in done.stderr

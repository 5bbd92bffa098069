"""Parsing Kruise's ``kruise.io/podprobe`` entries (pure logic)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kidecar_plugins.pod_probe.spec import (
    ExecAction,
    HTTPGetAction,
    SpecError,
    TCPSocketAction,
    Timing,
    parse_probe_list,
    resolve_port,
)

# What Kruise's webhook writes (PodContainerProbe JSON, markerPolicy dropped), as OKG defaults it.
KRUISE_ANNOTATION = json.dumps(
    [
        {
            "name": "idle",
            "containerName": "game",
            "probe": {
                "exec": {"command": ["bash", "/data/idle.sh"]},
                "initialDelaySeconds": 10,
                "timeoutSeconds": 3,
                "periodSeconds": 5,
                "successThreshold": 1,
                "failureThreshold": 3,
            },
            "podConditionType": "game.kruise.io/idle",
        },
        {
            "name": "port",
            "containerName": "game",
            "probe": {"tcpSocket": {"port": "game-port"}, "periodSeconds": 2},
            "podConditionType": "game.kruise.io/port",
        },
        {
            "name": "http",
            "containerName": "game",
            "probe": {
                "httpGet": {
                    "path": "/healthz",
                    "port": 8080,
                    "scheme": "HTTPS",
                    "httpHeaders": [{"name": "X-Probe", "value": "1"}],
                }
            },
            "podConditionType": "game.kruise.io/http",
        },
    ]
)


def entry(probe: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base = {"name": "p", "containerName": "game", "podConditionType": "game.kruise.io/p"}
    return {**base, "probe": probe, **fields}


def problems_of(value: Any, *, strict: bool = False) -> list[str]:
    return [str(p) for p in parse_probe_list(value, "annotation", strict=strict)[1]]


def test_the_annotation_kruise_writes_is_parsed() -> None:
    probes, problems = parse_probe_list(json.loads(KRUISE_ANNOTATION), "annotation")
    assert problems == []
    idle, port, http = probes
    assert idle.handler == ExecAction(("bash", "/data/idle.sh"))
    assert idle.timing == Timing(10, 5, 3, 1, 3)
    assert (idle.name, idle.container_name, idle.condition_type) == (
        "idle", "game", "game.kruise.io/idle",
    )  # fmt: skip
    assert idle.source == "annotation[0]" and idle.kind == "exec"
    assert port.handler == TCPSocketAction("game-port")
    assert http.handler == HTTPGetAction(8080, "", "HTTPS", "/healthz", (("X-Probe", "1"),))


def test_unset_timing_takes_kruise_daemons_minimums() -> None:
    (probe,), _ = parse_probe_list([entry({"exec": {"command": ["true"]}})], "a")
    timing = probe.timing
    assert timing == Timing()
    assert (
        timing.effective_initial_delay,
        timing.effective_period,
        timing.effective_timeout,
        timing.effective_success_threshold,
        timing.effective_failure_threshold,
    ) == (1, 1, 1, 1, 1)


def test_keys_match_case_insensitively_and_unknown_ones_are_ignored_in_the_annotation() -> None:
    value = [{**entry({"EXEC": {"Command": ["true"]}, "newKruiseField": 1}), "extra": True}]
    (probe,), problems = parse_probe_list(value, "a")
    assert problems == [] and probe.handler == ExecAction(("true",))
    assert problems_of(value, strict=True) == ["[0].extra: unknown key (known: name, "
        "containerName, podConditionType, probe, markerPolicy)"]  # fmt: skip


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        ({}, "[0].probe: no handler: expected one of exec, tcpSocket, httpGet"),
        ({"udpSocket": {"port": 1}}, "[0].probe: no handler: expected one of exec, tcpSocket, "
         "httpGet (unknown key(s): udpSocket)"),
        ({"exec": {"command": ["true"]}, "periodSeconds": 2**31},
         "[0].probe.periodSeconds: must be at most 2147483647 (an int32), got 2147483648"),
        ({"tcpSocket": {"port": 80, "host": "169.254.169.254/latest?"}},
         "[0].probe.tcpSocket.host: '169.254.169.254/latest?' is not a host name or an IP "
         "address (no '/', '@', '?', '#', spaces or brackets; the port goes in port)"),
        ({"httpGet": {"port": 80, "host": "evil.example/x#"}},
         "[0].probe.httpGet.host: 'evil.example/x#' is not a host name or an IP address (no "
         "'/', '@', '?', '#', spaces or brackets; the port goes in port)"),
        ({"httpGet": {"port": 80, "host": "user@10.0.0.1"}},
         "[0].probe.httpGet.host: 'user@10.0.0.1' is not a host name or an IP address (no "
         "'/', '@', '?', '#', spaces or brackets; the port goes in port)"),
        ({"grpc": {"port": 9000}}, "[0].probe.grpc: grpc probes are not supported (exec, "
         "tcpSocket and httpGet are)"),
        ({"exec": {"command": ["a"]}, "tcpSocket": {"port": 1}},
         "[0].probe: exactly one handler allowed, got exec, tcpSocket"),
        ({"exec": {"command": ["true"]}, "periodSeconds": -5},
         "[0].probe.periodSeconds: must be >= 0, got -5"),
        ({"exec": {"command": ["true"]}, "timeoutSeconds": 1.5},
         "[0].probe.timeoutSeconds: expected an integer, got a number"),
        ({"exec": {"command": ["true"]}, "failureThreshold": True},
         "[0].probe.failureThreshold: expected an integer, got a boolean"),
        ({"exec": {"command": []}}, "[0].probe.exec.command: must be a non-empty list of strings"),
        ({"exec": {"command": "ls"}}, "[0].probe.exec.command: must be a non-empty list of "
         "strings"),
        ({"tcpSocket": {"port": 70000}}, "[0].probe.tcpSocket.port: 70000 is not in 1-65535"),
        ({"tcpSocket": {}}, "[0].probe.tcpSocket.port: required: a port number or the name of a "
         "container port"),
        ({"tcpSocket": {"port": "Not A Name"}}, "[0].probe.tcpSocket.port: 'Not A Name' is "
         "neither a port number nor a port name"),
        ({"httpGet": {"port": 80, "scheme": "FTP"}}, "[0].probe.httpGet.scheme: must be HTTP or "
         "HTTPS, got 'FTP'"),
        ({"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}},
         "[0].probe.httpGet.httpHeaders[0].name: 'Bad Header' is not a valid HTTP header name"),
        ({"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "a\r\nb"}]}},
         "[0].probe.httpGet.httpHeaders[0].value: must not contain line breaks or NUL"),
        ("exec", "[0].probe: expected an object, got a string"),
    ],
)  # fmt: skip
def test_a_bad_probe_is_a_problem_with_its_path(probe: Any, problem: str) -> None:
    assert problems_of([entry(probe)]) == [problem]


@pytest.mark.parametrize(
    "condition", ["Ready", "ContainersReady", "PodScheduled", "Initialized", "KruisePodReady",
                  "InPlaceUpdateReady", "DisruptionTarget", "PodReadyToStartContainers"],
)  # fmt: skip
def test_a_condition_the_kubelet_or_kruise_writes_is_refused(condition: str) -> None:
    # Ready=False from a probe would take the pod out of its Services and fight the kubelet.
    probes, problems = parse_probe_list([entry({"exec": {"command": ["true"]}},
                                               podConditionType=condition)], "a")  # fmt: skip
    assert probes == []
    assert [str(p) for p in problems] == [
        f"[0].podConditionType: {condition!r} is a condition the kubelet or Kruise writes; use "
        "a type of your own (game.kruise.io/<name> for OKG)"
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": "a\n13:00:00 ERROR   kidecar: forged"}, "[0].name: 'a\\n13:00:00 ERROR   "
         "kidecar: forged' must not contain '#' (Kruise's rule) or control characters"),
        ({"name": "a#b"}, "[0].name: 'a#b' must not contain '#' (Kruise's rule) or control "
         "characters"),
        ({"containerName": "Game\n"}, "[0].containerName: 'Game\\n' is not a container name "
         "(a DNS label: a-z, 0-9, '-', at most 63 characters)"),
    ],
)  # fmt: skip
def test_names_that_would_forge_log_lines_are_refused(fields: dict[str, str], problem: str) -> None:
    assert problems_of([entry({"exec": {"command": ["true"]}}, **fields)]) == [problem]


def test_hosts_that_are_names_or_addresses_are_kept() -> None:
    hosts = ["10.0.0.7", "::1", "fe80::1%eth0", "game.default.svc", "localhost"]
    value = [
        entry({"tcpSocket": {"port": 80, "host": h}}, name=f"p{i}", podConditionType=f"x/p{i}")
        for i, h in enumerate(hosts)
    ]
    probes, problems = parse_probe_list(value, "a")
    assert problems == []
    assert [p.handler.host for p in probes if isinstance(p.handler, TCPSocketAction)] == hosts


def test_bad_entries_are_reported_and_the_good_ones_kept() -> None:
    value = [
        entry({"exec": {"command": ["true"]}}, name="ok"),
        "not an object",
        entry({"exec": {"command": ["true"]}}, name="", podConditionType="x/y"),
        entry({"exec": {"command": ["true"]}}, name="b", podConditionType="bad type!"),
        entry({"exec": {"command": ["true"]}}, name="c"),  # same condition type as "ok"
        entry({"exec": {"command": ["true"]}}, name="ok", podConditionType="game.kruise.io/o"),
    ]
    probes, problems = parse_probe_list(value, "a")
    assert [p.name for p in probes] == ["ok"]
    assert [str(p) for p in problems] == [
        "[1]: expected an object, got a string",
        "[2].name: required (a non-empty string)",
        "[3].podConditionType: 'bad type!' is not a qualified name ([DNS-subdomain/]name, the "
        "name at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.')",
        "[4].podConditionType: 'game.kruise.io/p' is already written by probe 'ok'",
        "[5].name: probe 'ok' of container 'game' is listed twice",
    ]


def test_the_list_itself_must_be_a_list() -> None:
    assert problems_of({"name": "x"}) == ["expected a JSON list of probes, got an object"]


POD = {
    "spec": {
        "containers": [
            {"name": "game", "ports": [{"name": "game-port", "containerPort": 7777}]},
        ],
        "initContainers": [
            {"name": "kidecar", "ports": [{"name": "admin", "containerPort": 9090}]}
        ],
    }
}


def test_named_ports_resolve_from_the_container_like_the_kubelet() -> None:
    assert resolve_port(7777, "game", POD) == 7777
    assert resolve_port("game-port", "game", POD) == 7777
    assert resolve_port("admin", "kidecar", POD) == 9090
    assert resolve_port("8080", "game", POD) == 8080  # the kubelet's last-ditch Atoi
    with pytest.raises(SpecError, match="container 'game' has no port named 'admin'"):
        resolve_port("admin", "game", POD)

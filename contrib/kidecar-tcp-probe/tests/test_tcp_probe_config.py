"""The tcp_probe config, loaded by kidecar's real loader: defaults, examples, every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kidecar_core.errors import ConfigError
from kidecar_core.testing import load_config as load_with_plugins

from kidecar_tcp_probe.config import MIN_PERIOD, TcpProbeConfig
from kidecar_tcp_probe.plugin import __doc__ as plugin_doc


def load_config(tmp_path: Path, config: dict[str, Any] | str) -> TcpProbeConfig:
    path = tmp_path / "config.yaml"
    if isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(yaml.safe_dump({"plugins": [{"name": "tcp_probe", "config": config}]}))
    loaded = load_with_plugins(path)
    result = loaded.plugins[0].config
    assert isinstance(result, TcpProbeConfig)
    return result


def problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, config)
    return [str(p) for p in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"endpoints": [{"port": 7777}]})
    (endpoint,) = config.endpoints
    assert (endpoint.host, endpoint.port, endpoint.address) == ("127.0.0.1", 7777, "127.0.0.1:7777")
    assert (endpoint.timeout, endpoint.success_threshold, endpoint.failure_threshold) == (1, 1, 3)
    assert endpoint.payload == b""
    assert endpoint.pattern is None
    assert endpoint.storage_config is None
    assert (config.probe_interval_seconds, config.start_delay_seconds) == (5.0, 0.0)
    assert config.states(endpoint) == ("Reachable", "Unreachable")


def test_the_documented_example_loads(tmp_path: Path) -> None:
    assert plugin_doc is not None
    example = plugin_doc.split("allocation::", 1)[1].split("\n\n", 2)[1]
    config = load_config(tmp_path, example)
    (endpoint,) = config.endpoints
    assert endpoint.port == 7777
    assert endpoint.storage_config is not None
    assert endpoint.storage_config.type == "InKube"
    policies = endpoint.storage_config.get("inKube").marker_policies
    assert [(p.state, p.game_server_ops_state) for p in policies] == [
        ("Unreachable", "Maintaining"),
        ("Reachable", "None"),
    ]


def test_go_style_spellings_and_options(tmp_path: Path) -> None:
    config = load_config(
        tmp_path,
        {
            "probeintervalseconds": 0,
            "startdelayseconds": 2,
            "upState": "up",
            "downState": "down",
            "endpoints": [
                {
                    "host": "::1",
                    "port": 27015,
                    "send": "PING\n",
                    "expect": r"^PONG\b",
                    "successthreshold": 2,
                    "downState": "query-port-down",
                    "storageConfig": {"type": "HTTPMetric", "httpMetric": {"metricName": "m"}},
                },
                {"port": 27016, "sendHex": "ff ff ff ff 54", "expect": r"\xff\xff"},
            ],
        },
    )
    first, second = config.endpoints
    assert config.period == MIN_PERIOD  # 0 means continuously, but bounded
    assert first.address == "[::1]:27015"
    assert first.payload == b"PING\n"
    assert first.pattern is not None and first.pattern.search(b"PONG 3 players")
    assert config.states(first) == ("up", "query-port-down")
    assert second.payload == b"\xff\xff\xff\xffT"
    assert second.pattern is not None and second.pattern.search(b"\x00\xff\xffI")
    assert config.states(second) == ("up", "down")


def test_every_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "probeIntervalSeconds": -1,
            "endpoints": [
                {"port": 0, "timeout": 0, "failureThreshold": 0, "expect": "(", "hots": "x"},
                {"port": 80, "send": "a", "sendHex": "61"},
                {"port": 81, "sendHex": "zz"},
                {"port": 82, "upState": "same", "downState": "same"},
                {"port": "eighty"},
                {"host": "game"},
            ],
        },
    )
    prefix = "plugins[0].config."
    expected = [
        "probeIntervalSeconds: must be >= 0",
        "endpoints[0].port: must be a TCP port (1-65535); got 0",
        "endpoints[0].timeout: must be > 0",
        "endpoints[0].failureThreshold: must be > 0",
        "endpoints[0].expect: is not a valid regular expression",
        "endpoints[0].hots: unknown key (did you mean 'host'?)",
        "endpoints[1].sendHex: give either `send` or `sendHex`, not both",
        "endpoints[2].sendHex: is not hexadecimal bytes",
        "endpoints[3].downState: must differ from upState",
        "endpoints[4].port: expected an integer, got a string",
        "endpoints[5].port: required key is missing",
    ]
    for message in expected:
        assert any(p.startswith(prefix + message) for p in found), (message, found)


def test_states_must_differ_per_endpoint(tmp_path: Path) -> None:
    found = problems(tmp_path, {"endpoints": [{"port": 1, "downState": "Reachable"}]})
    assert found == [
        "plugins[0].config.endpoints[0].downState: must differ from upState ('Reachable')"
    ]


def test_endpoints_are_required(tmp_path: Path) -> None:
    assert problems(tmp_path, {"endpoints": []}) == [
        "plugins[0].config.endpoints: must list at least one endpoint"
    ]


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(tmp_path, example)
    port, query = config.endpoints
    assert (port.port, query.port) == (7777, 27015)
    assert query.payload == b"PING\n"
    assert config.states(query) == ("1", "0")
    assert query.storage_config is not None and query.storage_config.type == "HTTPMetric"

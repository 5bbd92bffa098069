"""The http_probe config: the Go predecessor's config loads unchanged; every mistake is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from kidecar_core._config.loader import LoadedConfig
from kidecar_core.errors import ConfigError
from kidecar_core.testing import load_config as load_with_plugins
from kidecar_plugins.http_probe.config import MIN_PERIOD, HttpProbeConfig
from kidecar_plugins.inkube.config import InKubeConfig

# The seed's example, verbatim (comments included).
SEED = """\
plugins:
  - name: http_probe
    config:
      endpoints:
        - expectedStatusCode: 200 ## The status code representing successful detection
          method: GET # HTTP request method
          storageConfig: # Result saving configuration
            inKube:
              markerPolices: # When the request result is WaitToBeDeleted, set spec.opsState
                - gameServerOpsState: WaitToBeDeleted
                  state: WaitToBeDeleted
                - gameServerOpsState: Allocated
                  state: Allocated
                - gameServerOpsState: None
                  state: None
            type: InKube
          timeout: 30  # Detection timeout period in seconds
          url: http://localhost:8080 # HTTP detection address
      startDelaySeconds: 10 # Detection start delay in seconds
      probeIntervalSeconds: 5 # Detection interval in seconds
    bootorder: 1
restartPolicy: Always
resources:
  CPU: 100m
  Memory: 128Mi
sidecarStartOrder: Before ## The startup order of the Sidecar
"""


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    environment = env or {}
    return load_with_plugins(path, env=environment)


def probe_config(loaded: LoadedConfig) -> HttpProbeConfig:
    config = loaded.plugins[0].config
    assert isinstance(config, HttpProbeConfig)
    return config


def test_seed_config_loads_unchanged(tmp_path: Path) -> None:
    config = probe_config(load_text(tmp_path, SEED))
    assert config.start_delay_seconds == 10
    assert config.probe_interval_seconds == 5
    (endpoint,) = config.endpoints
    assert (endpoint.url, endpoint.method, endpoint.timeout) == ("http://localhost:8080", "GET", 30)
    assert endpoint.expected_status_code == 200
    assert endpoint.storage_config is not None and endpoint.storage_config.type == "InKube"
    inkube = endpoint.storage_config.get("inKube")
    assert isinstance(inkube, InKubeConfig)
    assert [(p.state, p.game_server_ops_state) for p in inkube.marker_policies] == [
        ("WaitToBeDeleted", "WaitToBeDeleted"),
        ("Allocated", "Allocated"),
        ("None", "None"),
    ]


def test_both_spellings_and_lower_case_keys(tmp_path: Path) -> None:
    text = (
        SEED.replace("markerPolices", "markerPolicies")
        .replace("expectedStatusCode", "expectedstatuscode")
        .replace("probeIntervalSeconds", "probeintervalseconds")
        .replace("startDelaySeconds", "startdelayseconds")
    )
    config = probe_config(load_text(tmp_path, text))
    assert config.probe_interval_seconds == 5
    inkube = config.endpoints[0].storage_config.get("inKube")  # type: ignore[union-attr]
    assert len(inkube.marker_policies) == 3


def test_defaults(tmp_path: Path) -> None:
    text = "plugins: [{name: http_probe, config: {endpoints: [{url: 'http://127.0.0.1:1/'}]}}]"
    config = probe_config(load_text(tmp_path, text))
    (e,) = config.endpoints
    assert (config.start_delay_seconds, config.probe_interval_seconds) == (0, 5)
    assert (e.method, e.timeout, e.expected_status_code) == ("GET", 5, 200)
    assert (e.success_threshold, e.failure_threshold, e.max_body_bytes) == (1, 3, 1024 * 1024)
    assert e.headers == {} and e.body is None
    assert e.json_path_config is None and e.storage_config is None


def test_zero_delay_and_interval_are_valid(tmp_path: Path) -> None:
    text = (
        "plugins: [{name: http_probe, config: {startDelaySeconds: 0, probeIntervalSeconds: 0,"
        " endpoints: [{url: 'http://127.0.0.1:1/'}]}}]"
    )
    config = probe_config(load_text(tmp_path, text))
    assert config.probe_interval_seconds == 0
    assert config.period == MIN_PERIOD


def test_templates_in_urls_and_targets(tmp_path: Path) -> None:
    text = """\
plugins:
  - name: http_probe
    config:
      endpoints:
        - url: http://${SELF:GAME_HOST}:8080/state
          storageConfig:
            type: InKube
            inKube:
              target: {name: "${SELF:POD_NAME}"}
              markerPolicies: [{state: x, gameServerOpsState: Allocated}]
"""
    config = probe_config(load_text(tmp_path, text, {"GAME_HOST": "127.0.0.1", "POD_NAME": "gs-3"}))
    endpoint = config.endpoints[0]
    assert endpoint.url == "http://127.0.0.1:8080/state"
    assert endpoint.storage_config.get("inKube").target.name == "gs-3"  # type: ignore[union-attr]


def test_every_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    text = """\
plugins:
  - name: http_probe
    config:
      probeIntervalSeconds: -1
      startDelaySeconds: -2
      endpoints:
        - url: ftp://example.com/
          methd: GET
          timeout: 0
          expectedStatusCode: 99
          successThreshold: 0
          failureThreshold: 0
          headers: {"bad header": x, X-Ok: "a\\nb"}
          jsonPathConfig: {jsonPath: "data..state"}
        - url: http://127.0.0.1:8080/
          method: FETCH
          jsonPathConfig: {jsonPath: "$.["}
          storageConfig:
            type: InKube
            inKube: {markerPolices: [{state: x, gameServerOpsState: Up}]}
"""
    with pytest.raises(ConfigError) as excinfo:
        load_text(tmp_path, text)
    problems = {p.path: p.message for p in excinfo.value.problems}
    e0, e1 = "plugins[0].config.endpoints[0]", "plugins[0].config.endpoints[1]"
    assert set(problems) == {
        "plugins[0].config.probeIntervalSeconds",
        "plugins[0].config.startDelaySeconds",
        f"{e0}.url",
        f"{e0}.methd",
        f"{e0}.timeout",
        f"{e0}.expectedStatusCode",
        f"{e0}.successThreshold",
        f"{e0}.failureThreshold",
        f"{e0}.headers.bad header",
        f"{e0}.jsonPathConfig.jsonPath",
        f"{e1}.method",
        f"{e1}.jsonPathConfig.jsonPath",
    }  # gameServerOpsState "Up" is a custom opsState: a warning, not an error (issue 13 item 8)
    assert "did you mean 'method'" in problems[f"{e0}.methd"]
    assert "empty key" in problems[f"{e0}.jsonPathConfig.jsonPath"]


def test_header_values_with_line_breaks_are_rejected(tmp_path: Path) -> None:
    text = (
        "plugins: [{name: http_probe, config: {endpoints: "
        '[{url: "http://127.0.0.1:1/", headers: {X-Token: "a\\r\\nInjected: 1"}}]}}]'
    )
    with pytest.raises(ConfigError) as excinfo:
        load_text(tmp_path, text)
    (problem,) = excinfo.value.problems
    assert problem.path == "plugins[0].config.endpoints[0].headers.X-Token"
    assert "line breaks" in problem.message


def test_endpoints_are_required(tmp_path: Path) -> None:
    for config in ("{}", "{endpoints: []}"):
        with pytest.raises(ConfigError) as excinfo:
            load_text(tmp_path, f"plugins: [{{name: http_probe, config: {config}}}]")
        assert [p.path for p in excinfo.value.problems] == ["plugins[0].config.endpoints"]


def one_endpoint(tmp_path: Path, endpoint: str) -> LoadedConfig:
    text = f"plugins: [{{name: http_probe, config: {{endpoints: [{endpoint}]}}}}]"
    return load_text(tmp_path, text)


def test_expected_status_code_is_a_code_a_range_or_a_list(tmp_path: Path) -> None:
    cases = {
        "200": "200",
        "'200-399'": "200-399",
        "'204'": "204",
        "[200, 503]": "[200, 503]",
        "[200, '300-302', 503]": "[200, 300-302, 503]",
        "' 200 - 299 '": "200-299",
    }
    for spec, shown in cases.items():
        loaded = one_endpoint(
            tmp_path, f"{{url: 'http://127.0.0.1:1/', expectedStatusCode: {spec}}}"
        )
        assert str(probe_config(loaded).endpoints[0].statuses) == shown


def test_bad_status_codes_say_what_is_wrong(tmp_path: Path) -> None:
    cases = {
        "99": "99: HTTP status codes are 100-599",
        "'abc'": "'abc' is not a status code or range: write 200, '200-399' or a list like "
        "[200, 503]",
        "'400-200'": "400-200: the range's first code must not exceed its last",
        "'200-600'": "200-600: HTTP status codes are 100-599",
        "[]": "must list at least one status code",
        "true": "'true' is not a status code or range: write 200, '200-399' or a list like "
        "[200, 503]",
        "{a: 1}": "expected int or str or list, got a mapping",
    }
    for spec, message in cases.items():
        with pytest.raises(ConfigError) as excinfo:
            one_endpoint(tmp_path, f"{{url: 'http://127.0.0.1:1/', expectedStatusCode: {spec}}}")
        (problem,) = excinfo.value.problems
        assert problem.path == "plugins[0].config.endpoints[0].expectedStatusCode"
        assert problem.message == message, spec


def test_redirect_policy_defaults_to_same_host_and_never_when_a_3xx_is_expected(
    tmp_path: Path,
) -> None:
    def redirects(extra: str) -> str:
        loaded = one_endpoint(tmp_path, f"{{url: 'http://127.0.0.1:1/'{extra}}}")
        return probe_config(loaded).endpoints[0].redirects

    assert redirects("") == "SameHost"
    assert redirects(", followRedirects: always") == "Always"
    assert redirects(", followRedirects: Never") == "Never"
    assert redirects(", expectedStatusCode: 301") == "Never"
    assert redirects(", expectedStatusCode: '200-399'") == "Never"
    assert redirects(", expectedStatusCode: [200, 308], followRedirects: Never") == "Never"


def test_contradictions_are_config_errors(tmp_path: Path) -> None:
    cases = {
        "expectedStatusCode: 301, followRedirects: SameHost": (
            "followRedirects",
            "expectedStatusCode 301 expects a redirect, so redirects are never followed; leave "
            "followRedirects out (or set Never)",
        ),
        "insecureSkipVerify: true, caFile: /etc/game/ca.pem": (
            "caFile",
            "is not used with insecureSkipVerify: true; keep one of the two",
        ),
        "followRedirects: sometimes": (
            "followRedirects",
            "must be one of SameHost, Always, Never; got 'sometimes'",
        ),
        "insecureSkipVerify: 'yes'": ("insecureSkipVerify", "expected true or false, got a string"),
    }
    for options, (key, message) in cases.items():
        with pytest.raises(ConfigError) as excinfo:
            one_endpoint(tmp_path, f"{{url: 'https://127.0.0.1:1/', {options}}}")
        (problem,) = excinfo.value.problems
        assert problem.path == f"plugins[0].config.endpoints[0].{key}"
        assert problem.message == message


def test_tls_options_load(tmp_path: Path) -> None:
    loaded = one_endpoint(
        tmp_path,
        "{url: 'https://127.0.0.1:1/', insecureskipverify: true}, "
        "{url: 'https://127.0.0.1:1/', cafile: /etc/game/ca.pem}",
    )
    first, second = probe_config(loaded).endpoints
    assert (first.insecure_skip_verify, first.ca_file) == (True, None)
    assert (second.insecure_skip_verify, second.ca_file) == (False, "/etc/game/ca.pem")

"""Configuration loading: spellings, errors with paths, templates, and fuzzing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kidecar_core import ConfigError, FieldError, StorageConfig, field
from kidecar_core._config.loader import (
    LoadedConfig,
    PluginCatalog,
    TemplateContext,
    load_config,
)
from kidecar_core._config.schema import positive
from kidecar_core._config.strict_yaml import parse_yaml
from kidecar_core._plugins.registry import StorageTypeRegistry
from kidecar_plugins.httpmetric.plugin import HTTPMetricConfig
from kidecar_plugins.inkube.config import InKubeConfig


@attrs.frozen
class Endpoint:
    url: str = field(doc="u")
    timeout: float = field(default=1.0, validator=positive, doc="t")
    method: Literal["GET", "POST"] = field(default="GET", doc="m")
    headers: Mapping[str, str] = field(factory=dict, doc="h")
    storage_config: StorageConfig | None = field(key="storageConfig", default=None, doc="s")


@attrs.frozen
class ProbeLike:
    endpoints: tuple[Endpoint, ...] = field(factory=tuple, doc="e")
    start_delay_seconds: int = field(key="startDelaySeconds", default=0, doc="d")
    enabled: bool = field(default=True, doc="b")

    def __attrs_post_init__(self) -> None:
        if self.start_delay_seconds > 3600:
            raise FieldError("startDelaySeconds", "must be at most 3600")


def storage() -> StorageTypeRegistry:
    reg = StorageTypeRegistry()
    reg.storage_type("InKube", key="inKube", config_class=InKubeConfig)
    reg.storage_type("HTTPMetric", key="httpMetric", config_class=HTTPMetricConfig)
    return reg


CATALOG = PluginCatalog(
    installed={"probe": "kidecar", "other": "kidecar"},
    schema_for=lambda name: ProbeLike if name == "probe" else None,
    disabled=frozenset({"switched_off"}),
)


def load(text: str, env: dict[str, str] | None = None, lenient: bool = False) -> LoadedConfig:
    return load_config(
        parse_yaml(text), CATALOG, storage(), TemplateContext(env or {}, lenient=lenient)
    )


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return [str(p) for p in info.value.problems]


# -- valid configs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "top",
    [
        "restartpolicy: OnFailure\nsidecarstartorder: After\nresources: {CPU: 100m, Memory: 128Mi}",
        "restartPolicy: OnFailure\nsidecarStartOrder: After\nresources: {cpu: 100m, memory: 128Mi}",
    ],
    ids=["go-lowercase", "camelCase"],
)
def test_both_spellings_of_top_level_keys(top: str) -> None:
    cfg = load(f"plugins:\n  - name: other\n    bootOrder: 2\n{top}\n")
    assert cfg.top.restart_policy == "OnFailure"
    assert cfg.top.sidecar_start_order == "After"
    assert cfg.top.resources.cpu == "100m"
    assert cfg.top.resources.memory == "128Mi"
    assert cfg.plugins[0].bootorder == 2


def test_defaults() -> None:
    cfg = load("plugins: []")
    assert cfg.top.restart_policy == "Always"
    assert cfg.top.sidecar_start_order == "Before"
    assert cfg.plugins == ()
    assert any("no plugins configured" in w for w in cfg.warnings)
    assert load("").top.restart_policy == "Always"


def test_boot_sequence_orders_by_bootorder_then_file_order() -> None:
    cfg = load(
        "plugins:\n"
        "  - {name: probe, bootorder: 1, config: {endpoints: []}}\n"
        "  - {name: other, bootorder: 0}\n"
    )
    assert [p.name for p in cfg.boot_sequence()] == ["other", "probe"]


def test_plugin_config_is_structured_with_storage_config() -> None:
    cfg = load(
        """
plugins:
  - name: probe
    config:
      startDelaySeconds: 3
      endpoints:
        - url: http://127.0.0.1/state
          timeout: 2
          storageConfig:
            type: InKube
            inKube:
              annotationKey: example.com/state
              markerPolices:
                - state: WaitToBeDeleted
                  gameServerOpsState: WaitToBeDeleted
"""
    )
    probe = cfg.plugins[0].config
    assert isinstance(probe, ProbeLike)
    ep = probe.endpoints[0]
    assert ep.timeout == 2.0
    assert ep.storage_config is not None and ep.storage_config.type == "InKube"
    inkube = ep.storage_config.get("inKube")
    assert inkube.annotation_key == "example.com/state"
    assert inkube.marker_policies[0].game_server_ops_state == "WaitToBeDeleted"


def test_storage_type_without_options_uses_defaults() -> None:
    cfg = load(
        "plugins:\n  - name: probe\n    config:\n      endpoints:\n"
        "        - {url: u, storageConfig: {type: HTTPMetric}}\n"
    )
    sc = cfg.plugins[0].config.endpoints[0].storage_config
    assert sc.get("httpMetric").metric_name == "kidecar_probe_value"


def test_templates_are_substituted() -> None:
    cfg = load(
        "plugins:\n  - name: probe\n    config:\n      endpoints:\n"
        "        - url: http://${SELF:GAME_HOST}/x\n"
        "          headers: {X-Pod: '${POD:NAME}.${POD:POD_NAMESPACE}'}\n",
        env={"GAME_HOST": "127.0.0.1:8080", "POD_NAME": "gs-1", "POD_NAMESPACE": "ns"},
    )
    ep = cfg.plugins[0].config.endpoints[0]
    assert ep.url == "http://127.0.0.1:8080/x"
    assert ep.headers["X-Pod"] == "gs-1.ns"


def test_missing_template_variable_is_an_error_with_path_or_a_warning_when_lenient() -> None:
    text = "plugins:\n  - name: probe\n    config: {endpoints: [{url: 'http://${SELF:NOPE}/'}]}\n"
    assert problems(text) == [
        "plugins[0].config.endpoints[0].url: ${SELF:NOPE}: environment variable is not set"
    ]
    assert any("NOPE" in w for w in load(text, lenient=True).warnings)


# -- invalid configs: every problem, with its path --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("restartpolicy: Sometimes", ["restartpolicy: must be one of Always, OnFailure, Never"]),
        ("restartpolicy: always", []),  # case-insensitive enum, normalised
        ("sidecarstartorder: Befor", ["did you mean 'Before'?"]),
        ("plugns: []", ["plugns: unknown key (did you mean 'plugins'?)"]),
        ("plugins: {}", ["plugins: expected a list, got a mapping"]),
        ("plugins: [5]", ["plugins[0]: expected a mapping, got a number"]),
        ("plugins: [{bootorder: 1}]", ["plugins[0].name: required key is missing"]),
        ("plugins: [{name: other, bootorder: -1}]", ["plugins[0].bootorder: must be >= 0"]),
        ("plugins: [{name: other, bootorder: true}]", ["expected an integer, got a boolean"]),
        ("plugins: [{name: nope}]", ["plugin 'nope' is not installed; installed: other, probe"]),
        ("plugins: [{name: switched_off}]", ["installed but disabled"]),
        ("plugins: [{name: other}, {name: other}]", ["plugins[1].name: plugin 'other' is already"]),
        ("plugins: [{name: other, config: {a: 1}}]", ["plugins[0].config: plugin 'other' takes"]),
        ("plugins: [{name: other, bootorder: 1, bootOrder: 2}]", ["given twice"]),
        ("resources: {CPU: [1]}", ["resources.CPU: expected a string, got a list"]),
        ("- a\n- b", ["expected a mapping, got a list"]),
    ],
)
def test_invalid_top_level(text: str, expected: list[str]) -> None:
    if not expected:
        load(text)
        return
    found = "\n".join(problems(text))
    for e in expected:
        assert e in found


PROBE = "plugins:\n  - name: probe\n    config:\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("      endpoints: [{}]", "plugins[0].config.endpoints[0].url: required key is missing"),
        ("      endpoints: [{url: u, timeout: 0}]", "endpoints[0].timeout: must be > 0"),
        ("      endpoints: [{url: u, timeout: soon}]", "timeout: expected a number, got a string"),
        ("      endpoints: [{url: u, method: PUT}]", "method: must be one of GET, POST"),
        ("      endpoints: [{url: u, headers: [a]}]", "headers: expected a mapping, got a list"),
        ("      endpoints: [{url: u, timout: 1}]", "timout: unknown key (did you mean 'timeout'?)"),
        ("      enabled: yes please", "enabled: expected true or false, got a string"),
        ("      startDelaySeconds: 4000", "startDelaySeconds: must be at most 3600"),
        (
            "      endpoints: [{url: u, storageConfig: {type: InKub}}]",
            "storageConfig.type: unknown storage type 'InKub' (did you mean 'InKube'?)",
        ),
        (
            "      endpoints: [{url: u, storageConfig: {inKube: {}}}]",
            "storageConfig.type: required key is missing",
        ),
        (
            "      endpoints: [{url: u, storageConfig: {type: InKube, inkube: {labelKey: 'a b'}}}]",
            "storageConfig.inkube.labelKey: 'a b': name must be",
        ),
        (
            "      endpoints: [{url: u, storageConfig: {type: InKube, "
            "inKube: {jsonPath: /status/x}}}]",
            "inKube.jsonPath: kidecar never writes status",
        ),
        (
            "      endpoints: [{url: u, storageConfig: {type: InKube, inKube: "
            "{labelKey: game.kruise.io/gs-opsState}}}]",
            "OpenKruiseGame owns game.kruise.io/gs-* labels",
        ),
        (
            "      endpoints: [{url: u, storageConfig: {type: HTTPMetric, "
            "httpMetric: {metricName: 'bad name'}}}]",
            "httpMetric.metricName: 'bad name' is not a valid Prometheus name",
        ),
    ],
)
def test_invalid_plugin_config(body: str, expected: str) -> None:
    found = "\n".join(problems(PROBE + body + "\n"))
    assert expected in found


def test_custom_ops_states_load_with_a_warning_on_every_path() -> None:
    """Issue 13 item 8: OKG treats opsState as a free string; accepted, with a warning, the same
    way through gameServerOpsState and through jsonPathConfigs (jsonPath writes the result,
    known only at run time: the applier warns then)."""
    cfg = load(
        PROBE
        + "      endpoints: [{url: u, storageConfig: {type: InKube, inKube: {markerPolices: [\n"
        "        {state: a, gameServerOpsState: Draining},\n"
        "        {state: b, jsonPathConfigs: [{jsonPath: /spec/opsState, value: Draining}]},\n"
        "        {state: c, gameServerOpsState: Allocated,\n"
        "         jsonPathConfigs: [{jsonPath: /spec/opsState, value: None}]}]}}}]\n"
    )
    where = "plugins[0].config.endpoints[0].storageConfig.inKube.markerPolicies"
    custom = [w for w in cfg.warnings if "not an opsState OpenKruiseGame knows" in w]
    assert sorted(w.split(": ", 1)[0] for w in custom) == [
        f"{where}[0].gameServerOpsState",
        f"{where}[1].jsonPathConfigs[0].value",
    ]
    assert "'Draining'" in custom[0]
    # Another target's /spec/opsState is not a GameServer's opsState: nothing to say.
    other = load(
        PROBE + "      endpoints: [{url: u, storageConfig: {type: InKube, inKube: {"
        "target: {group: example.com, version: v1, resource: rooms}, markerPolices: "
        "[{state: b, jsonPathConfigs: [{jsonPath: /spec/opsState, value: Draining}]}]}}}]\n"
    )
    assert not [w for w in other.warnings if "opsState" in w]


def test_all_problems_are_reported_at_once() -> None:
    found = problems(
        "restartpolicy: Sometimes\n"
        "extra: 1\n"
        "plugins:\n"
        "  - name: probe\n"
        "    config:\n"
        "      endpoints: [{url: u, timeout: -1}, {timeout: x}]\n"
        "      enabled: 3\n"
        "  - name: missing\n"
    )
    assert found == [
        "restartpolicy: must be one of Always, OnFailure, Never; got 'Sometimes'",
        "extra: unknown key",
        "plugins[0].config.endpoints[0].timeout: must be > 0",
        "plugins[0].config.endpoints[1].timeout: expected a number, got a string",
        "plugins[0].config.endpoints[1].url: required key is missing",
        "plugins[0].config.enabled: expected true or false, got a number",
        "plugins[1].name: plugin 'missing' is not installed; installed: other, probe. Install "
        "the distribution that provides it (for example `pip install kidecar-missing`), or fix "
        "the name",
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2"):
        parse_yaml("plugins:\n  - name: a: b\n", "c.yaml")


# -- fuzzing: anything YAML can produce gives a config or a ConfigError -------------------------

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
keys = st.sampled_from(
    ["plugins", "name", "config", "bootorder", "restartpolicy", "resources", "CPU", "endpoints",
     "url", "timeout", "storageConfig", "type", "inKube", "InKube", "HTTPMetric", "labelKey",
     "markerPolices", "state", "gameServerOpsState", "probe", "other", "sidecarStartOrder", "x"]
)  # fmt: skip
trees = st.recursive(
    json_leaves | keys,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_any_tree_gives_a_config_or_a_config_error(tree: Any) -> None:
    try:
        load_config(tree, CATALOG, storage(), TemplateContext({}))
    except ConfigError as e:
        assert e.problems
        for p in e.problems:
            assert p.message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        load_config(parse_yaml(text), CATALOG, storage(), TemplateContext({}))
    except ConfigError as e:
        assert e.problems


def test_yaml_round_trip_of_a_generated_valid_config() -> None:
    cfg = {
        "plugins": [{"name": "probe", "bootorder": 1, "config": {"endpoints": [{"url": "u"}]}}],
        "restartpolicy": "Never",
    }
    assert load(yaml.safe_dump(cfg)).top.restart_policy == "Never"

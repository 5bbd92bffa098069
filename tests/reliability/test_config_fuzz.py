"""Hypothesis fuzzing of the real plugins' configuration, through the path ``kidecar run`` takes.

``tests/core/test_config.py`` fuzzes the loader with a stand-in schema. Here the schemas are the
real ones (``hot_update``, ``http_probe``, ``game_api``, the ``InKube``/``HTTPMetric`` storage
types), loaded from the installed entry points by
:func:`kidecar_core._config.catalog.load_parsed`, and the
input is YAML text: generated trees spelled with the real keys, and valid configs with random
damage. Any of them must give a loaded config or a :class:`ConfigError` that names every problem
with its path, never another exception.
"""

from __future__ import annotations

import copy
import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kidecar_core import ConfigError
from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.schema import config_key
from kidecar_core._config.strict_yaml import parse_yaml, read_yaml
from kidecar_core._plugins.manager import Plugins
from kidecar_plugins.game_api.config import GameApiConfig
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.http_probe.config import HttpProbeConfig
from kidecar_plugins.httpmetric.plugin import HTTPMetricConfig
from kidecar_plugins.inkube.config import InKubeConfig

ENV = {"POD_NAME": "gs-0", "POD_NAMESPACE": "default"}
SCHEMAS = {
    "hot_update": HotUpdateConfig,
    "http_probe": HttpProbeConfig,
    "game_api": GameApiConfig,
}


def config_keys(cls: type) -> Iterator[str]:
    """Every key (and alias) of ``cls`` and of the attrs classes nested in it."""
    seen: set[type] = set()

    def walk(tp: Any) -> Iterator[str]:
        if attrs.has(tp) and tp not in seen:
            seen.add(tp)
            attrs.resolve_types(tp)
            for a in attrs.fields(tp):
                yield config_key(a)
                yield from a.metadata.get("kidecar_aliases", ())  # the Go-era spellings
                yield from walk(a.type)
        for arg in typing.get_args(tp):
            yield from walk(arg)

    yield from walk(cls)


SCHEMA_CLASSES = (*SCHEMAS.values(), InKubeConfig, HTTPMetricConfig)
KEYS = sorted(
    {
        *(k for cls in SCHEMA_CLASSES for k in config_keys(cls)),
        "type", "inKube", "httpMetric", "InKube", "HTTPMetric", "markerPolicies", "bootOrder",
        "SIGHUP", "GET", "signal", "request", "${SELF:POD_NAME}", "${POD:NAME}", "x",
    }
)  # fmt: skip

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(KEYS),
    st.sampled_from(["/tmp/x", "http://127.0.0.1:8080/state", "127.0.0.1:5000", "data.state"]),
    st.text(max_size=16),
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=30,
)

VALID: dict[str, dict[str, Any]] = {
    "hot_update": {
        "loadPatchType": "signal",
        "signal": {"processName": "game", "signalName": "SIGHUP"},
        "fileDir": "/app/downloads",
        "listen": "127.0.0.1:5000",
        "allowedUrlPrefixes": ["http://127.0.0.1:8000/"],
        "storageConfig": {"type": "InKube", "inKube": {"annotationKey": "example.com/update"}},
    },
    "http_probe": {
        "probeIntervalSeconds": 1,
        "endpoints": [
            {
                "url": "http://127.0.0.1:8080/state",
                "timeout": 1,
                "jsonPathConfig": {"jsonPath": "data.state"},
                "storageConfig": {
                    "type": "InKube",
                    "inKube": {
                        "annotationKey": "example.com/state",
                        "markerPolices": [
                            {"state": "idle", "gameServerOpsState": "WaitToBeDeleted"}
                        ],
                    },
                },
            }
        ],
    },
    "game_api": {
        "listen": "127.0.0.1:5001",
        "auth": {"tokenEnv": "GAME_API_TOKEN"},
        "metadataPrefixes": ["game.example.com/", "controller.kubernetes.io/pod-deletion-cost"],
        "metadataTarget": "pod",
        "protectedOpsStates": ["Maintaining"],
        "writeIntervalSeconds": 0.5,
    },
}


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(ENV)


def check(plugins: Plugins, document: Any) -> None:
    """Load ``document`` as YAML text: a config, or a ConfigError with every problem named."""
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        loaded = load_parsed(parse_yaml(text), plugins, ENV, lenient=False)
    except ConfigError as e:
        assert e.problems
        for problem in e.problems:
            assert problem.message.strip(), e.problems
            assert "Traceback" not in problem.message
        return
    for entry in loaded.plugins:
        schema = SCHEMAS.get(entry.name)
        if schema is not None:
            assert isinstance(entry.config, schema)


def test_the_valid_configs_load(plugins: Plugins) -> None:
    for name, config in VALID.items():
        loaded = load_parsed({"plugins": [{"name": name, "config": config}]}, plugins, ENV,
                             lenient=False)  # fmt: skip
        assert isinstance(loaded.plugins[0].config, SCHEMAS[name])


def test_the_keys_come_from_the_real_schemas() -> None:
    assert {"processName", "allowedUrlPrefixes", "failureThreshold", "markerPolices"} <= set(KEYS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCHEMAS)), config=trees, top=trees)
def test_any_generated_plugin_config_loads_or_is_a_config_error(
    plugins: Plugins, name: str, config: Any, top: Any
) -> None:
    document: dict[str, Any] = {"plugins": [{"name": name, "config": config}]}
    if isinstance(top, dict):
        document.update({k: v for k, v in top.items() if k != "plugins"})
    check(plugins, document)


def damaged(config: dict[str, Any], path: list[Any], action: str, value: Any) -> dict[str, Any]:
    """``config`` with the node at ``path`` (indices into dicts/lists, modulo their sizes)
    replaced, deleted or given an extra key."""
    out = copy.deepcopy(config)
    node: Any = out
    for step in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
            if action == "delete" and not isinstance(node[key], dict | list):
                del node[key]
                return out
            if not isinstance(node[key], dict | list):
                node[key] = value
                return out
            node = node[key]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
        else:
            break
    if isinstance(node, dict):
        node[str(value)[:12] if action == "add" else sorted(node)[0] if node else "x"] = value
    elif isinstance(node, list):
        node.append(value)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(VALID)),
    path=st.lists(st.integers(min_value=0, max_value=20), max_size=6),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=trees,
)
def test_a_damaged_valid_config_loads_or_is_a_config_error(
    plugins: Plugins, name: str, path: list[int], action: str, value: Any
) -> None:
    config = damaged(VALID[name], path, action, value)
    check(plugins, {"plugins": [{"name": name, "bootorder": 0, "config": config}]})


# -- hostile input: non-finite numbers, and YAML text that attacks the parser ------------------


def float_paths(cls: type, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Key paths (``("request", "timeoutSeconds")``, ``("endpoints", 0, "timeout")``) of every
    float field of ``cls`` and of the attrs classes (or lists of them) nested in it."""
    attrs.resolve_types(cls)
    for a in attrs.fields(cls):
        key = config_key(a)
        union = typing.get_origin(a.type) in (typing.Union, types.UnionType)
        members = [t for t in (typing.get_args(a.type) if union else (a.type,))]
        members = [t for t in members if t is not type(None)]
        if float in members:
            yield (*prefix, key)
        for tp in members:
            if attrs.has(tp):
                yield from float_paths(tp, (*prefix, key))
            elif typing.get_origin(tp) in (tuple, list):
                (item,) = typing.get_args(tp)[:1] or (None,)
                if item is not None and attrs.has(item):
                    yield from float_paths(item, (*prefix, key, 0))


def with_value(config: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node: Any = out
    for step, following in zip(path, (*path[1:], None), strict=True):
        if following is None:
            node[step] = value
        elif isinstance(step, int):
            while len(node) <= step:
                node.append({})
            node = node[step]
        else:
            node = node.setdefault(step, [] if isinstance(following, int) else {})
    return out


NON_FINITE = (".nan", ".NaN", ".inf", "-.inf", ".Inf")
FLOAT_FIELDS = [(name, path) for name in sorted(VALID) for path in float_paths(SCHEMAS[name])]


def test_every_float_field_is_found() -> None:
    found = {(name, ".".join(map(str, path))) for name, path in FLOAT_FIELDS}
    assert {("hot_update", "downloadTimeoutSeconds"), ("hot_update", "request.timeoutSeconds"),
            ("http_probe", "probeIntervalSeconds"),
            ("http_probe", "endpoints.0.timeout")} <= found  # fmt: skip


@pytest.mark.parametrize(("name", "path"), FLOAT_FIELDS)
def test_every_float_field_refuses_nan_and_infinity(
    plugins: Plugins, name: str, path: tuple[Any, ...]
) -> None:
    """Checked once in the converter, so no field can forget it (``.nan > 0`` is false, and so
    is ``.nan <= 0``: a per-field "> 0" check let it through)."""
    for spelling in NON_FINITE:
        config = with_value(VALID[name], path, "PLACEHOLDER")
        text = yaml.safe_dump({"plugins": [{"name": name, "config": config}]})
        text = text.replace("PLACEHOLDER", spelling)
        with pytest.raises(ConfigError) as caught:
            load_parsed(parse_yaml(text), plugins, ENV, lenient=False)
        where = "plugins[0].config." + ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in path
        ).replace(".[", "[")
        assert any(
            p.path == where and p.message == f"must be a finite number, got {spelling}"
            for p in caught.value.problems
        ), caught.value.problems


def finite_everywhere(value: Any) -> bool:
    """No NaN or infinity in a loaded config object (attrs instances, mappings, lists)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if attrs.has(type(value)):
        return all(finite_everywhere(getattr(value, a.name)) for a in attrs.fields(type(value)))
    if isinstance(value, Mapping):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_everywhere(v) for v in value)
    return True


HOSTILE_SNIPPETS = [
    "&a [*a]", "*undefined", "&x {a: 1}", "<<: *x", "[" * 70, "{" * 70, "a: 1\na: 2\n",
    "!!python/object:os.system ['true']", "!!binary AAAA", "? [1, 2]\n: x", "\x00", "\ufeff",
    "1e3", ".nan", "-.inf", "0x1F", "0o17", "1_000", "12:30:00", "2001-12-14", "~", "'''",
    '"\\ud800"', "- - - - -", "a: |\n  x\n b", "%YAML 1.1\n---", "--- !!set {a, b}",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(VALID)),
    snippets=st.lists(st.sampled_from(HOSTILE_SNIPPETS) | st.text(max_size=8), max_size=4),
    position=st.integers(min_value=0, max_value=10_000),
)
def test_hostile_yaml_text_is_a_config_or_a_config_error(
    plugins: Plugins, name: str, snippets: list[str], position: int
) -> None:
    """Valid config text with hostile YAML spliced in: a config (with no NaN anywhere) or a
    ConfigError; never another exception, and never slow enough to matter."""
    text = yaml.safe_dump({"plugins": [{"name": name, "config": VALID[name]}]})
    at = position % (len(text) + 1)
    text = text[:at] + "".join(snippets) + text[at:]
    try:
        loaded = load_parsed(parse_yaml(text), plugins, ENV, lenient=False)
    except ConfigError as e:
        assert e.problems and all(p.message.strip() for p in e.problems)
        return
    assert all(finite_everywhere(p.config) for p in loaded.plugins)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(VALID)),
    noise=st.binary(max_size=64),
    position=st.integers(min_value=0, max_value=10_000),
)
def test_a_config_file_with_random_bytes_is_a_config_or_a_config_error(
    plugins: Plugins, tmp_path_factory: pytest.TempPathFactory, name: str, noise: bytes,
    position: int,
) -> None:  # fmt: skip
    """Issue 12: bytes that are not UTF-8 text (a binary file mounted as the config, a damaged
    ConfigMap), read from a file as ``kidecar run`` reads it: a config or a ConfigError."""
    data = yaml.safe_dump({"plugins": [{"name": name, "config": VALID[name]}]}).encode()
    at = position % (len(data) + 1)
    path = tmp_path_factory.mktemp("bytes") / "config.yaml"
    path.write_bytes(data[:at] + noise + data[at:])
    try:
        load_parsed(read_yaml(path), plugins, ENV, lenient=False)
    except ConfigError as e:
        assert e.problems and all(p.message.strip() for p in e.problems)


def test_the_billion_laughs_is_refused_quickly(plugins: Plugins) -> None:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(ConfigError, match="aliases expand this document"):
        parse_yaml("\n".join(lines) + "\nplugins: []\n")

"""Hypothesis fuzzing of the real plugins' configuration, through the path ``kidecar run`` takes.

``tests/core/test_config.py`` fuzzes the loader with a stand-in schema. Here the schemas are the
real ones (``hot_update``, ``http_probe``, the ``InKube``/``HTTPMetric`` storage types), loaded
from the installed entry points by :func:`kidecar_core._config.catalog.load_parsed`, and the
input is YAML text: generated trees spelled with the real keys, and valid configs with random
damage. Any of them must give a loaded config or a :class:`ConfigError` that names every problem
with its path, never another exception.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kidecar_core import ConfigError
from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.loader import parse_yaml
from kidecar_core._config.schema import config_key
from kidecar_core._plugins.manager import Plugins
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.http_probe.config import HttpProbeConfig
from kidecar_plugins.httpmetric.plugin import HTTPMetricConfig
from kidecar_plugins.inkube.config import InKubeConfig

ENV = {"POD_NAME": "gs-0", "POD_NAMESPACE": "default"}
SCHEMAS = {"hot_update": HotUpdateConfig, "http_probe": HttpProbeConfig}


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

"""Config robustness: hostile or broken files give a ConfigError (exit 2, no traceback).

Each kind of input is checked twice: in-process (the message), and through ``kidecar
check-config`` / ``kidecar run`` as a real process (exit code 2, no traceback, quickly enough
that a bomb has not been expanded).
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from kidecar_core import ConfigError
from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.strict_yaml import (
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    YamlFloat,
    parse_yaml,
    parse_yaml_documents,
    read_yaml,
)
from kidecar_core._plugins.manager import Plugins

ENV = {**os.environ, "POD_NAME": "gs-0", "POD_NAMESPACE": "default"}

HOT_UPDATE = """\
plugins:
  - name: hot_update
    config:
      signal: {processName: game}
      fileDir: /tmp/kidecar-test-downloads
      downloadTimeoutSeconds: %s
"""


def alias_bomb(levels: int = 7, width: int = 9) -> str:
    """The "billion laughs": each level refers ``width`` times to the one below."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


ATTACKS: dict[str, bytes] = {
    "random-bytes": bytes((i * 131 + 7) % 256 for i in range(4096)),
    "latin-1": "plugins: []\nname: caf\xe9\n".encode("latin-1"),
    "nested-lists": b"[" * 10_000,
    "nested-mappings": b"a: {" * 5000,
    "alias-bomb": alias_bomb().encode(),
    "recursive-alias": b"plugins: &p [*p]\n",
    "duplicate-plugins": b"plugins: []\nplugins: []\n",
    "nan-timeout": (HOT_UPDATE % ".nan").encode(),
    "inf-timeout": (HOT_UPDATE % ".inf").encode(),
    "nul-characters": b"plugins: [\x00]\n",
    "too-large": b"# " + b"x" * MAX_FILE_BYTES + b"\nplugins: []\n",
}
EXPECTED = {
    "random-bytes": "is not UTF-8 text",
    "latin-1": "not UTF-8 text (byte 0xe9",
    "nested-lists": f"nested deeper than {MAX_DEPTH} levels",
    "nested-mappings": f"nested deeper than {MAX_DEPTH} levels",
    "alias-bomb": f"more than {MAX_ALIAS_EXPANSION} values",
    "recursive-alias": "an alias refers to a node containing it",
    "duplicate-plugins": "duplicate key 'plugins' (first given on line 1)",
    "nan-timeout": "downloadTimeoutSeconds: must be a finite number, got .nan",
    "inf-timeout": "downloadTimeoutSeconds: must be a finite number, got .inf",
    "nul-characters": "is not valid YAML",
    "too-large": f"larger than {MAX_FILE_BYTES // 1024} KiB",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_check_config_refuses_hostile_files_cleanly(tmp_path: Path, name: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(ATTACKS[name])
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "invalid configuration" in out.stderr
    assert EXPECTED[name] in out.stderr


def test_run_refuses_a_hostile_file_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(ATTACKS["alias-bomb"])
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "run", "--config", str(path),
         "--local-state", str(tmp_path / "state.json")],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert EXPECTED["alias-bomb"] in out.stderr


def test_an_alias_that_expands_a_little_is_fine() -> None:
    data = parse_yaml("base: &b {x: 1, y: [1, 2]}\na: *b\nb: *b\nm:\n  <<: *b\n  x: 2\n")
    assert data["a"] == data["b"] == {"x": 1, "y": [1, 2]}
    assert data["m"] == {"x": 2, "y": [1, 2]}  # a merge key may be overridden


def test_depth_limit_counts_aliases_expanded() -> None:
    deep = "[" * 40 + "1" + "]" * 40
    with pytest.raises(ConfigError, match="once aliases are expanded"):
        parse_yaml(f"x: &x {deep}\ny: {'[' * 40}*x{']' * 40}\n")
    assert parse_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)) is not None


@pytest.mark.parametrize(
    "text",
    [
        "plugins: []\nplugins: []\n",
        "a: {x: 1, x: 2}\n",
        "a:\n  - {name: p, name: q}\n",
        "1: a\n1: b\n",
    ],
)
def test_duplicate_keys_are_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="duplicate key"):
        parse_yaml(text)


def test_duplicate_keys_in_a_workload_are_errors_too() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'kind'"):
        parse_yaml_documents("kind: Pod\n---\nkind: Pod\nkind: Deployment\n")


def test_yaml_1_2_floats_are_numbers_and_keep_their_text() -> None:
    data = parse_yaml("a: 1e3\nb: -2E-2\nc: 1.50\nd: '1e3'\ne: 1_000\n")
    assert data["a"] == 1000.0 and isinstance(data["a"], YamlFloat) and data["a"].text == "1e3"
    assert data["b"] == -0.02
    assert data["c"].text == "1.50"
    assert data["d"] == "1e3"
    assert data["e"] == 1000
    # It behaves as a float everywhere a value goes.
    assert json.dumps(data["a"]) == "1000.0"
    assert copy.deepcopy(data["a"]).text == pickle.loads(pickle.dumps(data["a"])).text == "1e3"


def test_numbers_written_with_an_exponent_load_in_every_field_kind(tmp_path: Path) -> None:
    plugins = Plugins.load(ENV)
    raw = parse_yaml(
        """\
plugins:
  - name: hot_update
    config:
      signal: {processName: game}
      fileDir: /tmp/kidecar-test-downloads
      downloadTimeoutSeconds: 1e3
      maxBytes: 1e9
  - name: http_probe
    config:
      probeIntervalSeconds: 5e0
      endpoints:
        - url: http://127.0.0.1:8080/state
          storageConfig:
            type: InKube
            inKube:
              annotationKey: example.com/state
              markerPolices: [{state: 1e3, labels: {example.com/v: 1.50}}]
"""
    )
    loaded = load_parsed(raw, plugins, ENV, lenient=False)
    hot, probe = (p.config for p in loaded.plugins)
    assert hot.download_timeout_seconds == 1000.0
    assert hot.max_bytes == 1_000_000_000 and type(hot.max_bytes) is int
    assert probe.probe_interval_seconds == 5.0
    policy = probe.endpoints[0].storage_config.get("inKube").marker_policies[0]
    assert policy.state == "1e3"  # a string field gets the text as written
    assert dict(policy.labels) == {"example.com/v": "1.50"}


def test_an_integer_field_refuses_a_fraction() -> None:
    plugins = Plugins.load(ENV)
    raw = parse_yaml(
        "plugins:\n  - name: hot_update\n    config:\n      signal: {processName: g}\n"
        "      fileDir: /tmp/x\n      maxBytes: 1.5e3\n"
    )
    with pytest.raises(ConfigError, match="maxBytes: expected an integer"):
        load_parsed(raw, plugins, ENV, lenient=False)


def test_non_finite_values_are_refused_in_free_form_values_too() -> None:
    plugins = Plugins.load(ENV)
    raw = parse_yaml(
        """\
plugins:
  - name: http_probe
    config:
      endpoints:
        - url: http://127.0.0.1:8080/state
          storageConfig:
            type: InKube
            inKube:
              markerPolices:
                - state: idle
                  jsonPathConfigs: [{jsonPath: /spec/deletionPriority, value: [1, -.inf]}]
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_parsed(raw, plugins, ENV, lenient=False)
    assert [p.path for p in caught.value.problems] == [
        "plugins[0].config.endpoints[0].storageConfig.inKube.markerPolices[0]"
        ".jsonPathConfigs[0].value[1]"
    ]


def test_read_yaml_accepts_a_file_just_under_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES - 20) + b"\nplugins: []\n")
    assert read_yaml(path) == {"plugins": []}


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def test_check_config_reads_a_configmap_manifest_as_the_config_it_holds(tmp_path: Path) -> None:
    """The serverless-okg example keeps its config in a ConfigMap, as `kidecar inject` reads it."""
    example = Path(__file__).parents[2] / "deploy/examples/serverless-okg/configmap.yaml"
    out = _check_config(example)
    assert out.returncode == 0, out.stderr
    assert "OK (plugins in boot order:" in out.stdout
    bad = tmp_path / "cm.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata:\n"
        "  config.yaml: |\n    plugins: [{name: nope}]\n"
    )
    out = _check_config(bad)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "plugins[0]" in out.stderr and "nope" in out.stderr
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {other: x}\n")
    out = _check_config(bad)
    assert out.returncode == 2
    assert "ConfigMap cfg has no data key 'config.yaml'" in out.stderr

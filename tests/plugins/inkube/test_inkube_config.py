"""Static policy labels and annotations are checked like the API server checks them (issue 13
item 9): ``check-config`` refuses what the first write would be refused for, keys and values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """\
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
{policy}
"""


def check_config(tmp_path: Path, policy: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(policy=policy))
    return subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("policy", "path", "reason"),
    [
        ("labels: {room: open for players}", "labels.room", "alphanumeric"),
        (f"labels: {{room: {'a' * 70}}}", "labels.room", "no more than 63"),
        ("labels: {room: '-open'}", "labels.room", "start and end"),
        ("labels: {'bad key!': x}", "labels.bad key!", "name must be"),
        (f"annotations: {{note: {'x' * 300_000}}}", "annotations", "262144 bytes"),
    ],
)
def test_check_config_refuses_static_metadata_the_api_server_would(
    tmp_path: Path, policy: str, path: str, reason: str
) -> None:
    proc = check_config(tmp_path, "                  " + policy)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if f".{path}:" in x or f".{path} " in x)
    assert reason in line


def test_valid_static_metadata_passes(tmp_path: Path) -> None:
    policy = (
        "                  labels: {room-idle: 'true', empty: ''}\n"
        "                  annotations: {controller.kubernetes.io/pod-deletion-cost: '-10'}"
    )
    proc = check_config(tmp_path, policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("pointer", "reason"),
    [
        ("/spec/opsState/", "empty segment"),
        ("/spec//opsState", "empty segment"),
        ("/spec/ops~2State", "must be followed by 0"),
        ("/metadata/labels/a~", "must be followed by 0"),
    ],
)
@pytest.mark.parametrize("where", ["storage", "policy"])
def test_check_config_refuses_a_json_pointer_the_api_server_would(
    tmp_path: Path, pointer: str, reason: str, where: str
) -> None:
    """Review of issue 11: these were "OK", then every write of the state failed (a trailing
    ``/`` writes a map under the string field ``spec.opsState``; ``~2`` is no RFC 6901 escape)."""
    pad = "                  "
    policy = f'{pad}jsonPathConfigs: [{{jsonPath: "{pointer}", value: x}}]'
    if where == "storage":
        policy = f"{pad}labels: {{a: b}}\n              jsonPath: '{pointer}'"
    proc = check_config(tmp_path, policy)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "jsonPath:" in x)
    assert reason in line and pointer in line


@pytest.mark.parametrize("pointer", ["/metadata/labels/example.com~1key", "/spec/a~0b"])
def test_escaped_json_pointers_pass(tmp_path: Path, pointer: str) -> None:
    policy = f'                  jsonPathConfigs: [{{jsonPath: "{pointer}", value: x}}]'
    proc = check_config(tmp_path, policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("storage", "field", "reason"),
    [
        ("jsonPath: /spec", "jsonPath", "whole section"),
        ("jsonPath: /metadata/labels", "jsonPath", "whole section"),
        ("jsonPath: /metadata/annotations", "jsonPath", "whole section"),
        ("jsonPath: /metadata", "jsonPath", "whole section"),
        ("jsonPath: /metadata/labels/a/b", "jsonPath", "flat map"),
        ("jsonPath: '/metadata/labels/bad key!'", "jsonPath", "name must be"),
        ("jsonPath: /metadata/labels/room", "markerPolicies[0].state", "alphanumeric"),
        ("labelKey: room", "markerPolicies[0].state", "alphanumeric"),
    ],
)
def test_check_config_refuses_a_result_the_api_server_would(
    tmp_path: Path, storage: str, field: str, reason: str
) -> None:
    """Review of issue 11: a string state at a whole section (``/spec``, ``/metadata/labels``),
    or a state that is not a label value written as a label, passed check-config, then every
    write failed with 422 at the API server."""
    config = CONFIG.replace("- state: idle", "- state: open for players").format(
        policy=f"                  labels: {{a: b}}\n              {storage}"
    )
    path = tmp_path / "config.yaml"
    path.write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if f".{field}:" in x)
    assert reason in line


@pytest.mark.parametrize(
    ("pointer", "value", "reason"),
    [
        ("/spec", "x", "whole section"),
        ("/metadata/labels", "x", "whole section"),
        ("/metadata/labels", "{room: open for players}", "alphanumeric"),
        ("/metadata/labels/room", "open for players", "alphanumeric"),
        ("/metadata/annotations/note", "{a: 1}", "must be strings"),
    ],
)
def test_check_config_refuses_a_json_path_value_the_api_server_would(
    tmp_path: Path, pointer: str, value: str, reason: str
) -> None:
    policy = f'                  jsonPathConfigs: [{{jsonPath: "{pointer}", value: {value}}}]'
    proc = check_config(tmp_path, policy)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "jsonPathConfigs[0].value:" in x)
    assert reason in line


@pytest.mark.parametrize(
    ("pointer", "value"),
    [
        ("/spec", "{opsState: None}"),
        ("/metadata/labels", "{room: open}"),
        ("/metadata/labels/room", "open"),
        ("/metadata/labels/room", "null"),
        ("/metadata/annotations/note", "open for players"),
    ],
)
def test_json_path_values_the_api_server_accepts_pass(
    tmp_path: Path, pointer: str, value: str
) -> None:
    policy = f'                  jsonPathConfigs: [{{jsonPath: "{pointer}", value: {value}}}]'
    proc = check_config(tmp_path, policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr

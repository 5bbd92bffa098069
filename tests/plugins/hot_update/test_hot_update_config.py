"""hot_update's configuration: the seed config loads unchanged; mistakes are reported with paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidecar_core.errors import ConfigError
from kidecar_core.testing import load_config as load_with_plugins
from kidecar_plugins.hot_update.config import HotUpdateConfig, signal_number

SEED = (Path(__file__).parent / "seed-config.yaml").read_text(encoding="utf-8")
"""The hot_update example of reference/seed-README.zh.md, verbatim."""


def load_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_with_plugins(path)


def plugin_config(tmp_path: Path, config: dict[str, Any]) -> HotUpdateConfig:
    text = yaml.safe_dump({"plugins": [{"name": "hot_update", "config": config}]})
    loaded = load_text(tmp_path, text)
    result: HotUpdateConfig = loaded.plugins[0].config
    return result


def problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        plugin_config(tmp_path, config)
    return [str(p) for p in e.value.problems]


def test_seed_config_loads_unchanged(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, SEED)
    config: HotUpdateConfig = loaded.plugins[0].config
    assert config.load_patch_type == "signal"
    assert config.signal is not None
    assert config.signal.process_name == "nginx: master process nginx"
    assert config.signal.signame == "SIGHUP"
    assert config.storage_config is not None and config.storage_config.type == "InKube"
    assert config.file_dir == "/app/downloads"
    assert config.listen == ":5000"
    assert config.persistence.config_map_name == "sidecar-result"
    assert config.max_bytes == 1024**3


def test_seed_config_with_camel_case_spellings(tmp_path: Path) -> None:
    text = (
        SEED.replace("bootorder", "bootOrder")
        .replace("restartpolicy", "restartPolicy")
        .replace("sidecarstartorder", "sidecarStartOrder")
        .replace("loadPatchType", "loadpatchtype")
        .replace("processName", "processname")
        .replace("signalName", "signalname")
    )
    config = load_text(tmp_path, text).plugins[0].config
    assert config.signal.process_name == "nginx: master process nginx"


def test_check_config_cli_accepts_the_seed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED)
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_all_keys_with_values(tmp_path: Path) -> None:
    config = plugin_config(
        tmp_path,
        {
            "loadPatchType": "request",
            "request": {
                "url": "http://127.0.0.1:8080/reload",
                "method": "put",
                "timeoutSeconds": 2,
                "retries": 0,
                "headers": {"X-A": "b"},
            },
            "fileDir": "/data/files",
            "listen": "0.0.0.0:5001",
            "auth": {"tokenEnv": "HOT_TOKEN"},
            "allowedUrlPrefixes": ["https://cdn.example.com/game/"],
            "allowLinkLocal": True,
            "maxBytes": 1000,
            "downloadTimeoutSeconds": 10,
            "persistence": {"enabled": False, "configMapName": "my-results"},
            "waitForProcessSeconds": 0,
        },
    )
    assert config.request is not None and config.request.retries == 0
    assert config.persistence.config_map_name == "my-results"
    assert config.wait_for_process_seconds == 0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"loadPatchType": "signal"}, "signal: required with loadPatchType: signal"),
        ({"loadPatchType": "request"}, "request: required with loadPatchType: request"),
        ({"loadPatchType": "pigeon"}, "loadPatchType: must be one of signal, request"),
        ({"signal": {"processName": ""}}, "signal.processName: must not be empty"),
        ({"signal": {"processName": "  "}}, "signal.processName: must not be empty"),
        ({"signal": {"processName": "x", "signalName": "SIGNOPE"}}, "signal.signalName: unknown"),
        ({"signal": {"processName": "x", "signalName": "KILL"}}, "signal.signalName: KILL cannot"),
        ({"signal": {"processName": "(", "processNameRegex": True}}, "invalid regular expression"),
        ({"signal": {"processName": "x", "nme": 1}}, "signal.nme: unknown key"),
        ({"signal": {"processName": "x"}, "fileDir": "downloads"}, "fileDir: 'downloads' must be"),
        ({"signal": {"processName": "x"}, "maxBytes": 0}, "maxBytes: must be > 0"),
        ({"signal": {"processName": "x"}, "downloadTimeoutSeconds": -1}, "must be > 0"),
        ({"signal": {"processName": "x"}, "listen": "5000"}, "listen: '5000': expected"),
        (
            {"signal": {"processName": "x"}, "allowedUrlPrefixes": ["cdn.example.com"]},
            "allowedUrlPrefixes[0]",
        ),
        (
            {"signal": {"processName": "x"}, "auth": {"tokenFile": "/t", "tokenEnv": "T"}},
            "not both",
        ),
        ({"signal": {"processName": "x"}, "auth": {"tokenEnv": "no-such var"}}, "auth.tokenEnv"),
        (
            {"signal": {"processName": "x"}, "persistence": {"configMapName": "Bad_Name"}},
            "configMapName",
        ),
        ({"request": {"url": "ftp://x"}, "loadPatchType": "request"}, "request.url"),
        (
            {"request": {"url": "http://x", "method": "DELETE"}, "loadPatchType": "request"},
            "request.method",
        ),
        (
            {"signal": {"processName": "x"}, "fileDirr": "/x"},
            "fileDirr: unknown key (did you mean 'fileDir'?)",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, config: dict[str, Any], expected: str) -> None:
    found = problems(tmp_path, config)
    assert any(expected in p and p.startswith("plugins[0].config.") for p in found), found


@pytest.mark.parametrize(
    ("name", "number"),
    [("SIGHUP", 1), ("HUP", 1), ("sighup", 1), ("USR1", 10), ("SIGUSR2", 12), (" SIGTERM ", 15)],
)
def test_signal_names_with_or_without_sig(name: str, number: int) -> None:
    assert signal_number(name) == number


def test_configure_reports_an_unusable_token_and_file_dir(tmp_path: Path) -> None:
    """`kidecar run` stops with exit code 2 and both problems, before serving anything."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = {
        "plugins": [
            {
                "name": "hot_update",
                "config": {
                    "signal": {"processName": "x"},
                    "fileDir": str(blocker / "sub"),
                    "auth": {"tokenFile": str(tmp_path / "missing-token")},
                },
            }
        ]
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kidecar_core",
            "run",
            "--config",
            str(path),
            "--local-state",
            str(tmp_path / "state.json"),
            "--admin-listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "plugins[0].config.auth.tokenFile: cannot read" in out.stderr
    assert "plugins[0].config.fileDir: cannot create" in out.stderr
    assert "Traceback" not in out.stderr


def test_pod_requirements_for_kidecar_inject(tmp_path: Path) -> None:
    from kidecar_core._plugins.podspec import ContainerPort, SharedVolume
    from kidecar_plugins.hot_update.plugin import kidecar_pod_requirements

    seed = load_text(tmp_path, SEED).plugins[0].config
    needs = kidecar_pod_requirements("hot_update", seed)
    assert needs is not None
    assert needs.share_process_namespace, "signal mode needs shareProcessNamespace"
    assert needs.shared_volumes == (SharedVolume("kidecar-downloads", "/app/downloads"),)
    assert needs.ports == (), "without a token the API is loopback only: no port to expose"
    with_token = plugin_config(
        tmp_path,
        {
            "loadPatchType": "request",
            "request": {"url": "http://127.0.0.1:8080/reload"},
            "auth": {"tokenFile": "/var/run/secrets/hot-update/token"},
            "fileDir": "/data",
        },
    )
    needs = kidecar_pod_requirements("hot_update", with_token)
    assert needs is not None
    assert needs.ports == (ContainerPort("hot-update", 5000),)
    assert not needs.share_process_namespace
    assert needs.shared_volumes == (SharedVolume("kidecar-downloads", "/data"),)
    assert kidecar_pod_requirements("http_probe", with_token) is None


def test_kidecar_inject_with_the_seed_config(tmp_path: Path) -> None:
    workload = tmp_path / "gss.yaml"
    workload.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "game.kruise.io/v1alpha1",
                "kind": "GameServerSet",
                "metadata": {"name": "gss-a"},
                "spec": {
                    "gameServerTemplate": {
                        "spec": {"containers": [{"name": "game", "image": "nginx:1.25"}]}
                    }
                },
            }
        )
    )
    seed = tmp_path / "config.yaml"
    seed.write_text(SEED)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kidecar_core",
            "inject",
            "-f",
            str(workload),
            "--config",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    spec = yaml.safe_load(out.stdout)["spec"]["gameServerTemplate"]["spec"]
    assert spec["shareProcessNamespace"] is True
    game = spec["containers"][0]
    assert {"name": "kidecar-downloads", "mountPath": "/app/downloads"} in game["volumeMounts"]


def test_check_config_refuses_header_injection_and_non_finite_numbers(tmp_path: Path) -> None:
    """What used to pass check-config and then broke every update or flooded the game."""
    path = tmp_path / "config.yaml"
    path.write_text(
        """\
plugins:
  - name: hot_update
    config:
      loadPatchType: request
      fileDir: /tmp/kidecar-test-downloads
      downloadTimeoutSeconds: .nan
      request:
        url: http://127.0.0.1:8080/reload
        timeoutSeconds: .inf
        headers: {X-Token: "abc\\r\\nX-Injected: 1"}
  - name: http_probe
    config:
      probeIntervalSeconds: .NaN
      endpoints: [{url: "http://127.0.0.1:8080/state", timeout: -.inf}]
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr
    for problem in (
        "plugins[0].config.downloadTimeoutSeconds: must be a finite number, got .nan",
        "plugins[0].config.request.timeoutSeconds: must be a finite number, got .inf",
        "plugins[0].config.request.headers.X-Token: the value of X-Token contains the control "
        "character '\\r'",
        "plugins[1].config.probeIntervalSeconds: must be a finite number, got .NaN",
        "plugins[1].config.endpoints[0].timeout: must be a finite number, got -.inf",
    ):
        assert problem in out.stderr, out.stderr

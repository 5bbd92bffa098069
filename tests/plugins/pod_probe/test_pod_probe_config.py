"""The pod_probe config: ``config: {}`` is enough; static probes are checked with their paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kidecar_core._config.loader import LoadedConfig
from kidecar_core._inject.inject import sidecar_from_config
from kidecar_core._plugins.manager import Plugins
from kidecar_core._plugins.podspec import SharedVolume
from kidecar_core.errors import ConfigError
from kidecar_core.testing import load_config as load_kidecar_config
from kidecar_plugins.pod_probe.config import PodProbeConfig
from kidecar_plugins.pod_probe.spec import ExecAction


def load_config(tmp_path: Path, config: object) -> LoadedConfig:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"plugins": [{"name": "pod_probe", "config": config}]}))
    return load_kidecar_config(path)


def test_an_empty_config_is_enough(tmp_path: Path) -> None:
    (entry,) = load_config(tmp_path, {}).plugins
    config = entry.config
    assert isinstance(config, PodProbeConfig)
    assert config.probes == () and config.shared_volumes == ()
    assert config.pod_probe_markers is False and config.pod_probe_markers_period_seconds == 30
    assert config.static_probes() == []


def test_static_probes_use_the_annotations_schema(tmp_path: Path) -> None:
    probe = {"containerName": "game", "name": "idle", "podConditionType": "game.kruise.io/idle",
             "probe": {"exec": {"command": ["cat", "/state"]}, "periodSeconds": 2}}  # fmt: skip
    (entry,) = load_config(tmp_path, {"probes": [probe]}).plugins
    (parsed,) = entry.config.static_probes("plugins[0].config.probes")
    assert parsed.handler == ExecAction(("cat", "/state"))
    assert parsed.timing.period_seconds == 2
    assert parsed.source == "plugins[0].config.probes[0]"


def test_every_mistake_is_reported_at_once_with_its_path(tmp_path: Path) -> None:
    probe = {"containerName": "game", "name": "a", "podConditionType": "x/a",
             "probe": {"exec": {"command": ["true"]}}}  # fmt: skip
    config = {
        "probes": [
            {**probe, "probe": {"exec": {"command": ["true"]}, "periodSecond": 1}},
            {**probe, "name": "b", "podConditionType": "x/b", "probe": {"grpc": {"port": 1}}},
            {**probe, "name": "c", "podConditionType": "x/c", "probe": {"exec": {}}},
            {**probe, "name": "d", "podConditionType": "bad type"},
        ],
        "sharedVolumes": [{"name": "Bad_Name", "mountPath": "relative"}],
        "podProbeMarkersPeriodSeconds": 0.001,  # a list request every millisecond
    }
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, config)
    assert str(caught.value).splitlines() == [
        "plugins[0].config.probes[0].probe.periodSecond: unknown key (known: exec, tcpSocket, "
        "httpGet, grpc, initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, "
        "failureThreshold, terminationGracePeriodSeconds)",
        "plugins[0].config.probes[1].probe.grpc: grpc probes are not supported (exec, tcpSocket "
        "and httpGet are)",
        "plugins[0].config.probes[2].probe.exec.command: must be a non-empty list of strings",
        "plugins[0].config.probes[3].podConditionType: 'bad type' is not a qualified name "
        "([DNS-subdomain/]name, the name at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.')",
        "plugins[0].config.sharedVolumes[0].name: 'Bad_Name' is not a volume name (a DNS label: "
        "a-z, 0-9, '-')",
        "plugins[0].config.sharedVolumes[0].mountPath: 'relative' is not an absolute path",
        "plugins[0].config.podProbeMarkersPeriodSeconds: must be at least 1 (one list request "
        "of the API server each period), got 0.001",
    ]


def test_two_probes_may_not_write_one_condition(tmp_path: Path) -> None:
    probe = {"containerName": "game", "name": "a", "podConditionType": "x/a",
             "probe": {"exec": {"command": ["true"]}}}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {"probes": [probe, {**probe, "name": "b"}]})
    assert str(caught.value) == (
        "plugins[0].config.probes[1].podConditionType: 'x/a' is already written by probe 'a'"
    )


def test_shared_volumes_are_what_kidecar_inject_mounts(tmp_path: Path) -> None:
    loaded = load_config(tmp_path, {"sharedVolumes": [{"name": "game-state",
                                                       "mountPath": "/var/run/game"}]})  # fmt: skip
    plugins = Plugins.load({}, [])
    plugins.activate(loaded.plugins)
    sidecar = sidecar_from_config(loaded, plugins)
    assert sidecar.requirements.shared_volumes == (SharedVolume("game-state", "/var/run/game"),)

"""``kidecar rollout start``'s check of a target against the sidecars' config (no cluster)."""

from __future__ import annotations

from pathlib import Path

import yaml

from kidecar_core import RolloutTarget
from kidecar_core._rollout.check import sidecar_checker as rollout_checker

TARGET = RolloutTarget("v2", "https://cdn.example.com/game/v2/levels.pak")


def config(**hot_update: object) -> str:
    plugin = {"name": "hot_update", "config": {"signal": {"processName": "game"}, **hot_update}}
    return yaml.safe_dump({"plugins": [plugin]})


def test_an_acceptable_target() -> None:
    check = rollout_checker({}, [])
    assert check(config(allowedUrlPrefixes=["https://cdn.example.com/game/"]), "cm", TARGET) == []


def test_a_sidecar_without_a_plugin_that_follows_rollouts() -> None:
    check = rollout_checker({}, [])
    problems = check(config(rollout={"enabled": False}), "cm", TARGET)
    assert problems == [
        "no plugin of the sidecar config follows rollouts: configure hot_update (with "
        "rollout.enabled, the default)"
    ]
    assert "no plugin" in check(yaml.safe_dump({"plugins": []}), "cm", TARGET)[0]


def test_an_invalid_sidecar_config_is_reported_with_its_paths() -> None:
    problems = rollout_checker({}, [])(config(maxBytes=0, rollout={"pollSecond": 1}), "cm", TARGET)
    assert any("plugins[0].config.maxBytes" in p for p in problems), problems
    assert any("pollSecond" in p and "did you mean" in p for p in problems), problems
    assert all(p.startswith("the sidecar config is invalid: ") for p in problems)


def test_kidecar_check_rollout_problems_name_the_plugin() -> None:
    check = rollout_checker({}, [])
    problems = check(config(allowedUrlPrefixes=["https://other/"]), "cm", TARGET)
    assert problems == [
        "plugins[0] (hot_update): url 'https://cdn.example.com/game/v2/levels.pak' is not under "
        "allowedUrlPrefixes (https://other/)"
    ]


def test_kidecar_check_rollout_that_raises_refuses_the_rollout(tmp_path: Path) -> None:
    override = tmp_path / "site_rules.py"
    override.write_text(
        "from kidecar_core import hookimpl\n\n"
        "@hookimpl\n"
        "def kidecar_check_rollout(name, config, target):\n"
        "    raise RuntimeError('site rules are broken')\n"
    )
    check = rollout_checker({}, [str(override)])
    problems = check(config(), "cm", TARGET)
    assert any("raised RuntimeError: site rules are broken" in p for p in problems), problems

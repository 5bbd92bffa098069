"""``kidecar rollout start``'s check of a target against the sidecars' own config, before
anything is written: every configured plugin that follows rollouts names its problems through
the ``kidecar_check_rollout`` hook (hot_update: version, URL, ``allowedUrlPrefixes``, sha256)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kidecar_core._config.catalog import load_parsed
from kidecar_core._config.strict_yaml import parse_yaml
from kidecar_core._plugins.manager import Plugins
from kidecar_core._rollout.commands import Checker
from kidecar_core._store.rollout import RolloutTarget
from kidecar_core.errors import ConfigError


def sidecar_checker(env: Mapping[str, str], files: Sequence[str] = ()) -> Checker:
    """``(config text, where it came from, target) -> problems`` with the installed plugins
    (and override ``files``); empty: the sidecars would accept the target."""

    def check(text: str, where: str, target: RolloutTarget) -> list[str]:
        plugins = Plugins.load(env, files)
        try:
            loaded = load_parsed(parse_yaml(text, where), plugins, env, lenient=True)
        except ConfigError as e:
            return [f"the sidecar config is invalid: {p}" for p in e.problems]
        plugins.activate(loaded.plugins)
        problems: list[str] = []
        followers = 0
        for entry in loaded.boot_sequence():
            try:
                answer = plugins.check_rollout(entry.name, entry.config, target)
            except Exception as e:  # a plugin's bug: say so, and refuse the rollout
                answer = [f"kidecar_check_rollout raised {type(e).__name__}: {e}"]
            if answer is not None:
                followers += 1
                problems.extend(f"{entry.path} ({entry.name}): {p}" for p in answer)
        if not followers:
            problems.append(
                "no plugin of the sidecar config follows rollouts: configure hot_update "
                "(with rollout.enabled, the default)"
            )
        return problems

    return check

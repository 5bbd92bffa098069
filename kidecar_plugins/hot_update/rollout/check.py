"""``kidecar rollout start``'s check of a target against hot_update's config, before anything
is written: the same rules a sidecar applies when the update arrives (version syntax, URL
syntax and file name, ``allowedUrlPrefixes``, link-local addresses, sha256 syntax)."""

from __future__ import annotations

from kidecar_core import RolloutTarget
from kidecar_plugins.hot_update.api import parse_sha256, parse_version
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.errors import UpdateError, UrlNotAllowed
from kidecar_plugins.hot_update.updater import UpdateRequest
from kidecar_plugins.hot_update.urls import UrlPolicy


def check_target(config: HotUpdateConfig, target: RolloutTarget) -> list[str]:
    """Problems the sidecars would have with ``target`` (empty: none)."""
    problems: list[str] = []
    try:
        parse_version(target.version)
    except UpdateError as e:
        problems.append(e.message)
    try:
        sha256 = parse_sha256(target.sha256)
    except UpdateError as e:
        problems.append(e.message)
        sha256 = None
    try:
        request = UpdateRequest.create(target.version, target.url, sha256)
        UrlPolicy.from_config(config.allowed_url_prefixes, config.allow_link_local).check(
            request.url
        )
    except UpdateError as e:
        hint = ""
        if isinstance(e, UrlNotAllowed) and config.allowed_url_prefixes:
            hint = f" ({', '.join(config.allowed_url_prefixes)})"
        problems.append(e.message + hint)
    return problems

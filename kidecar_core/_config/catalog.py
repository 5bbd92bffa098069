"""The configuration read against the installed plugins: their names, config schemas and
storage types come from the plugin manager."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kidecar_core._config.loader import (
    LoadedConfig,
    PluginCatalog,
    TemplateContext,
    load_config,
)
from kidecar_core._config.strict_yaml import parse_yaml, read_yaml
from kidecar_core._plugins.manager import Plugins
from kidecar_core.errors import ConfigError

CONFIG_KEY = "config.yaml"
"""Key of the config in its ConfigMap; mounted as ``/opt/sidecar/config.yaml``."""
DEFAULT_CONFIG_MAP = "kidecar-config"
"""Name of the ConfigMap that holds the config when none is named."""


def embedded_config(raw: Any) -> tuple[Any, str] | None:
    """If ``raw`` (a parsed config file) is a ConfigMap manifest (``kind: ConfigMap`` and an
    ``apiVersion``), its parsed ``data["config.yaml"]`` and the ConfigMap's name; ``None`` for a
    plain config.  Raises :class:`ConfigError` when the ConfigMap holds no config or it is not
    YAML."""
    if not (isinstance(raw, dict) and raw.get("kind") == "ConfigMap" and "apiVersion" in raw):
        return None
    name = (raw.get("metadata") or {}).get("name") or DEFAULT_CONFIG_MAP
    text = (raw.get("data") or {}).get(CONFIG_KEY)
    if not isinstance(text, str):
        raise ConfigError.single(
            "data", f"ConfigMap {name} has no data key {CONFIG_KEY!r} (the sidecar config)"
        )
    return parse_yaml(text, f"ConfigMap {name}, data.{CONFIG_KEY}"), str(name)


def catalog_of(plugins: Plugins) -> PluginCatalog:
    """What the loader needs to know of the installed plugins."""
    return PluginCatalog(
        installed=plugins.service_plugins(),
        schema_for=plugins.config_schema,
        disabled=frozenset(plugins.disabled),
        broken=dict(plugins.broken),
    )


def load_parsed(
    raw: Any, plugins: Plugins, env: Mapping[str, str], *, lenient: bool
) -> LoadedConfig:
    """Validate an already parsed config against the installed plugins.

    ``lenient``: unresolved ``${...}`` templates are warnings instead of problems (for
    ``check-config`` and ``inject``, which run outside the pod).  Raises :class:`ConfigError`.
    """
    try:
        return load_config(
            raw, catalog_of(plugins), plugins.storage_types(), TemplateContext(env, lenient=lenient)
        )
    except ConfigError as e:
        raise ConfigError(e.problems) from None


def load_file(
    path: str | Path, plugins: Plugins, env: Mapping[str, str], *, lenient: bool
) -> LoadedConfig:
    """Read the YAML file at ``path`` and validate it (see :func:`load_parsed`).  A ConfigMap
    manifest is read as the config it holds (see :func:`embedded_config`), as ``kidecar inject``
    reads it."""
    raw = read_yaml(path)
    embedded = embedded_config(raw)
    return load_parsed(raw if embedded is None else embedded[0], plugins, env, lenient=lenient)

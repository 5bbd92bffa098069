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
from kidecar_core._config.strict_yaml import read_yaml
from kidecar_core._plugins.manager import Plugins
from kidecar_core.errors import ConfigError


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
    """Read the YAML file at ``path`` and validate it (see :func:`load_parsed`)."""
    return load_parsed(read_yaml(path), plugins, env, lenient=lenient)

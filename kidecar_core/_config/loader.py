"""The sidecar configuration (``config.yaml``): models, loading and validation.

The top level is the core's; each plugin's ``config`` is read into the attrs class the plugin
returns from ``kidecar_config_schema``.  Loading reports **every** problem at once, with its path,
as one :class:`~kidecar_core.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from kidecar_core._base.values import describe_value
from kidecar_core._config.schema import (
    Converter,
    FieldError,
    field,
    make_converter,
    non_negative,
    suggest,
)
from kidecar_core._config.warnings import config_warnings
from kidecar_core._persist.precedence import ANY_OTHER, DEFAULT_PRECEDENCE
from kidecar_core._persist.result import StorageConfig
from kidecar_core._plugins.registry import StorageTypeRegistry
from kidecar_core.errors import ConfigError, Problem, join_path

DEFAULT_CONFIG_PATH = "/opt/sidecar/config.yaml"

RestartPolicy = Literal["Always", "OnFailure", "Never"]
StartOrder = Literal["Before", "After"]


@attrs.frozen
class Resources:
    """Resources of the sidecar container, used by ``kidecar inject``."""

    cpu: str | None = field(key="CPU", default=None, doc="CPU request and limit, e.g. `100m`.")
    memory: str | None = field(
        key="Memory", default=None, doc="Memory request and limit, e.g. `128Mi`."
    )


@attrs.frozen
class PluginEntry:
    """One entry of ``plugins``: which plugin runs, when it boots, and its own config."""

    name: str = field(doc="Entry-point name of the plugin (`kidecar plugins` lists them).")
    bootorder: int = field(
        key="bootorder",
        default=0,
        validator=non_negative,
        doc="Lower boots first; plugins with the same value boot in file order.",
    )
    config: Mapping[str, object] = field(
        factory=dict, doc="The plugin's own configuration (see the plugin's reference)."
    )


def _check_precedence(_: object, __: object, values: tuple[str, ...]) -> None:
    if not values:
        raise FieldError("opsStatePrecedence", "must list at least one opsState")
    seen: set[str] = set()
    for value in values:
        if not value.strip():
            raise FieldError("opsStatePrecedence", "must not hold an empty value")
        if value in seen:
            raise FieldError("opsStatePrecedence", f"lists {value!r} twice")
        seen.add(value)


@attrs.frozen
class KidecarConfig:
    """The whole configuration file."""

    plugins: tuple[PluginEntry, ...] = field(
        factory=tuple, doc="Plugins to run. An empty list runs only the admin endpoints."
    )
    restart_policy: RestartPolicy = field(
        key="restartpolicy",
        default="Always",
        doc="What happens to a plugin that fails (raises): `Always` and `OnFailure` restart it "
        "with exponential backoff while the other plugins keep running (kidecar's plugins run "
        "until the sidecar stops, so the two only differ in name, kept for compatibility); "
        "`Never` leaves it down and `/readyz` failing.",
    )
    resources: Resources = field(
        factory=Resources, doc="Sidecar container resources (used by `kidecar inject`)."
    )
    sidecar_start_order: StartOrder = field(
        key="sidecarstartorder",
        default="Before",
        doc="`Before`: `kidecar inject` adds a native sidecar (init container with "
        "`restartPolicy: Always`) that starts before the game; `After`: a regular container.",
    )
    ops_state_precedence: tuple[str, ...] = field(
        key="opsStatePrecedence",
        default=DEFAULT_PRECEDENCE,
        validator=_check_precedence,
        doc="When several sources (endpoints, plugins, overrides) ask for different GameServer "
        "opsStates, the one listed first wins; each source's latest result is its ask. "
        f"`{ANY_OTHER}` stands for values not listed (custom ones), else they rank last. The "
        "default keeps a server that any source reports `Allocated` from being made deletable "
        "(`WaitToBeDeleted`, `Kill`) by another, and one reported `Maintaining` out of "
        "allocation. A disagreement is logged once.",
    )


@attrs.frozen
class ConfiguredPlugin:
    """A plugin entry after validation: its structured config and its position in the file."""

    name: str
    bootorder: int
    index: int
    config: Any

    @property
    def path(self) -> str:
        return f"plugins[{self.index}]"


@attrs.frozen
class LoadedConfig:
    """The validated configuration: the top level plus each plugin's structured config."""

    top: KidecarConfig
    plugins: tuple[ConfiguredPlugin, ...]
    warnings: tuple[str, ...] = ()

    def boot_sequence(self) -> list[ConfiguredPlugin]:
        """Plugins in boot order (ties: file order)."""
        return sorted(self.plugins, key=lambda p: (p.bootorder, p.index))


# -- templates --------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\$\{(SELF|POD):([A-Za-z_][A-Za-z0-9_.]*)\}")


@attrs.frozen
class TemplateContext:
    """Values for ``${SELF:VAR}`` (the sidecar's environment) and ``${POD:VAR}`` (pod fields).

    ``${POD:NAME}``/``${POD:NAMESPACE}`` (also ``POD_NAME``/``POD_NAMESPACE``) come from the
    downward API variables; other ``${POD:VAR}`` read the environment too, so that values the
    manifest passes from the pod spec work either way.  With ``lenient``, missing variables are
    left as they are and reported as warnings (``kidecar check-config`` on a laptop).
    """

    env: Mapping[str, str]
    lenient: bool = False

    def lookup(self, scope: str, var: str) -> str | None:
        if scope == "POD":
            aliases = {"NAME": "POD_NAME", "NAMESPACE": "POD_NAMESPACE"}
            return self.env.get(aliases.get(var, var))
        return self.env.get(var)


def substitute(value: Any, ctx: TemplateContext, path: str = "") -> tuple[Any, list[Problem]]:
    """Replace templates in every string of a parsed YAML tree; return (tree, problems)."""
    problems: list[Problem] = []

    def walk(node: Any, p: str) -> Any:
        if isinstance(node, str):
            return _substitute_str(node, ctx, p, problems)
        if isinstance(node, list):
            return [walk(item, f"{p}[{i}]") for i, item in enumerate(node)]
        if isinstance(node, dict):
            return {k: walk(v, join_path(p, str(k))) for k, v in node.items()}
        return node

    return walk(value, path), problems


def _substitute_str(text: str, ctx: TemplateContext, path: str, problems: list[Problem]) -> str:
    def repl(m: re.Match[str]) -> str:
        found = ctx.lookup(m.group(1), m.group(2))
        if found is None:
            problems.append(Problem(path, f"{m.group(0)}: environment variable is not set"))
            return m.group(0)
        return found

    return _TEMPLATE.sub(repl, text)


# -- loading ----------------------------------------------------------------------------------


SchemaLookup = Callable[[str], "type | None"]


@attrs.frozen
class PluginCatalog:
    """What the config loader needs to know about installed plugins."""

    installed: Mapping[str, str]
    """Service plugins that may be named in ``plugins[]``: name → distribution."""
    schema_for: SchemaLookup
    disabled: frozenset[str] = frozenset()
    """Installed but switched off by KIDECAR_PLUGINS / KIDECAR_DISABLE_PLUGINS."""
    broken: Mapping[str, str] = attrs.field(factory=dict)
    """Installed but failing to import: name → what failed (distribution, error)."""


def make_config_converter(storage: StorageTypeRegistry) -> Converter:
    """The converter with kidecar's own types (``storageConfig``) wired to the registries."""

    def structure_storage(value: Any, _: Any) -> StorageConfig:
        return _structure_storage(conv, storage, value)

    conv = make_converter({StorageConfig: structure_storage})
    return conv


def _storage_type(raw: Any, known_types: list[str]) -> tuple[str | None, Problem | None]:
    """The registered storage type ``raw`` names (case-insensitively), or the problem with it."""
    if not isinstance(raw, str):
        return None, Problem("type", f"expected a string, got {describe_value(raw)}")
    match = next((t for t in known_types if t.lower() == raw.lower()), None)
    if match is None:
        listing = ", ".join(known_types) or "none"
        why = f"unknown storage type {raw!r}{suggest(raw, known_types)}; registered: {listing}"
        return None, Problem("type", why)
    return match, None


def _structure_storage(conv: Converter, storage: StorageTypeRegistry, value: Any) -> StorageConfig:
    if not isinstance(value, dict):
        raise ConfigError.single("", f"expected a mapping, got {describe_value(value)}")
    by_key = storage.by_key()
    known_types = sorted(storage.types)
    problems: list[Problem] = []
    type_name: str | None = None
    options: dict[str, Any] = {}
    for key, raw in value.items():
        k = str(key)
        if k.lower() == "type":
            type_name, problem = _storage_type(raw, known_types)
            if problem is not None:
                problems.append(problem)
            continue
        st = next((t for kk, t in by_key.items() if kk.lower() == k.lower()), None)
        if st is None:
            choices = ["type", *by_key]
            problems.append(Problem(k, f"unknown key{suggest(k, choices)}"))
            continue
        try:
            options[st.key] = conv.structure(raw, st.config_class, k)
        except ConfigError as e:
            problems.extend(e.problems)
    if type_name is None and not any(p.path == "type" for p in problems):
        problems.append(Problem("type", "required key is missing"))
    if problems:
        raise ConfigError(problems)
    assert type_name is not None
    chosen = storage.types[type_name]
    if chosen.key not in options:
        # The type's options may all have defaults (e.g. `type: HTTPMetric` alone).
        try:
            options[chosen.key] = conv.structure({}, chosen.config_class, chosen.key)
        except ConfigError as e:
            raise ConfigError(
                [Problem(chosen.key, f"required for type {type_name}: {p}") for p in e.problems]
            ) from None
    return StorageConfig(type_name, options)


def load_config(
    raw: Any,
    catalog: PluginCatalog,
    storage: StorageTypeRegistry,
    templates: TemplateContext,
) -> LoadedConfig:
    """Validate a parsed config; raise one ConfigError holding every problem found.

    The top level, each plugin entry and each plugin's config are checked separately so that a
    mistake in one never hides the problems of another.
    """
    conv = make_config_converter(storage)
    problems: list[Problem] = []
    warnings: list[str] = []
    raw, template_problems = substitute({} if raw is None else raw, templates)
    if templates.lenient:
        warnings.extend(f"{p} (left as is)" for p in template_problems)
    else:
        problems.extend(template_problems)
    raw, raw_plugins = _split_plugins(raw)
    top: KidecarConfig | None = None
    try:
        top = conv.structure(raw, KidecarConfig)
    except ConfigError as e:
        problems.extend(e.problems)
    raw_plugins = go_plugin_entries(raw_plugins, catalog, problems, warnings)
    entries = _plugin_entries(conv, raw_plugins, problems)
    if not raw_plugins:
        warnings.append("no plugins configured: kidecar will only serve its admin endpoints")
    plugins = _configured_plugins(conv, entries, catalog, problems)
    for plugin in plugins:
        warnings.extend(config_warnings(plugin.config, f"{plugin.path}.config"))
    if problems:
        raise ConfigError(problems)
    assert top is not None
    top = attrs.evolve(top, plugins=tuple(e for _, e in entries))
    return LoadedConfig(top, tuple(plugins), tuple(warnings))


def go_plugin_entries(
    raw: Any, catalog: PluginCatalog, problems: list[Problem], warnings: list[str]
) -> list[Any]:
    """``plugins`` as a list of entries, accepting two spellings of the Go version's configs.

    * ``plugins`` as a (non-empty) mapping of name to entry (the Go version's format until
      October 2024, ``map[string]PluginConfig`` keyed by the plugin's name): entries in file
      order, ``name`` defaulting to the key; reported as ``plugins[0]``, ``plugins[1]``, ...
    * ``bootOrder`` inside an entry's ``config`` (a plugin-level key one level too deep, which the
      Go version silently ignored): used as the entry's ``bootOrder``, with a warning, unless the
      plugin's own config has such a key or the entry sets its own.
    """
    if isinstance(raw, dict) and raw:
        raw = _plugins_from_mapping(raw, problems)
        warnings.append(
            "plugins: a mapping of name to plugin is the Go version's old format; it still "
            "loads (as plugins[0], plugins[1], ... in file order), write a list instead"
        )
    if not isinstance(raw, list):
        problems.append(Problem("plugins", f"expected a list, got {describe_value(raw)}"))
        return []
    return [_hoist_boot_order(i, item, catalog, problems, warnings) for i, item in enumerate(raw)]


def _plugins_from_mapping(raw: dict[Any, Any], problems: list[Problem]) -> list[Any]:
    entries: list[Any] = []
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            entries.append(entry)  # structured (and reported) as plugins[i] like any entry
            continue
        name_key = next((k for k in entry if str(k).lower() == "name"), None)
        if name_key is None:
            entry = {"name": str(key), **entry}
        elif entry[name_key] != key:
            problems.append(
                Problem(f"plugins.{key}.name", f"{entry[name_key]!r} differs from its key {key!r}")
            )
        entries.append(entry)
    return entries


def _hoist_boot_order(
    index: int, item: Any, catalog: PluginCatalog, problems: list[Problem], warnings: list[str]
) -> Any:
    config = item.get("config") if isinstance(item, dict) else None
    if not isinstance(config, dict):
        return item
    key = next((k for k in config if _is_boot_order(k)), None)
    schema = catalog.schema_for(str(item.get("name"))) if key is not None else None
    if key is None or (
        schema is not None and any(_is_boot_order(a.name) for a in attrs.fields(schema))
    ):
        return item
    path = f"plugins[{index}]"
    own = next((k for k in item if _is_boot_order(k)), None)
    hoisted = {k: v for k, v in item.items() if k != "config"}
    hoisted["config"] = {k: v for k, v in config.items() if k != key}
    if own is not None and item[own] != config[key]:
        problems.append(
            Problem(f"{path}.config.{key}", f"belongs one level up, where {path}.{own} is set too")
        )
        return hoisted
    warnings.append(
        f"{path}.config.{key}: the boot order belongs one level up ({path}.bootOrder); "
        "used as such (the Go version ignored it there)"
    )
    hoisted[own or "bootOrder"] = config[key]
    return hoisted


def _is_boot_order(key: Any) -> bool:
    return str(key).replace("_", "").replace("-", "").lower() == "bootorder"


def _split_plugins(raw: Any) -> tuple[Any, Any]:
    """(the top level without ``plugins``, the raw ``plugins`` value or ``[]``)."""
    if not isinstance(raw, dict):
        return raw, []
    raw = dict(raw)
    key = next((k for k in raw if str(k).lower() == "plugins"), None)
    if key is None:
        return raw, []
    plugins = raw.pop(key)
    return raw, [] if plugins is None else plugins


def _plugin_entries(
    conv: Converter, raw_plugins: list[Any], problems: list[Problem]
) -> list[tuple[int, PluginEntry]]:
    entries: list[tuple[int, PluginEntry]] = []
    for i, item in enumerate(raw_plugins):
        try:
            entries.append((i, conv.structure(item, PluginEntry, f"plugins[{i}]")))
        except ConfigError as e:
            problems.extend(e.problems)
    return entries


def _configured_plugins(
    conv: Converter,
    entries: list[tuple[int, PluginEntry]],
    catalog: PluginCatalog,
    problems: list[Problem],
) -> list[ConfiguredPlugin]:
    plugins: list[ConfiguredPlugin] = []
    seen: dict[str, int] = {}
    for i, entry in entries:
        path = f"plugins[{i}]"
        if entry.name in seen:
            message = f"plugin {entry.name!r} is already configured at plugins[{seen[entry.name]}]"
            problems.append(Problem(f"{path}.name", message))
            continue
        seen[entry.name] = i
        if entry.name not in catalog.installed:
            problems.append(Problem(f"{path}.name", _not_installed(entry.name, catalog)))
            continue
        schema = catalog.schema_for(entry.name)
        structured: Any = None
        try:
            if schema is not None:
                structured = conv.structure(dict(entry.config), schema, f"{path}.config")
            elif entry.config:
                raise ConfigError.single(f"{path}.config", f"plugin {entry.name!r} takes no config")
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        plugins.append(ConfiguredPlugin(entry.name, entry.bootorder, i, structured))
    return plugins


def _not_installed(name: str, catalog: PluginCatalog) -> str:
    if name in catalog.broken:
        return (
            f"plugin {name!r} is installed but broken: {catalog.broken[name]}; fix or reinstall "
            f"the distribution that provides it"
        )
    if name in catalog.disabled:
        return (
            f"plugin {name!r} is installed but disabled by KIDECAR_PLUGINS/"
            f"KIDECAR_DISABLE_PLUGINS; enable it or remove it from the config"
        )
    installed = ", ".join(sorted(catalog.installed)) or "none"
    dist = "kidecar-" + name.replace("_", "-")
    return (
        f"plugin {name!r} is not installed; installed: {installed}"
        f"{suggest(name, list(catalog.installed))}. Install the distribution that provides it "
        f"(for example `pip install {dist}`), or fix the name"
    )


def default_config_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("KIDECAR_CONFIG") or DEFAULT_CONFIG_PATH

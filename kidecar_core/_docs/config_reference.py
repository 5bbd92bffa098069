"""The configuration reference: the top level, each service plugin's config, each storage type.

Every config class is rendered as a table (key and accepted spellings, type, default,
description from ``field(doc=...)`` plus the constraints of known validators); nested attrs
classes (directly, in lists, as map values) get a table of their own under their path.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from kidecar_core._config.loader import DEFAULT_CONFIG_PATH, KidecarConfig
from kidecar_core._config.schema import (
    _ALIASES,
    _norm,
    config_key,
    field_doc,
    non_empty,
    non_negative,
)
from kidecar_core._config.schema import positive as positive_validator
from kidecar_core._config.strict_yaml import MAX_ALIAS_EXPANSION, MAX_DEPTH, MAX_FILE_BYTES
from kidecar_core._docs.markdown import GENERATED, cell, rst_to_markdown
from kidecar_core._persist.result import StorageConfig
from kidecar_core._plugins.manager import Plugins

DISTRIBUTION = "kidecar"
"""By default only this distribution's plugins are documented: the committed reference must
not depend on which third-party plugins happen to be installed."""

_SCALARS = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Any: "any",
    object: "any",
}
_CONSTRAINTS = {
    positive_validator: "Must be > 0.",
    non_negative: "Must be ≥ 0.",
    non_empty: "Must not be empty.",
}


@attrs.frozen
class _Section:
    """One config class rendered as a table, at ``path`` (``plugins[]``, ``signal``, ...)."""

    path: str
    cls: type


def _inner(tp: Any) -> Any:
    """``X | None`` → ``X``; other types unchanged."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def type_text(tp: Any) -> str:
    """How a field's type reads in the reference."""
    tp = _inner(tp)
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return type_text(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(a) for a in get_args(tp) if a is not type(None))
    if origin in (list, tuple) or tp in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {type_text(args[0])}" if args else "list"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        kv = get_args(tp)
        return f"map of {type_text(kv[0])} to {type_text(kv[1])}" if kv else "map"
    if tp is StorageConfig:
        return "[storage config](#storage-types)"
    if attrs.has(tp):
        return "object"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _nested(tp: Any) -> tuple[str, type] | None:
    """The attrs class a field holds (directly, in a list or as map values) and its path suffix."""
    tp = _inner(tp)
    origin = get_origin(tp)
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = _nested(args[0]) if args else None
        return (f"[]{inner[0]}", inner[1]) if inner else None
    if origin in (dict, Mapping):
        kv = get_args(tp)
        inner = _nested(kv[1]) if len(kv) == 2 else None
        return (f".<name>{inner[0]}", inner[1]) if inner else None
    if attrs.has(tp) and tp is not StorageConfig:
        return ("", tp)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def default_text(a: attrs.Attribute[Any]) -> str:
    """The default of a field as YAML would spell it, or *required*."""
    default: Any = a.default
    if default is attrs.NOTHING:
        return "**required**"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return "computed"
        default = default.factory()
    if default is None:
        return "unset"
    if attrs.has(type(default)):
        return "`{}`" if default == type(default)() else "see below"
    return f"`{json.dumps(_plain(default), ensure_ascii=False)}`"


def key_text(a: attrs.Attribute[Any]) -> str:
    """The documented key plus the spellings that differ from it beyond case and ``_``/``-``."""
    key = config_key(a)
    others = [s for s in (*a.metadata.get(_ALIASES, ()), a.name) if _norm(s) != _norm(key)]
    also = f" (also {', '.join(f'`{s}`' for s in dict.fromkeys(others))})" if others else ""
    return f"`{key}`{also}"


def _validators(v: Any) -> list[Any]:
    if v is None:
        return []
    inner = getattr(v, "_validators", None)
    return [x for sub in inner for x in _validators(sub)] if inner else [v]


def description_text(a: attrs.Attribute[Any]) -> str:
    parts = [rst_to_markdown(field_doc(a))]
    parts += [_CONSTRAINTS[v] for v in _validators(a.validator) if v in _CONSTRAINTS]
    return cell(" ".join(p for p in parts if p))


def walk(cls: type, path: str) -> list[_Section]:
    """``cls`` and every attrs class nested in it, depth-first in field order."""
    sections = [_Section(path, cls)]
    for a in attrs.fields(attrs.resolve_types(cls)):
        nested = _nested(a.type)
        if nested is not None and nested[1] is not cls:
            sub = f"{path}.{config_key(a)}" if path else config_key(a)
            sections += walk(nested[1], sub + nested[0])
    return sections


def render_class(cls: type, path: str, heading: str) -> list[str]:
    """Tables for ``cls`` (under ``heading`` if it has no path) and its nested classes."""
    out: list[str] = []
    for section in walk(cls, path):
        if section.path != path:
            out += [f"{heading}# `{section.path}`", ""]
        doc = inspect.getdoc(section.cls)
        if doc and section.path != path:
            out += [rst_to_markdown(doc), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for a in attrs.fields(section.cls):
            out.append(
                f"| {key_text(a)} | {cell(type_text(a.type))} | {default_text(a)} "
                f"| {description_text(a)} |"
            )
        out.append("")
    return out


def render_config_reference(
    plugins: Plugins, distributions: Collection[str] | None = (DISTRIBUTION,)
) -> str:
    """The configuration reference of the loaded plugins (of ``distributions``; ``None``: all)."""

    def wanted(plugin_name: str) -> bool:
        installed = plugins.installed.get(plugin_name)
        return distributions is None or (
            installed is not None and installed.distribution in distributions
        )

    out = [
        "# Configuration reference",
        "",
        GENERATED,
        "",
        f"kidecar reads `$KIDECAR_CONFIG`, else `{DEFAULT_CONFIG_PATH}` (`kidecar run --config` "
        "and `kidecar check-config PATH` take another; a ConfigMap manifest is read as the "
        "config in its `data.config.yaml`, as `kidecar inject` reads it). Keys match "
        "case-insensitively and ignoring `_` and `-` (`bootorder` = `bootOrder`), so the Go "
        "version's spellings load unchanged; other accepted spellings are listed beside the key. "
        "Unknown keys are errors. "
        "Strings may use `${SELF:VAR}` (the sidecar's environment) and `${POD:VAR}` "
        "(`${POD:NAME}`, `${POD:NAMESPACE}`). Every problem is reported at once, with its path.",
        "",
        "**Limits of the file** (each a clear error, exit code 2, never a traceback): at most "
        f"{MAX_FILE_BYTES // 1024} KiB of UTF-8 text; a key given twice in one mapping is an "
        f"error (a second `plugins:` would silently replace the first); lists and mappings nest "
        f"at most {MAX_DEPTH} levels, aliases expanded; aliases may expand the document to at "
        f'most {MAX_ALIAS_EXPANSION:,} values (the "billion laughs"); an alias may not refer '
        "to itself. Numbers follow YAML 1.2: `1e3` is a number (a string field given it gets "
        "the text `1e3`), an integer field accepts `1e9` but not `1.5`; NaN and infinity "
        "(`.nan`, `.inf`) are refused wherever a number is meant (they pass every `> 0` check "
        "otherwise) and in free-form values (JSON cannot carry them).",
        "",
        "## Top level",
        "",
    ]
    out += render_class(KidecarConfig, "", "##")
    out += ["## Plugins", ""]
    out += [
        "Each entry of `plugins[]` names a plugin; its `config` is read into the plugin's schema "
        "below. `kidecar plugins` lists what is installed.",
        "",
    ]
    for name in sorted(n for n in plugins.service_plugins() if wanted(n)):
        schema = plugins.config_schema(name)
        out += [f"### `{name}`", "", f"Distribution `{plugins.installed[name].distribution}`."]
        if schema is None:
            out += ["Takes no `config`.", ""]
            continue
        doc = inspect.getdoc(schema)
        out += ["", *([rst_to_markdown(doc), ""] if doc else [])]
        out += render_class(schema, "", "###")
    out += _storage_types(plugins, wanted)
    return "\n".join(out).rstrip() + "\n"


def _storage_types(plugins: Plugins, wanted: Callable[[str], bool]) -> list[str]:
    """The "Storage types" section: each registered type (of a wanted plugin) and its options."""
    out = ["## Storage types", ""]
    out += [
        "A plugin's `storageConfig` says where its results go: `type` names a storage type; "
        "that type's options live under its key (`storageConfig.inKube`, ...).",
        "",
    ]
    registry = plugins.storage_types()
    for type_name in sorted(registry.types):
        st = registry.types[type_name]
        if not wanted(st.plugin):
            continue
        out += [
            f"### `{type_name}`",
            "",
            f"`storageConfig: {{type: {type_name}, {st.key}: {{...}}}}`, "
            f"registered by plugin `{st.plugin}`.",
            "",
        ]
        doc = inspect.getdoc(st.config_class)
        out += [rst_to_markdown(doc), ""] if doc else []
        out += render_class(st.config_class, st.key, "###")
    return out

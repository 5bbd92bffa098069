"""Turning parsed YAML into frozen attrs config objects, with every error reported at once.

One cattrs converter (:func:`make_converter`) structures every config class of the core and of the
plugins.  It is stricter than cattrs' defaults, because a sidecar config is typed by hand:

* keys match their field case-insensitively (``bootorder`` and ``bootOrder``, ``cpu`` and ``CPU``
  are the same key, the Go version's spellings), plus explicit aliases declared with
  :func:`field` (``markerPolices`` for ``markerPolicies``);
* unknown keys are errors with a "did you mean" hint;
* ``bool`` accepts only booleans, ``int`` only integers, ``str`` only scalars;
* every problem is collected with its path (``plugins[1].config.endpoints[0].timeout``) and raised
  as one :class:`~kidecar_core.errors.ConfigError`.

Config classes document their fields with ``field(doc=...)``; the docs generator reads them.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs
import cattrs

from kidecar_core._base.values import describe_value
from kidecar_core.errors import ConfigError, Problem, join_path

T = TypeVar("T")

_DOC = "kidecar_doc"
_ALIASES = "kidecar_aliases"
_KEY = "kidecar_key"


def field(
    *,
    doc: str,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
    aliases: tuple[str, ...] = (),
    validator: Any = None,
    converter: Any = None,
) -> Any:
    """An attrs field with user documentation and the config key(s) it is spelled with.

    ``key`` is the documented spelling (default: the attribute name); it and ``aliases`` are
    matched case-insensitively.
    """
    metadata = {_DOC: doc, _ALIASES: aliases, _KEY: key}
    if factory is not None:
        return attrs.field(
            factory=factory, metadata=metadata, validator=validator, converter=converter
        )
    return attrs.field(default=default, metadata=metadata, validator=validator, converter=converter)


def config_key(a: attrs.Attribute[Any]) -> str:
    """The documented key of a config field."""
    return str(a.metadata.get(_KEY) or a.name)


def field_doc(a: attrs.Attribute[Any]) -> str:
    return str(a.metadata.get(_DOC, ""))


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "list"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "mapping"
    if attrs.has(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def suggest(key: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` when ``key`` looks like a typo of one of ``choices``."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def make_converter(extra_hooks: Mapping[Any, Callable[[Any, Any], Any]] | None = None) -> Converter:
    """Build the converter.  ``extra_hooks`` maps types to ``(value, type) -> object`` hooks."""
    return Converter(extra_hooks or {})


class Converter:
    """The strict, error-collecting structurer (a thin layer over one ``cattrs.Converter``)."""

    def __init__(self, extra_hooks: Mapping[Any, Callable[[Any, Any], Any]]) -> None:
        self.cattrs = cattrs.Converter(forbid_extra_keys=True)
        self._extra = dict(extra_hooks)
        self.cattrs.register_structure_hook_func(attrs.has, self._structure_attrs)
        for tp, hook in self._extra.items():
            self.cattrs.register_structure_hook(tp, hook)

    def structure(self, value: Any, tp: type[T], path: str = "") -> T:
        """Structure ``value`` as ``tp``; raise :class:`ConfigError` with every problem found."""
        return typing.cast(T, self._structure(value, tp, path))

    def unstructure(self, obj: Any) -> Any:
        return self.cattrs.unstructure(obj)

    # -- dispatch --------------------------------------------------------------------------

    def _structure(self, value: Any, tp: Any, path: str) -> Any:
        if tp is object:
            return value  # structured later by another schema (a plugin's ``config``)
        if tp is Any:
            _check_finite_tree(value, path)
            return value
        origin = get_origin(tp)
        if origin is typing.Annotated:
            return self._structure(value, get_args(tp)[0], path)
        if origin in (Union, types.UnionType):
            return self._structure_union(value, tp, path)
        if origin is Literal:
            return self._structure_literal(value, tp, path)
        if origin in (list, tuple) or tp in (list, tuple):
            return self._structure_list(value, tp, path)
        if origin in (dict, Mapping) or tp in (dict, Mapping):
            return self._structure_dict(value, tp, path)
        if tp in self._extra:
            return self._structure_extra(value, tp, path)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._structure_literal(value, Literal[tuple(m.value for m in tp)], path)
        if attrs.has(tp):
            return self._structure_attrs(value, tp, path)
        scalar = _SCALARS.get(tp)
        if scalar is not None:
            return scalar(value, path)
        return self.cattrs.structure(value, tp)

    def _structure_extra(self, value: Any, tp: Any, path: str) -> Any:
        """A type with a structure function of its own (the schema's ``extra``)."""
        try:
            return self._extra[tp](value, tp)
        except ConfigError as e:
            raise e.prefixed(path) from None
        except (ValueError, TypeError) as e:
            raise ConfigError.single(path, str(e)) from None

    def _structure_union(self, value: Any, tp: Any, path: str) -> Any:
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError.single(path, f"expected {_type_name(tp)}, got null")
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:
            return self._structure(value, candidates[0], path)
        errors: list[ConfigError] = []
        for candidate in candidates:
            try:
                return self._structure(value, candidate, path)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError.single(path, f"expected {_type_name(tp)}, got {describe_value(value)}")

    def _structure_literal(self, value: Any, tp: Any, path: str) -> Any:
        allowed = get_args(tp)
        for a in allowed:
            if value == a and type(value) is type(a):
                return a
            if isinstance(value, str) and isinstance(a, str) and value.lower() == a.lower():
                return a
        choices = ", ".join(str(a) for a in allowed)
        hint = suggest(str(value), [str(a) for a in allowed]) if isinstance(value, str) else ""
        raise ConfigError.single(path, f"must be one of {choices}; got {value!r}{hint}")

    def _structure_list(self, value: Any, tp: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise ConfigError.single(path, f"expected a list, got {describe_value(value)}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items: list[Any] = []
        problems: list[Problem] = []
        for i, item in enumerate(value):
            try:
                items.append(self._structure(item, item_tp, f"{path}[{i}]"))
            except ConfigError as e:
                problems.extend(e.problems)
        if problems:
            raise ConfigError(problems)
        return tuple(items)

    def _structure_dict(self, value: Any, tp: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise ConfigError.single(path, f"expected a mapping, got {describe_value(value)}")
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        out: dict[str, Any] = {}
        problems: list[Problem] = []
        for k, v in value.items():
            sub = join_path(path, str(k))
            if not isinstance(k, str):
                problems.append(Problem(sub, f"keys must be strings, got {describe_value(k)}"))
                continue
            try:
                out[k] = self._structure(v, val_tp, sub)
            except ConfigError as e:
                problems.extend(e.problems)
        if problems:
            raise ConfigError(problems)
        return types.MappingProxyType(out)

    def _structure_attrs(self, value: Any, cls: Any, path: str = "") -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError.single(path, f"expected a mapping, got {describe_value(value)}")
        fields = attrs.fields(attrs.resolve_types(cls))
        by_key: dict[str, attrs.Attribute[Any]] = {}
        for a in fields:
            for spelling in (config_key(a), a.name, *a.metadata.get(_ALIASES, ())):
                by_key[_norm(spelling)] = a
        kwargs: dict[str, Any] = {}
        seen: dict[str, str] = {}
        problems: list[Problem] = []
        for raw_key, raw_value in value.items():
            key = str(raw_key)
            a = by_key.get(_norm(key))
            sub = join_path(path, key)
            if a is None:
                hint = suggest(key, [config_key(f) for f in fields])
                problems.append(Problem(sub, f"unknown key{hint}"))
                continue
            if a.name in seen:
                problems.append(Problem(sub, f"given twice (also as '{seen[a.name]}')"))
                continue
            seen[a.name] = key
            field_path = join_path(path, key)
            try:
                kwargs[a.name] = self._structure(raw_value, a.type, field_path)
            except ConfigError as e:
                problems.extend(e.problems)
        for a in fields:
            if a.name not in seen and a.default is attrs.NOTHING and a.init:
                problems.append(Problem(join_path(path, config_key(a)), "required key is missing"))
        # Run each field's validator on its own so that every invalid value is reported, not
        # just the first one attrs would stop at.
        for a in fields:
            if a.name in kwargs and a.validator is not None:
                try:
                    a.validator(None, a, kwargs[a.name])
                except (ValueError, TypeError) as e:
                    problems.append(_validator_problem(path, e, fields, seen))
        if problems:
            raise ConfigError(problems)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise e.prefixed(path) from None
        except (ValueError, TypeError) as e:
            raise ConfigError([_validator_problem(path, e, fields, seen)]) from None


def _check_finite(value: float, path: str) -> None:
    """NaN and infinity pass every ``> 0`` check (``.nan > 0`` is false, so is ``.nan <= 0``):
    refuse them where a number is meant."""
    if not math.isfinite(value):
        written = getattr(value, "text", str(value))
        raise ConfigError.single(path, f"must be a finite number, got {written}")


def _check_finite_tree(value: Any, path: str) -> None:
    """No NaN or infinity anywhere in a free-form value: JSON cannot carry them."""
    if isinstance(value, float):
        _check_finite(value, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite_tree(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_finite_tree(item, join_path(path, str(k)))


def _validator_problem(
    path: str, error: Exception, fields: tuple[attrs.Attribute[Any], ...], seen: dict[str, str]
) -> Problem:
    """Map an attrs validator error to the config key it is about."""
    attribute = error.args[1] if len(error.args) > 1 else None
    if isinstance(attribute, attrs.Attribute):
        key = seen.get(attribute.name, config_key(attribute))
        return Problem(join_path(path, key), str(error.args[0]))
    if isinstance(error, FieldError):
        return Problem(join_path(path, error.key), error.message)
    return Problem(path, str(error))


class FieldError(ValueError):
    """Raised by config-class validators (or ``__attrs_post_init__``) about one key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: the value must be > 0."""
    if value is not None and value <= 0:
        raise FieldError(config_key(attribute), "must be > 0")


def non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: the value must be >= 0."""
    if value is not None and value < 0:
        raise FieldError(config_key(attribute), "must be >= 0")


def non_empty(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: the string must not be empty."""
    if value is not None and not str(value).strip():
        raise FieldError(config_key(attribute), "must not be empty")


_HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MANAGED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "upgrade"})


def http_header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent as an HTTP request header (RFC 9110 §5); ``None``
    if it can. A CR or LF in a value would end the header early (header injection); the
    framing headers are kidecar's own."""
    if not _HTTP_TOKEN.match(name):
        return f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    if name.lower() in _MANAGED_HEADERS:
        return f"{name} is set by kidecar itself and cannot be configured"
    bad = next((c for c in value if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
    if bad is not None:
        return (
            f"the value of {name} contains the control character {bad!r} (line breaks and "
            "other control characters are not allowed)"
        )
    return None


def http_headers(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: every ``name: value`` of the mapping is a valid HTTP request header."""
    for name, header_value in (value or {}).items():
        problem = http_header_problem(str(name), str(header_value))
        if problem:
            raise FieldError(f"{config_key(attribute)}.{name}", problem)


def _structure_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError.single(path, f"expected true or false, got {describe_value(value)}")
    return value


def _structure_int(value: Any, path: str) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # `maxBytes: 1e9`
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError.single(path, f"expected an integer, got {describe_value(value)}")
    return value


def _structure_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError.single(path, f"expected a number, got {describe_value(value)}")
    _check_finite(value, path)
    return float(value)


def _structure_str(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if "\0" in value:
            # No path, name, URL or header may hold one; os calls raise ValueError.
            raise ConfigError.single(path, "must not contain a NUL character (\\0)")
        return value
    if isinstance(value, int | float):
        return str(getattr(value, "text", value))  # `1e3` as written, not `1000.0`
    raise ConfigError.single(path, f"expected a string, got {describe_value(value)}")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _structure_bool,
    int: _structure_int,
    float: _structure_float,
    str: _structure_str,
}
"""How a YAML/JSON scalar becomes each Python scalar type, strictly (``true`` is no int)."""

"""How a parsed YAML or JSON value is named in an error message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_value(value: Any, *, json: bool = False) -> str:
    """The kind of ``value`` in words, for "expected X, got Y" messages: ``null``, ``a boolean``,
    ``a number``, ``a string``, ``a list``, and for a mapping ``a mapping`` (YAML's word, for
    config files) or, with ``json=True``, ``an object`` (JSON's, for API bodies and JSON
    files); a type name otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object" if json else "a mapping"
    return type(value).__name__

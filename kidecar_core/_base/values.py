"""How a parsed YAML or JSON value is named in an error message."""

from __future__ import annotations

from typing import Any


def describe_value(value: Any) -> str:
    """The kind of ``value`` in words (``null``, ``a boolean``, ``a number``, ``a string``,
    ``a list``, ``a mapping``; a type name otherwise), for "expected X, got Y" messages."""
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
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__

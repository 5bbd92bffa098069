"""Warnings about a valid configuration: things kidecar accepts but a reader should look at.

A config class contributes by defining ``config_warnings(self) -> Iterable[tuple[str, str]]``:
(key path below the object, message) pairs, e.g. ``("gameServerOpsState", "'Draining' is not
...")``.  :func:`config_warnings` walks a structured config (attrs objects, lists, mappings,
storage configs) and returns each warning with its full path, the way problems are reported:
``plugins[0].config.storageConfig.inKube.markerPolicies[1].gameServerOpsState: ...``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from kidecar_core._config.schema import config_key
from kidecar_core._persist.result import StorageConfig
from kidecar_core.errors import join_path


def config_warnings(obj: Any, path: str = "") -> list[str]:
    """Every warning of the structured config ``obj`` at ``path`` (see the module docstring)."""
    return list(_walk(obj, path))


def _walk(obj: Any, path: str) -> Iterator[str]:
    own = getattr(obj, "config_warnings", None)
    if callable(own) and attrs.has(type(obj)):
        for sub, message in own():
            yield f"{join_path(path, sub)}: {message}"
    for child, child_path in _children(obj, path):
        yield from _walk(child, child_path)


def _children(obj: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The values inside ``obj`` with their paths: a storage config's options, an attrs
    object's fields (by config key), a mapping's values, a list's items; nothing for a scalar."""
    if isinstance(obj, StorageConfig):
        for key, options in obj.options.items():
            yield options, join_path(path, key)
    elif attrs.has(type(obj)):
        for a in attrs.fields(type(obj)):
            yield getattr(obj, a.name), join_path(path, config_key(a))
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield value, join_path(path, str(key))
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield item, f"{path}[{i}]"

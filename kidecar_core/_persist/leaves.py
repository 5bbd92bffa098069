"""The desired state's unit: a *leaf*, one value at one path of an object.

A merge patch is flattened into leaves (``{"spec": {"opsState": "Allocated"}}`` →
``("spec", "opsState") → "Allocated"``); the applier keeps one :class:`Leaf` per path and object,
compares leaves with the live object and turns the ones that differ back into one merge patch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from kidecar_core._persist.write import FieldNotIn
from kidecar_core._store.objects import JSON, Event

Path = tuple[str, ...]
"""The keys from the object's root to a value: ``("metadata", "labels", "app")``."""

MISSING: Any = object()
"""What :func:`lookup` returns for a path that is not in the object."""


@attrs.frozen
class Leaf:
    """One desired value: where it comes from (``source``, a config path), the guards that may
    hold it back, the Event to record when it changes the object, and whether it is written
    only once (``once``: not re-asserted afterwards)."""

    value: JSON
    source: str
    guards: tuple[FieldNotIn, ...] = ()
    event: Event | None = None
    once: bool = False


def flatten(patch: Mapping[str, JSON], prefix: Path = ()) -> dict[Path, JSON]:
    """Leaves of a merge patch: nested mappings are descended, everything else is a value."""
    out: dict[Path, JSON] = {}
    for key, value in patch.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path))
        elif isinstance(value, Mapping):
            continue
        else:
            out[path] = value
    return out


def unflatten(leaves: Iterable[tuple[Path, JSON]]) -> dict[str, JSON]:
    """The merge patch of some leaves (the inverse of :func:`flatten`)."""
    out: dict[str, JSON] = {}
    for path, value in leaves:
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def lookup(obj: Any, path: Path) -> Any:
    """The value at ``path`` in ``obj``, or :data:`MISSING`."""
    node = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    return node


def pointer_path(pointer: str) -> Path:
    """RFC 6901 pointer → path tuple: ``/metadata/labels/a~1b`` → ``(metadata, labels, a/b)``."""
    if not pointer:
        return ()
    parts = pointer.lstrip("/").split("/")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in parts)


def holds(live: Any, path: Path, value: JSON) -> bool:
    """Whether the live object already has ``value`` at ``path`` (``None`` = absent)."""
    current = lookup(live, path)
    if value is None:
        return current is MISSING or current is None
    return current is not MISSING and current == value and type(current) is type(value)


def dotted(path: Path) -> str:
    """``("spec", "opsState")`` → ``spec.opsState``, for messages."""
    return ".".join(path)

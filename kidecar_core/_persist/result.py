"""What plugins produce: :class:`Result`, and where results are stored: :class:`StorageConfig`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from kidecar_core._persist.write import Write
from kidecar_core._store.objects import Event

ResultValue: TypeAlias = (
    "str | int | float | bool | Sequence[ResultValue] | Mapping[str, ResultValue] | None"
)
"""A value of :attr:`Result.data`: what JSON can hold (a string, a number, a boolean, ``None``, a
list or a string-keyed mapping of these), so that every consumer (an override writing an audit
log, a custom storage type, the metrics) can serialise it."""

ResultData: TypeAlias = Mapping[str, ResultValue]
"""The type of :attr:`Result.data`: plugin-specific details keyed by name, e.g. http_probe's
``{"endpoint": 0, "url": "http://...", "previous": "Allocated", "reason": "HTTP 503", ...}``."""


def result_data_problem(data: object) -> str | None:
    """Why ``data`` is not a :data:`ResultData` (``"data.peers[1]: a datetime is not a JSON
    value"``), or ``None`` when it is one."""
    if not isinstance(data, Mapping):
        return f"data: must be a mapping with string keys, not a {type(data).__name__}"
    return _value_problem(data, "data")


def _value_problem(value: object, path: str) -> str | None:
    """Mappings need string keys; str and bytes are not lists, every other sequence is one."""
    if isinstance(value, str | int | float | bool) or value is None:
        return None
    if isinstance(value, Mapping):
        items: list[tuple[str, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string"
            items.append((f"{path}.{key}", item))
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return f"{path}: a {type(value).__name__} is not a JSON value"
    return next((p for where, item in items if (p := _value_problem(item, where))), None)


@attrs.frozen
class StorageConfig:
    """A plugin's ``storageConfig``: which storage type handles its results, and their options.

    ``options`` maps each storage type's config key (``inKube``, ``httpMetric``, ...) to that
    type's structured config object.  Storage types are registered by plugins through
    ``kidecar_register_storage_types``; the converter validates the keys against that registry.
    """

    type: str
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def get(self, key: str) -> Any:
        """The structured options of one storage type (``None`` when not configured)."""
        return self.options.get(key)


@attrs.frozen
class Result:
    """One outcome of a plugin: a probe state, a hot-update outcome, ...

    ``state`` is the string that storage backends record (an annotation value, a label, the key
    matched against ``markerPolices[].state``).  ``storage`` says where to record it and
    ``source`` is the config path of that storage config, for error messages.  ``data`` carries
    plugin-specific details (for metrics, overrides or custom backends) as a :data:`ResultData`:
    string keys, JSON values (each plugin documents its keys); ``writes`` are extra writes the
    plugin asks for directly (e.g. hot_update's result ConfigMap) and ``events`` Events about the
    pod.
    """

    plugin: str
    state: str
    storage: StorageConfig | None = None
    source: str = ""
    kind: str = ""
    data: ResultData = attrs.field(factory=dict)
    writes: tuple[Write, ...] = ()
    events: tuple[Event, ...] = ()
    at: float = attrs.field(factory=time.time)

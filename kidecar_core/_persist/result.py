"""What plugins produce: :class:`Result`, and where results are stored: :class:`StorageConfig`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core._persist.write import Write
from kidecar_core._store.objects import Event


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
    plugin-specific details (for metrics or custom backends); ``writes`` are extra writes the
    plugin asks for directly (e.g. hot_update's result ConfigMap) and ``events`` Events about the
    pod.
    """

    plugin: str
    state: str
    storage: StorageConfig | None = None
    source: str = ""
    kind: str = ""
    data: Mapping[str, Any] = attrs.field(factory=dict)
    writes: tuple[Write, ...] = ()
    events: tuple[Event, ...] = ()
    at: float = attrs.field(factory=time.time)

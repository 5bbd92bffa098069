"""kidecar: a pluggable sidecar for OpenKruiseGame game-server pods.

Plugin authors import what they need from here::

    from kidecar_core import hookimpl, Result, Write, ObjectRef, field
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from kidecar_core._config.schema import FieldError, field, non_empty, non_negative, positive
from kidecar_core._inject.podspec import ContainerPort, PodRequirements, SharedVolume
from kidecar_core._persist.result import Result, StorageConfig
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._plugins.context import PluginContext, RuntimeView
from kidecar_core._plugins.registry import RouteRegistry, StorageTypeRegistry
from kidecar_core._runtime.metrics import Metrics
from kidecar_core._runtime.schedule import every
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity
from kidecar_core.errors import (
    ConfigError,
    KidecarError,
    PermanentPersistError,
    PersistError,
    StartupError,
    TransientPersistError,
)
from kidecar_core.hookspecs import hookimpl, hookspec

try:
    __version__ = version("kidecar")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigError",
    "ContainerPort",
    "Event",
    "FieldError",
    "FieldNotIn",
    "KidecarError",
    "Metrics",
    "ObjectRef",
    "PermanentPersistError",
    "PersistError",
    "PluginContext",
    "PodIdentity",
    "PodRequirements",
    "Result",
    "RouteRegistry",
    "RuntimeView",
    "SharedVolume",
    "StartupError",
    "StorageConfig",
    "StorageTypeRegistry",
    "TransientPersistError",
    "Write",
    "__version__",
    "every",
    "field",
    "hookimpl",
    "hookspec",
    "non_empty",
    "non_negative",
    "positive",
]

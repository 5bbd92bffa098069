"""kidecar: a pluggable sidecar for OpenKruiseGame game-server pods.

Plugin authors import what they need from here::

    from kidecar_core import hookimpl, Result, Write, ObjectRef, field
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from kidecar_core.errors import (
    ConfigError,
    KidecarError,
    PermanentPersistError,
    PersistError,
    StartupError,
    TransientPersistError,
)
from kidecar_core.hookspecs import hookimpl, hookspec
from kidecar_core.objects import Event, FieldNotIn, ObjectRef, PodIdentity, Write
from kidecar_core.results import Result, StorageConfig
from kidecar_core.schedule import every
from kidecar_core.schema import FieldError, field

try:
    __version__ = version("kidecar")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigError",
    "Event",
    "FieldError",
    "FieldNotIn",
    "KidecarError",
    "ObjectRef",
    "PermanentPersistError",
    "PersistError",
    "PodIdentity",
    "Result",
    "StartupError",
    "StorageConfig",
    "TransientPersistError",
    "Write",
    "__version__",
    "every",
    "field",
    "hookimpl",
    "hookspec",
]

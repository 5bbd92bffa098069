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
from kidecar_core._probe.loop import (
    ProbeChange,
    ProbeLoop,
    ProbeMetrics,
    ProbeOutcome,
    first_probe_delay,
)
from kidecar_core._probe.thresholds import PROBE_FAILED, ProbeThresholds
from kidecar_core._probe.timing import MIN_PROBE_PERIOD, ProbeSchedule, ProbeTiming
from kidecar_core._runtime.clock import LOOP_CLOCK, Clock, LoopClock, ManualClock
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
    "LOOP_CLOCK",
    "MIN_PROBE_PERIOD",
    "PROBE_FAILED",
    "Clock",
    "ConfigError",
    "ContainerPort",
    "Event",
    "FieldError",
    "FieldNotIn",
    "KidecarError",
    "LoopClock",
    "ManualClock",
    "Metrics",
    "ObjectRef",
    "PermanentPersistError",
    "PersistError",
    "PluginContext",
    "PodIdentity",
    "PodRequirements",
    "ProbeChange",
    "ProbeLoop",
    "ProbeMetrics",
    "ProbeOutcome",
    "ProbeSchedule",
    "ProbeThresholds",
    "ProbeTiming",
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
    "first_probe_delay",
    "hookimpl",
    "hookspec",
    "non_empty",
    "non_negative",
    "positive",
]

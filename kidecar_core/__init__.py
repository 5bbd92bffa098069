"""kidecar: a pluggable sidecar for OpenKruiseGame game-server pods.

This module is the public API: plugin authors import what they need from here (and from
:mod:`kidecar_core.hookspecs`, :mod:`kidecar_core.errors` and :mod:`kidecar_core.testing`)::

    from kidecar_core import hookimpl, PluginContext, Result, StateKey, Write, ObjectRef, field

Everything in an underscored subpackage (``kidecar_core._runtime`` ...) is private and may change
in any release; ``make lint`` checks that the built-in plugins import nothing of it.
"""

from __future__ import annotations

from kidecar_core._base.backoff import Backoff
from kidecar_core._base.clock import LOOP_CLOCK, Clock, LoopClock, ManualClock, process_start
from kidecar_core._base.files import NotRegularFileError, read_regular_file
from kidecar_core._base.metrics import Metrics
from kidecar_core._base.schedule import every
from kidecar_core._base.values import describe_value
from kidecar_core._config.listen import ListenAddress, loopback_only, parse_listen
from kidecar_core._config.schema import (
    FieldError,
    field,
    http_headers,
    non_empty,
    non_negative,
    positive,
)
from kidecar_core._persist.fields import KNOWN_OPS_STATES
from kidecar_core._persist.result import Result, ResultData, ResultValue, StorageConfig
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._plugins.context import PluginContext, RuntimeView
from kidecar_core._plugins.podspec import ContainerPort, PodRequirements, SharedVolume
from kidecar_core._plugins.registry import RouteRegistry, StorageTypeRegistry
from kidecar_core._plugins.state import PluginState, StateKey
from kidecar_core._probe.loop import (
    ProbeChange,
    ProbeLoop,
    ProbeMetrics,
    ProbeOutcome,
    first_probe_delay,
)
from kidecar_core._probe.thresholds import PROBE_FAILED, ProbeThresholds
from kidecar_core._probe.timing import MIN_PROBE_PERIOD, ProbeSchedule, ProbeTiming
from kidecar_core._runtime.auth import AuthFailure, BearerAuth, TokenSource
from kidecar_core._runtime.logs import LogBudget
from kidecar_core._store.objects import Event, ObjectRef, PodIdentity
from kidecar_core._store.rollout import (
    PROGRESS_ANNOTATION,
    ROLLOUT_CONFIGMAP,
    PodProgress,
    Rollout,
    RolloutError,
    RolloutPhase,
    RolloutTarget,
    Workload,
    change_rollout,
    configmap_ref,
    rollout_in,
    utc_now,
)
from kidecar_core._store.rollout_leases import (
    FailurePause,
    effective_pause,
    micro_time,
    read_failure_pause,
    record_failure_pause,
    rollout_lease_labels,
    rollout_lease_ref,
)
from kidecar_core._store.validation import (
    annotation_key_problem,
    annotations_size_problem,
    is_dns1123_subdomain,
    label_value_problem,
    pointer_value_problem,
    qualified_name_problem,
)
from kidecar_core._version import __version__
from kidecar_core.errors import (
    ConfigError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    KidecarError,
    NotFoundError,
    PermanentPersistError,
    PersistError,
    Problem,
    StartupError,
    TransientPersistError,
)
from kidecar_core.hookspecs import hookimpl, hookspec
from kidecar_core.redact import redact_text, redact_url

__all__ = [
    "KNOWN_OPS_STATES",
    "LOOP_CLOCK",
    "MIN_PROBE_PERIOD",
    "PROBE_FAILED",
    "PROGRESS_ANNOTATION",
    "ROLLOUT_CONFIGMAP",
    "AuthFailure",
    "Backoff",
    "BearerAuth",
    "Clock",
    "ConfigError",
    "ConflictError",
    "ContainerPort",
    "Event",
    "FailurePause",
    "FieldError",
    "FieldNotIn",
    "ForbiddenError",
    "InvalidError",
    "KidecarError",
    "ListenAddress",
    "LogBudget",
    "LoopClock",
    "ManualClock",
    "Metrics",
    "NotFoundError",
    "NotRegularFileError",
    "ObjectRef",
    "PermanentPersistError",
    "PersistError",
    "PluginContext",
    "PluginState",
    "PodIdentity",
    "PodProgress",
    "PodRequirements",
    "ProbeChange",
    "ProbeLoop",
    "ProbeMetrics",
    "ProbeOutcome",
    "ProbeSchedule",
    "ProbeThresholds",
    "ProbeTiming",
    "Problem",
    "Result",
    "ResultData",
    "ResultValue",
    "Rollout",
    "RolloutError",
    "RolloutPhase",
    "RolloutTarget",
    "RouteRegistry",
    "RuntimeView",
    "SharedVolume",
    "StartupError",
    "StateKey",
    "StorageConfig",
    "StorageTypeRegistry",
    "TokenSource",
    "TransientPersistError",
    "Workload",
    "Write",
    "__version__",
    "annotation_key_problem",
    "annotations_size_problem",
    "change_rollout",
    "configmap_ref",
    "describe_value",
    "effective_pause",
    "every",
    "field",
    "first_probe_delay",
    "hookimpl",
    "hookspec",
    "http_headers",
    "is_dns1123_subdomain",
    "label_value_problem",
    "loopback_only",
    "micro_time",
    "non_empty",
    "non_negative",
    "parse_listen",
    "pointer_value_problem",
    "positive",
    "process_start",
    "qualified_name_problem",
    "read_failure_pause",
    "read_regular_file",
    "record_failure_pause",
    "redact_text",
    "redact_url",
    "rollout_in",
    "rollout_lease_labels",
    "rollout_lease_ref",
    "utc_now",
]

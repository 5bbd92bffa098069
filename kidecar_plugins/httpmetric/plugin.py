"""The ``HTTPMetric`` storage type: a numeric result exported as a Prometheus gauge.

``storageConfig: {type: HTTPMetric, httpMetric: {metricName: game_players}}`` sets the gauge
``game_players{plugin="http_probe",source="..."}`` on the admin server's ``/metrics`` to the
result.  A result that is not a number (``Failed``, ``idle``) sets the gauge to NaN and is
logged once per source, so a dashboard shows a gap instead of a stale value.
"""

from __future__ import annotations

import logging
import math
import re

import attrs

from kidecar_core import FieldError, Result, RuntimeView, StorageTypeRegistry, field, hookimpl

TYPE = "HTTPMetric"
KEY = "httpMetric"
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

log = logging.getLogger("kidecar.plugin.httpmetric")


@attrs.frozen
class HTTPMetricConfig:
    """Export the numeric result as a gauge."""

    metric_name: str = field(
        key="metricName", default="kidecar_probe_value", doc="Prometheus gauge name."
    )
    help: str = field(default="Numeric result reported by a kidecar plugin.", doc="Gauge help.")

    def __attrs_post_init__(self) -> None:
        if not _METRIC_NAME.match(self.metric_name):
            raise FieldError("metricName", f"{self.metric_name!r} is not a valid Prometheus name")


@hookimpl
def kidecar_register_storage_types(register: StorageTypeRegistry) -> None:
    register.storage_type(TYPE, key=KEY, config_class=HTTPMetricConfig)


@hookimpl
def kidecar_on_result(result: Result, runtime: RuntimeView) -> None:
    if result.storage is None or result.storage.type != TYPE:
        return
    cfg: HTTPMetricConfig = result.storage.get(KEY)
    try:
        gauge = runtime.metrics.gauge(cfg.metric_name, cfg.help, ["plugin", "source"])
    except ValueError as e:  # the name is taken by another metric (of kidecar or a plugin)
        if runtime.first_time(("httpmetric-name", cfg.metric_name)):
            log.error("%s.httpMetric.metricName: %s; choose another name", result.source, e)
        return
    try:
        value = float(result.state)
    except ValueError:
        value = math.nan
        if runtime.first_time(("httpmetric-nan", result.source)):
            log.warning(
                "%s: result %r is not a number; %s set to NaN",
                result.source,
                result.state,
                cfg.metric_name,
            )
    gauge.labels(result.plugin, result.source).set(value)

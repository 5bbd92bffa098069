"""Prometheus metrics of one runtime, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The core's metrics plus get-or-create helpers for plugins' own metrics.

    Metric names are prefixed ``kidecar_``; plugins pick their own names (a gauge asked for twice
    with the same name is the same gauge).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._own: dict[str, Any] = {}
        self.plugin_up = Gauge(
            "kidecar_plugin_up",
            "1 while the plugin is running, 0 while it is down (failed or backing off).",
            ["plugin"],
            registry=self.registry,
        )
        self.plugin_restarts = Counter(
            "kidecar_plugin_restarts",
            "Times a plugin was restarted after a failure.",
            ["plugin"],
            registry=self.registry,
        )
        self.tick_duration = Histogram(
            "kidecar_tick_duration_seconds",
            "Duration of kidecar_tick (including the awaitable it returned).",
            ["plugin"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.results = Counter(
            "kidecar_results",
            "Results emitted by plugins.",
            ["plugin", "kind"],
            registry=self.registry,
        )
        self.persist_writes = Counter(
            "kidecar_persist_writes",
            "Write requests (patch/create) sent to the object store, by resource.",
            ["resource", "verb"],
            registry=self.registry,
        )
        self.persist_failures = Counter(
            "kidecar_persist_failures",
            "Failed write attempts, by resource and reason.",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.persist_reverts = Counter(
            "kidecar_persist_reverts",
            "Changes by another writer that undid a field kidecar owns (each one re-asserted).",
            ["resource", "field"],
            registry=self.registry,
        )
        self.persist_contested = Gauge(
            "kidecar_persist_contested_fields",
            "1 while another writer keeps reverting the field (contested), else 0.",
            ["resource", "field"],
            registry=self.registry,
        )
        self.persist_pending = Gauge(
            "kidecar_persist_pending_objects",
            "Objects whose desired state is not written yet.",
            registry=self.registry,
        )

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return cast(Gauge, self._get_or_create(Gauge, name, documentation, labelnames))

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return cast(Counter, self._get_or_create(Counter, name, documentation, labelnames))

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Histogram:
        return cast(Histogram, self._get_or_create(Histogram, name, documentation, labelnames))

    def _get_or_create(
        self, kind: type[Any], name: str, documentation: str, labelnames: Sequence[str]
    ) -> Any:
        existing = self._own.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError(f"metric {name!r} already exists as a {type(existing).__name__}")
            return existing
        metric = kind(name, documentation, list(labelnames), registry=self.registry)
        self._own[name] = metric
        return metric

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

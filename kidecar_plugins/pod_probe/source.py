"""Where the probes come from: the pod's annotation, PodProbeMarkers, kidecar's config.

* **The annotation** ``kruise.io/podprobe`` (Kruise's serverless protocol), read from the pod as
  :func:`follow` (the core's watch) sees it: a change restarts the probes that changed.  An
  annotation that is not valid JSON is reported and the probes it last described keep running
  (a bad edit does not stop the game's probing); a bad entry is reported and only that probe is
  not run.
* **PodProbeMarkers** (option ``podProbeMarkers``), when the pod has no annotation: the
  markers of the pod's namespace whose selector matches its labels, filtered as Kruise's
  webhook filters them (probes with a ``podConditionType`` and a container of the pod).
* **Static probes** from kidecar's config.

A condition type (and a container/probe name pair) is written by one probe only: the
annotation's wins over a PodProbeMarker's, which wins over the config's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from kidecar_core import ObjectRef, PersistError, PluginContext
from kidecar_plugins.pod_probe.config import PodProbeConfig
from kidecar_plugins.pod_probe.spec import (
    HTTPGetAction,
    PodProbe,
    SpecError,
    TCPSocketAction,
    parse_entry,
    parse_probe_list,
    resolve_port,
)

ANNOTATION = "kruise.io/podprobe"
"""Kruise's ``PodProbeMarkerAnnotationKey``."""

POD_PROBE_MARKER = ObjectRef("apps.kruise.io", "v1alpha1", "podprobemarkers", "", "")


async def follow(ctx: PluginContext, ref: ObjectRef) -> AsyncIterator[dict[str, Any] | None]:
    """The object now and after each change (``None`` while it does not exist), forever.

    The core's watch of the object (:meth:`~kidecar_core.RuntimeView.watch_object`), which the
    core shares with its own writer of the pod: no reads at all while the
    pod does not change.  The watch recovers from errors by itself.
    """
    async for obj in ctx.watch_object(ref):
        yield obj


@attrs.frozen
class Found:
    """The probes to run, and what was wrong (``"<source>: <problem>"`` sentences)."""

    probes: list[PodProbe]
    problems: list[str]


def selects(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a ``metav1.LabelSelector`` matches ``labels``; an empty or missing selector
    matches nothing (Kruise's rule for PodProbeMarkers)."""
    if not isinstance(selector, Mapping):
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(_expression(e, labels) for e in expressions)


def _expression(e: Any, labels: Mapping[str, str]) -> bool:
    if not isinstance(e, Mapping):
        return False
    key, operator, values = str(e.get("key")), e.get("operator"), e.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def pod_containers(pod: Mapping[str, Any]) -> set[str] | None:
    """Names of the pod's containers and native sidecars; ``None`` when the pod has no spec."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping) or not spec.get("containers"):
        return None
    names = {c.get("name") for c in spec.get("containers") or [] if isinstance(c, Mapping)}
    names |= {
        c.get("name")
        for c in spec.get("initContainers") or []
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    }
    return {n for n in names if isinstance(n, str)}


def resolve(probe: PodProbe, pod: Mapping[str, Any]) -> PodProbe:
    """The probe with its container checked and a named port replaced by its number
    (:class:`SpecError` when the pod has no such container or port)."""
    containers = pod_containers(pod)
    if containers is not None and probe.container_name not in containers:
        raise SpecError("containerName", f"the pod has no container {probe.container_name!r}")
    handler = probe.handler
    if isinstance(handler, TCPSocketAction | HTTPGetAction) and isinstance(handler.port, str):
        try:
            port = resolve_port(handler.port, probe.container_name, pod)
        except SpecError as e:
            raise SpecError(f"probe.{probe.kind}.port", e.problem.message) from None
        return attrs.evolve(probe, handler=attrs.evolve(handler, port=port))
    return probe


class ProbeSources:
    """Assembles the probes of the pod from its annotation, PodProbeMarkers and the config."""

    def __init__(self, ctx: PluginContext, config: PodProbeConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.static = config.static_probes(ctx.config_path("probes"))
        self._annotation: tuple[str, list[PodProbe], list[str]] | None = None
        self._markers: tuple[float, list[PodProbe], list[str]] | None = None

    async def find(self, pod: Mapping[str, Any]) -> Found:
        """The probes to run for ``pod`` as it is now."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        text = annotations.get(ANNOTATION)
        problems: list[str] = []
        if isinstance(text, str):
            first, problems = self._from_annotation(text)
        elif self.config.pod_probe_markers:
            first, problems = await self._from_markers(pod)
        else:
            first = []
        chosen: dict[tuple[str, str], PodProbe] = {}
        conditions: set[str] = set()
        for probe in [*first, *self.static]:
            if probe.key in chosen or probe.condition_type in conditions:
                continue  # a probe of a stronger source writes that condition
            try:
                resolved = resolve(probe, pod)
            except SpecError as e:
                problems.append(f"{probe.source}.{e.problem}")
                continue
            chosen[probe.key] = resolved
            conditions.add(probe.condition_type)
        return Found(list(chosen.values()), problems)

    def _from_annotation(self, text: str) -> tuple[list[PodProbe], list[str]]:
        source = f"annotation {ANNOTATION}"
        if self._annotation is not None and self._annotation[0] == text:
            return self._annotation[1], self._annotation[2]
        try:
            value = json.loads(text)
        except ValueError as e:
            kept = self._annotation[1] if self._annotation is not None else []
            note = f" (still running the {len(kept)} probe(s) it described before)" if kept else ""
            return kept, [f"{source} is not valid JSON: {e}{note}"]
        probes, problems = parse_probe_list(value, source)
        found = [f"{source}{p}" if p.path.startswith("[") else f"{source}: {p}" for p in problems]
        self._annotation = (text, probes, found)
        return probes, found

    async def _from_markers(self, pod: Mapping[str, Any]) -> tuple[list[PodProbe], list[str]]:
        now = time.monotonic()
        period = self.config.pod_probe_markers_period_seconds
        if self._markers is not None and now - self._markers[0] < period:
            return self._markers[1], self._markers[2]
        ref = attrs.evolve(POD_PROBE_MARKER, namespace=self.ctx.identity.namespace)
        try:
            markers = await self.ctx.list_objects(ref)
        except PersistError as e:
            if self._markers is None:
                return [], [f"cannot list PodProbeMarkers: {e}"]
            return self._markers[1], [f"cannot list PodProbeMarkers (keeping the last ones): {e}"]
        probes, problems = marker_probes(markers, pod)
        self._markers = (now, probes, problems)
        return probes, problems


def marker_probes(
    markers: list[dict[str, Any]], pod: Mapping[str, Any]
) -> tuple[list[PodProbe], list[str]]:
    """The probes that Kruise's webhook would write into the pod's annotation from
    ``markers``: those of selecting markers (in name order) that have a ``podConditionType``
    and a container of the pod, the first one per condition type and per container/name."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    containers = pod_containers(pod)
    probes: list[PodProbe] = []
    problems: list[str] = []
    for marker in sorted(markers, key=lambda m: str((m.get("metadata") or {}).get("name"))):
        spec = marker.get("spec") or {}
        if not selects(spec.get("selector"), labels):
            continue
        name = (marker.get("metadata") or {}).get("name")
        for i, entry in enumerate(spec.get("probes") or []):
            if not isinstance(entry, Mapping) or not entry.get("podConditionType"):
                continue
            if containers is not None and entry.get("containerName") not in containers:
                continue
            where = f"PodProbeMarker {name} spec.probes[{i}]"
            try:
                probe = parse_entry(entry, "", strict=False, source=where)
            except SpecError as e:
                problems.append(f"{where}{e.problem.path}: {e.problem.message}")
                continue
            if not any(p.key == probe.key or p.condition_type == probe.condition_type
                       for p in probes):  # fmt: skip
                probes.append(probe)
    return probes, problems

"""Configuration of the ``pod_probe`` plugin (``plugins[].config``); ``config: {}`` is enough."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core import ConfigError, field, positive
from kidecar_plugins.pod_probe.spec import PodProbe, parse_probe_list

CONFIG_SOURCE = "config probes"


@attrs.frozen
class PodProbeConfig:
    """Run Kruise's PodProbeMarker probes of the pod (annotation ``kruise.io/podprobe``) and
    write their results into the pod's conditions, as kruise-daemon does on normal nodes."""

    probes: tuple[Mapping[str, Any], ...] = field(
        factory=tuple,
        doc="Static probes for clusters without Kruise's `EnablePodProbeMarkerOnServerless` "
        "gate, in the annotation's schema: `{containerName, name, podConditionType, probe}` "
        "with `probe` a Kubernetes probe (`exec`, `tcpSocket` or `httpGet`, "
        "`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`, "
        "`failureThreshold`). A probe of the annotation (or of a PodProbeMarker) writing the "
        "same condition type wins over a static one.",
    )
    pod_probe_markers: bool = field(
        key="podProbeMarkers",
        default=False,
        doc="When the pod has no `kruise.io/podprobe` annotation, run the probes of the "
        "PodProbeMarkers (apps.kruise.io/v1alpha1) of its namespace whose selector matches the "
        "pod's labels, as Kruise's webhook would have written them. Needs RBAC `list` on "
        "`podprobemarkers.apps.kruise.io` (see deploy/README.md).",
    )
    pod_probe_markers_period_seconds: float = field(
        key="podProbeMarkersPeriodSeconds",
        default=30.0,
        validator=positive,
        doc="How often the PodProbeMarkers are listed again (one list request each time).",
    )

    def __attrs_post_init__(self) -> None:
        _, problems = parse_probe_list(list(self.probes), CONFIG_SOURCE, strict=True)
        if problems:
            found = (ConfigError.single(f"probes{e.path}", e.message) for e in problems)
            raise ConfigError(p for error in found for p in error.problems)

    def static_probes(self, source: str = CONFIG_SOURCE) -> list[PodProbe]:
        """The probes of ``probes`` (valid: they were checked when the config was loaded);
        ``source`` names them in messages (``plugins[0].config.probes``)."""
        probes, _ = parse_probe_list(list(self.probes), source, strict=True)
        return probes

"""Configuration of the ``pod_probe`` plugin (``plugins[].config``); ``config: {}`` is enough."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core import ConfigError, FieldError, field
from kidecar_plugins.pod_probe.spec import PodProbe, SpecError, parse_entry, parse_probe_list

CONFIG_SOURCE = "config probes"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_name(_: object, __: object, name: str) -> None:
    if not _DNS_LABEL.match(name):
        raise FieldError("name", f"{name!r} is not a volume name (a DNS label: a-z, 0-9, '-')")


def _check_path(_: object, __: object, path: str) -> None:
    if not path.startswith("/"):
        raise FieldError("mountPath", f"{path!r} is not an absolute path")


def _at_least_one_second(_: object, __: object, seconds: float) -> None:
    if not seconds >= 1:
        raise FieldError(
            "podProbeMarkersPeriodSeconds",
            f"must be at least 1 (one list request of the API server each period), got {seconds}",
        )


@attrs.frozen
class ProbeVolume:
    """A volume of the game that the ``exec`` probes read (its state files, its scripts)."""

    name: str = field(validator=_check_name, doc="Volume name (an `emptyDir` when created).")
    mount_path: str = field(
        key="mountPath",
        validator=_check_path,
        doc="Where the game's container and the sidecar both see it.",
    )


@attrs.frozen
class StaticProbe:
    """One probe of the pod, as in Kruise's annotation (and a PodProbeMarker's ``probes``)."""

    container_name: str = field(
        key="containerName",
        doc="The container probed: its named ports, its state in the pod status.",
    )
    name: str = field(doc="The probe's name, unique in the pod.")
    pod_condition_type: str = field(
        key="podConditionType",
        doc="The pod condition the result is written to (`game.kruise.io/<name>` for OKG).",
    )
    probe: Mapping[str, Any] = field(
        doc="A Kubernetes probe: one handler (`exec`, `tcpSocket`, `httpGet`) and "
        "`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`, "
        "`failureThreshold`."
    )

    def entry(self) -> dict[str, Any]:
        """As an annotation entry."""
        return {
            "containerName": self.container_name,
            "name": self.name,
            "podConditionType": self.pod_condition_type,
            "probe": dict(self.probe),
        }

    def __attrs_post_init__(self) -> None:
        try:
            parse_entry(self.entry(), "", strict=True)
        except SpecError as e:
            raise FieldError(e.problem.path.lstrip("."), e.problem.message) from None


@attrs.frozen
class PodProbeConfig:
    """Run Kruise's PodProbeMarker probes of the pod (annotation ``kruise.io/podprobe``) and
    write their results into the pod's conditions, as kruise-daemon does on normal nodes."""

    probes: tuple[StaticProbe, ...] = field(
        factory=tuple,
        doc="Static probes for clusters without Kruise's `EnablePodProbeMarkerOnServerless` "
        "gate, in the annotation's schema. A probe of the annotation (or of a PodProbeMarker) "
        "writing the same condition type wins over a static one.",
    )
    shared_volumes: tuple[ProbeVolume, ...] = field(
        key="sharedVolumes",
        factory=tuple,
        doc="Volumes of the game that `exec` probes need: an `exec` probe runs in the sidecar's "
        "container and sees the game's files only through volumes both mount. `kidecar "
        "inject` mounts them into the sidecar and the game's container (reusing the game's "
        "volume when it already mounts that path); `kidecar inject --sidecarset` into the "
        "sidecar.",
    )
    pod_probe_markers: bool = field(
        key="podProbeMarkers",
        default=False,
        doc="When the pod has no `kruise.io/podprobe` annotation, run the probes of the "
        "PodProbeMarkers (apps.kruise.io/v1alpha1) of its namespace whose selector matches the "
        "pod's labels, as Kruise's webhook would have written them. Needs RBAC `list` on "
        "`podprobemarkers.apps.kruise.io` (see deploy/base/rbac.yaml).",
    )
    pod_probe_markers_period_seconds: float = field(
        key="podProbeMarkersPeriodSeconds",
        default=30.0,
        validator=_at_least_one_second,
        doc="How often the PodProbeMarkers are listed again (one list request each time). At "
        "least 1.",
    )

    def __attrs_post_init__(self) -> None:
        _, problems = parse_probe_list([p.entry() for p in self.probes], "", strict=True)
        if problems:  # two probes writing one condition, or one probe listed twice
            found = (ConfigError.single(f"probes{e.path}", e.message) for e in problems)
            raise ConfigError(p for error in found for p in error.problems)

    def static_probes(self, source: str = CONFIG_SOURCE) -> list[PodProbe]:
        """The probes of ``probes`` (valid: they were checked when the config was loaded);
        ``source`` names them in messages (``plugins[0].config.probes``)."""
        probes, _ = parse_probe_list([p.entry() for p in self.probes], source, strict=True)
        return probes

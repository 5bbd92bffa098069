"""The ``pod_probe`` plugin: OKG ``serviceQualities`` on virtual nodes, without kruise-daemon.

OpenKruiseGame turns a GameServerSet's ``serviceQualities`` into a Kruise PodProbeMarker; on
normal nodes kruise-daemon runs its probes and kruise-manager writes the results into pod
conditions, which OKG turns into GameServer actions (``opsState``, priorities, labels...).  On
virtual nodes there is no kruise-daemon: with the gate ``EnablePodProbeMarkerOnServerless``
(Kruise ≥ 1.8) Kruise's webhook writes the probes into the pod's annotation
``kruise.io/podprobe`` and expects *the runtime* to run them and write the conditions.  This
plugin is that runtime part, for any virtual-kubelet provider::

    plugins:
      - name: pod_probe
        config: {}

What it does (details in the modules): follow the pod (:mod:`.source`), run each probe with
kruise-daemon's timing (:mod:`.worker`) through its handler (:mod:`.execprobe` runs commands
in the sidecar's own container, :mod:`.netprobe` ``tcpSocket`` and ``httpGet``), and write
``status.conditions[type=podConditionType]`` only on change (:mod:`.conditions`).  In local mode
the state file's pod plays the pod: its ``metadata.annotations`` hold the annotation and its
``status.conditions`` receive the results.

RBAC: ``patch`` on ``pods/status`` (and ``list`` on ``podprobemarkers.apps.kruise.io`` for the
``podProbeMarkers`` option), see ``deploy/base/rbac.yaml``.
"""

from __future__ import annotations

from collections.abc import Awaitable

from kidecar_core import PluginContext, PodRequirements, SharedVolume, StateKey, hookimpl
from kidecar_plugins.pod_probe.config import PodProbeConfig
from kidecar_plugins.pod_probe.runner import PodProbeRun

NAME = "pod_probe"
_RUN = StateKey[PodProbeRun]("run")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return PodProbeConfig if name == NAME else None


@hookimpl
def kidecar_pod_requirements(name: str, config: PodProbeConfig) -> PodRequirements | None:
    """The game's volumes that the ``exec`` probes read (``sharedVolumes``)."""
    if name != NAME or not config.shared_volumes:
        return None
    return PodRequirements(
        shared_volumes=tuple(SharedVolume(v.name, v.mount_path) for v in config.shared_volumes)
    )


@hookimpl
def kidecar_start(ctx: PluginContext) -> Awaitable[None] | None:
    run = PodProbeRun(ctx, ctx.config)
    ctx.state[_RUN] = run
    run.start()
    return None


@hookimpl
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    run = ctx.state.pop(_RUN)
    return run.close() if run is not None else None

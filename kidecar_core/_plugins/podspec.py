"""What a plugin needs from the pod it runs in, for ``kidecar inject``.

Plugins answer ``kidecar_pod_requirements`` with a :class:`PodRequirements`; ``kidecar inject``
merges the answers of every configured plugin into the sidecar container and the pod spec.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ContainerPort:
    """A port the sidecar listens on (documented in the pod, e.g. for a Service)."""

    name: str
    port: int
    protocol: str = "TCP"


@attrs.frozen
class SharedVolume:
    """A volume shared by the sidecar and the game's main container (an ``emptyDir``).

    ``mount_path`` is where both containers see it; ``kidecar inject`` adds the volume, mounts
    it into the sidecar, and into the main container unless it already mounts that path.
    """

    name: str
    mount_path: str


@attrs.frozen
class PodRequirements:
    """One plugin's needs: ports, shared volumes, and whether it signals other containers."""

    ports: tuple[ContainerPort, ...] = ()
    shared_volumes: tuple[SharedVolume, ...] = ()
    share_process_namespace: bool = False
    """The plugin signals the game's process: the pod needs ``shareProcessNamespace: true``."""

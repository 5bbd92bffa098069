"""``tp_needs``: a plugin that needs things from its pod, to test ``kidecar inject``.

It does nothing at run time; its config says what it answers to ``kidecar_pod_requirements``:
a port, a directory shared with the game container, and whether it signals the game.
"""

from __future__ import annotations

import attrs

from kidecar_core import ContainerPort, PodRequirements, SharedVolume, field, hookimpl

NAME = "tp_needs"


@attrs.frozen
class NeedsConfig:
    port: int | None = field(default=None, doc="Port the plugin would listen on.")
    port_name: str = field(key="portName", default="tp-needs", doc="Name of that port.")
    shared_dir: str | None = field(
        key="sharedDir", default=None, doc="Directory shared with the game container."
    )
    volume: str = field(default="tp-needs-files", doc="Name of the shared volume.")
    signals: bool = field(default=False, doc="Whether the plugin signals the game's process.")


@hookimpl
def kidecar_config_schema(name: str) -> type | None:
    return NeedsConfig if name == NAME else None


@hookimpl
def kidecar_pod_requirements(name: str, config: NeedsConfig) -> PodRequirements | None:
    if name != NAME:
        return None
    ports = () if config.port is None else (ContainerPort(config.port_name, config.port),)
    shared = () if config.shared_dir is None else (SharedVolume(config.volume, config.shared_dir),)
    return PodRequirements(
        ports=ports, shared_volumes=shared, share_process_namespace=config.signals
    )

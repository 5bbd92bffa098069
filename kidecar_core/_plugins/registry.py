"""Register objects handed to the ``kidecar_register_*`` hooks (the tox 4 pattern)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from kidecar_core.errors import StartupError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class StorageType:
    """A storage type: ``storageConfig.type: <name>`` with its options under ``<key>``."""

    name: str
    key: str
    config_class: type
    plugin: str


class StorageTypeRegistry:
    """Collects storage types from ``kidecar_register_storage_types``."""

    def __init__(self) -> None:
        self.types: dict[str, StorageType] = {}
        self._current_plugin = ""

    def storage_type(self, name: str, *, key: str, config_class: type) -> None:
        """Register ``storageConfig.type: name``; its options live under ``storageConfig.<key>``."""
        if name in self.types:
            other = self.types[name].plugin
            raise StartupError(
                f"storage type {name!r} is registered twice (by {other!r} and "
                f"{self._current_plugin!r}); disable one with KIDECAR_DISABLE_PLUGINS"
            )
        self.types[name] = StorageType(name, key, config_class, self._current_plugin)

    def by_key(self) -> dict[str, StorageType]:
        return {t.key: t for t in self.types.values()}


@attrs.frozen
class Route:
    method: str
    path: str
    handler: Handler
    listen: str | None
    plugin: str


class RouteRegistry:
    """Collects HTTP routes from ``kidecar_register_routes``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._current_plugin = ""

    def add(self, method: str, path: str, handler: Handler, *, listen: str | None = None) -> None:
        """Serve ``method path`` with ``handler`` on the admin server or on ``listen``."""
        for r in self.routes:
            if (r.method, r.path, r.listen) == (method.upper(), path, listen):
                raise StartupError(
                    f"route {method.upper()} {path} on {listen or 'the admin server'} is "
                    f"registered twice (by {r.plugin!r} and {self._current_plugin!r})"
                )
        self.routes.append(Route(method.upper(), path, handler, listen, self._current_plugin))

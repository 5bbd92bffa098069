"""Finding, loading and calling plugins.

:class:`Plugins` is the only caller of ``pm.hook.*``: the rest of the core goes through its typed
methods.  Plugins come from the ``kidecar`` entry-point group (built-ins included) and from local
override files (``--plugin-file``), like pytest's ``conftest.py``.

Operators choose with two environment variables: ``KIDECAR_PLUGINS`` (comma-separated allow-list;
when set, only those load) and ``KIDECAR_DISABLE_PLUGINS`` (deny-list).
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import pluggy

from kidecar_core import hookspecs
from kidecar_core._persist.plan import WritePlan
from kidecar_core._plugins import corehooks
from kidecar_core._plugins.podspec import PodRequirements
from kidecar_core._plugins.registry import RouteRegistry, StorageTypeRegistry
from kidecar_core.errors import StartupError

if TYPE_CHECKING:
    from kidecar_core._persist.result import Result
    from kidecar_core._plugins.context import PluginContext, RuntimeView
    from kidecar_core._store.rollout import RolloutTarget

log = logging.getLogger("kidecar.plugins")

ENTRY_POINT_GROUP = "kidecar"
SERVICE_HOOKS = frozenset(
    {
        "kidecar_config_schema",
        "kidecar_configure",
        "kidecar_register_routes",
        "kidecar_start",
        "kidecar_tick_interval",
        "kidecar_tick",
        "kidecar_stop",
        "kidecar_pod_requirements",
        "kidecar_check_rollout",
    }
)
"""A plugin implementing any of these is a *service plugin*: it runs only when configured."""


@attrs.frozen
class InstalledPlugin:
    """A loaded plugin module and where it came from."""

    name: str
    distribution: str
    version: str
    module: Any
    origin: str  # "entry point" or the file path of an override file

    @property
    def hooks(self) -> list[str]:
        return sorted(n for n in dir(self.module) if n.startswith("kidecar_") and _is_impl(self, n))

    @property
    def is_service(self) -> bool:
        """Runs only when named in ``plugins[]``; override files always take part."""
        return self.origin == "entry point" and bool(SERVICE_HOOKS.intersection(self.hooks))


def _is_impl(p: InstalledPlugin, name: str) -> bool:
    return callable(getattr(p.module, name, None)) and name in _SPEC_NAMES


_SPEC_NAMES = frozenset(n for n in dir(hookspecs) if n.startswith("kidecar_"))


class BootEntry(Protocol):
    """What :meth:`Plugins.activate` needs of a configured plugin."""

    @property
    def name(self) -> str: ...
    @property
    def bootorder(self) -> int: ...
    @property
    def index(self) -> int: ...


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


class Plugins:
    """The plugin manager facade."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.pm = pluggy.PluginManager(hookspecs.NAME)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(corehooks, name="kidecar.core")
        self.allow = _names(env.get("KIDECAR_PLUGINS")) or None
        self.deny = _names(env.get("KIDECAR_DISABLE_PLUGINS"))
        self.installed: dict[str, InstalledPlugin] = {}
        self.disabled: dict[str, str] = {}  # name -> distribution
        self.broken: dict[str, str] = {}  # name -> import error
        self.configured: list[str] = []
        self._callers: dict[tuple[str, str], Any] = {}
        if env.get("KIDECAR_TRACE_HOOKS", "") not in ("", "0"):
            self.trace_hooks()

    @classmethod
    def load(cls, env: Mapping[str, str], files: Sequence[str] = ()) -> Plugins:
        """Entry-point plugins, then override files from ``$KIDECAR_PLUGIN_FILES`` and
        ``files``; then :meth:`check_hooks`.  Raises :class:`StartupError`."""
        plugins = cls(env)
        plugins.load_entry_points()
        extra = [f.strip() for f in env.get("KIDECAR_PLUGIN_FILES", "").split(",") if f.strip()]
        for path in [*extra, *files]:
            plugins.load_file(path.strip())
        plugins.check_hooks()
        return plugins

    def trace_hooks(self) -> None:
        """Log every hook call and its result (pluggy's tracing) to ``kidecar.hooks`` at INFO."""
        tracer = logging.getLogger("kidecar.hooks")

        def write(text: str) -> None:
            tracer.info("%s", text.rstrip())

        self.pm.trace.root.setwriter(write)
        self.pm.enable_tracing()

    def check_hooks(self) -> None:
        """Fail on implementations of hooks that do not exist (a typo: ``kidecar_persit``).

        pluggy registers them without complaint (``check_pending`` is how it finds them); left
        alone, they would never be called.  Raises :class:`StartupError` naming, for each, the
        plugin (the file of an override) and the hook, with the closest real hook.
        """
        problems = []
        for name, caller in vars(self.pm.hook).items():
            if not name.startswith(hookspecs.NAME) or caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                where = self._origin_of(impl.plugin_name)
                close = difflib.get_close_matches(name, sorted(_SPEC_NAMES), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"{where}: {name} is not a kidecar hook{hint}")
        if problems:
            raise StartupError("unknown hooks, never called:\n  " + "\n  ".join(problems))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            raise StartupError(
                f"{self._origin_of(self.pm.get_name(e.plugin) or '?')}: {e}"
            ) from None

    def _origin_of(self, plugin_name: str) -> str:
        plugin = self.installed.get(plugin_name)
        if plugin is None:
            return f"plugin {plugin_name!r}"
        if plugin.origin == "entry point":
            return f"plugin {plugin.name!r} ({plugin.distribution} {plugin.version})"
        return f"plugin file {plugin.origin}"

    # -- loading ----------------------------------------------------------------------------

    def load_entry_points(self, eps: Iterable[EntryPoint] | None = None) -> None:
        """Import and register every allowed plugin of the ``kidecar`` entry-point group."""
        found = list(entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps)
        for ep in found:
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            if (self.allow is not None and ep.name not in self.allow) or ep.name in self.deny:
                self.disabled[ep.name] = dist
                continue
            if ep.name in self.installed:
                other = self.installed[ep.name].distribution
                raise StartupError(
                    f"plugin {ep.name!r} is provided twice (by {other} and {dist}); "
                    f"uninstall one or disable it with KIDECAR_DISABLE_PLUGINS"
                )
            try:
                module = ep.load()
            except Exception as e:  # a broken third-party plugin must not hide the others
                self.broken[ep.name] = f"{dist} {version} failed to import: {type(e).__name__}: {e}"
                log.warning(
                    "plugin %r (%s %s) is broken: importing %s failed: %s: %s",
                    ep.name,
                    dist,
                    version,
                    ep.value,
                    type(e).__name__,
                    e,
                )
                continue
            self._add(InstalledPlugin(ep.name, dist, version, module, "entry point"))
        if self.allow:
            for missing in sorted(self.allow - set(self.installed) - set(self.broken)):
                log.warning("KIDECAR_PLUGINS names %r, which is not installed", missing)

    def load_file(self, path: str) -> InstalledPlugin:
        """Import a local override file (like pytest's conftest.py) and register it."""
        file = Path(path)
        if not file.is_file():
            raise StartupError(f"plugin file {path} does not exist")
        name = f"file:{file.stem}"
        spec = importlib.util.spec_from_file_location(f"kidecar_local_{file.stem}", file)
        if spec is None or spec.loader is None:
            raise StartupError(f"plugin file {path} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise StartupError(
                f"plugin file {path} failed to import: {type(e).__name__}: {e}"
            ) from None
        plugin = InstalledPlugin(name, "(local file)", "-", module, str(file))
        self._add(plugin)
        return plugin

    def _add(self, plugin: InstalledPlugin) -> None:
        try:
            self.pm.register(plugin.module, name=plugin.name)
        except (pluggy.PluginValidationError, ValueError) as e:
            raise StartupError(
                f"plugin {plugin.name!r} ({plugin.distribution}) is invalid: {e}"
            ) from None
        self.installed[plugin.name] = plugin

    # -- what the config loader needs -------------------------------------------------------

    def service_plugins(self) -> dict[str, str]:
        """Service plugins that may be named in ``plugins[]``: name → distribution."""
        return {n: p.distribution for n, p in self.installed.items() if p.is_service}

    def config_schema(self, name: str) -> type | None:
        result: type | None = self._addressed("kidecar_config_schema", name)(name=name)
        return result

    def storage_types(self) -> StorageTypeRegistry:
        registry = StorageTypeRegistry()
        for impl in reversed(self.pm.hook.kidecar_register_storage_types.get_hookimpls()):
            registry._current_plugin = impl.plugin_name
            impl.function(register=registry)
        return registry

    def activate(self, configured: Iterable[BootEntry]) -> None:
        """Keep only configured service plugins, registered in reverse boot order.

        pluggy calls the last registered implementation first, so registering the highest
        ``bootorder`` first makes broadcast hooks reach plugins in boot order.
        """
        sequence = sorted(configured, key=lambda p: (p.bootorder, p.index))
        for plugin in self.installed.values():
            if plugin.is_service and self.pm.is_registered(plugin.module):
                self.pm.unregister(plugin.module)
        for entry in reversed(sequence):
            plugin = self.installed[entry.name]
            self.pm.register(plugin.module, name=plugin.name)
        self.configured = [p.name for p in sequence]
        self._callers.clear()

    # -- lifecycle (addressed) ----------------------------------------------------------------

    def _addressed(self, hook: str, name: str) -> Any:
        """The hook caller for plugin ``name``: other service plugins are left out."""
        key = (hook, name)
        caller = self._callers.get(key)
        if caller is None:
            others = [
                p.module
                for n, p in self.installed.items()
                if n != name and p.is_service and self.pm.is_registered(p.module)
            ]
            if name in self.installed and not self.pm.is_registered(self.installed[name].module):
                raise StartupError(f"plugin {name!r} is not active")
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[key] = caller
        return caller

    def configure(self, ctx: PluginContext) -> None:
        self._addressed("kidecar_configure", ctx.name)(ctx=ctx)

    def register_routes(self, ctx: PluginContext, routes: RouteRegistry) -> None:
        routes._current_plugin = ctx.name
        self._addressed("kidecar_register_routes", ctx.name)(ctx=ctx, routes=routes)

    def start(self, ctx: PluginContext) -> list[Awaitable[Any]]:
        return _awaitables(self._addressed("kidecar_start", ctx.name)(ctx=ctx))

    def tick_interval(self, ctx: PluginContext) -> float | None:
        value = self._addressed("kidecar_tick_interval", ctx.name)(ctx=ctx)
        return None if value is None else float(value)

    def tick(self, ctx: PluginContext) -> list[Awaitable[Any]]:
        return _awaitables(self._addressed("kidecar_tick", ctx.name)(ctx=ctx))

    def stop(self, ctx: PluginContext) -> list[Awaitable[Any]]:
        return _awaitables(self._addressed("kidecar_stop", ctx.name)(ctx=ctx))

    def pod_requirements(self, name: str, config: Any) -> list[PodRequirements]:
        """Every answer to ``kidecar_pod_requirements`` for plugin ``name``."""
        answers = self._addressed("kidecar_pod_requirements", name)(name=name, config=config)
        return [a for a in answers if a is not None]

    def check_rollout(self, name: str, config: Any, target: RolloutTarget) -> list[str] | None:
        """Problems plugin ``name`` has with a rollout ``target`` (``kidecar_check_rollout``);
        ``None`` when it does not follow rollouts."""
        answers = self._addressed("kidecar_check_rollout", name)(
            name=name, config=config, target=target
        )
        found = [a for a in answers if a is not None]
        return None if not found else [problem for answer in found for problem in answer]

    # -- broadcast ----------------------------------------------------------------------------

    def on_result(self, result: Result, runtime: RuntimeView) -> list[Awaitable[Any]]:
        return _awaitables(self.pm.hook.kidecar_on_result(result=result, runtime=runtime))

    def persist(self, result: Result, runtime: RuntimeView) -> WritePlan:
        """The write plan for ``result``; bad contributions are logged and left out."""
        return WritePlan.collect(
            result, self.pm.hook.kidecar_persist(result=result, runtime=runtime)
        )

    def shutdown(self, runtime: RuntimeView) -> list[Awaitable[Any]]:
        return _awaitables(self.pm.hook.kidecar_shutdown(runtime=runtime))


def _awaitables(results: list[Any]) -> list[Awaitable[Any]]:
    """Hook results that must be awaited (``None`` entries dropped)."""
    out: list[Awaitable[Any]] = []
    for r in results:
        if r is None:
            continue
        if not inspect.isawaitable(r):
            raise TypeError(f"hook returned {r!r}; expected an awaitable or None")
        out.append(r)
    return out

"""The hooks of kidecar: the contract between the core and every plugin.

Plugins implement these with the exported marker::

    from kidecar_core import hookimpl

    @hookimpl
    def kidecar_tick(ctx):
        ...

**Two kinds of hooks.**  *Lifecycle hooks* (``kidecar_config_schema``, ``kidecar_configure``,
``kidecar_register_routes``, ``kidecar_start``, ``kidecar_tick_interval``, ``kidecar_tick``,
``kidecar_stop``) are addressed to one configured plugin: the core calls them on that plugin plus
every plugin that is not a configured service plugin (storage backends, override files), so an
override can wrap any plugin's tick.  ``ctx.name`` says which plugin is meant.  *Broadcast hooks*
(``kidecar_register_storage_types``, ``kidecar_on_result``, ``kidecar_persist``,
``kidecar_shutdown``) reach every registered plugin.

**Order.**  pluggy calls implementations last-registered-first; the core registers configured
plugins in reverse ``bootorder`` so that lower ``bootorder`` runs first (ties keep file order).
``tryfirst``/``trylast`` and ``wrapper=True`` win over boot order, as in pytest.

**Data, not I/O.**  pluggy calls hooks synchronously.  Hooks that may be wrapped, ordered or
short-circuited return *data* (a config class, a list of writes); hooks that do I/O return an
*awaitable* (or ``None``) which the core awaits.  Never block in a hook: slow work (a probe that
may hang until its timeout) belongs in tasks started with ``ctx.spawn``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

NAME = "kidecar"
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)

if TYPE_CHECKING:
    from kidecar_core._inject.podspec import PodRequirements
    from kidecar_core._persist.result import Result
    from kidecar_core._persist.write import Write
    from kidecar_core._plugins.context import PluginContext, RuntimeView
    from kidecar_core._plugins.registry import RouteRegistry, StorageTypeRegistry


# -- registration (broadcast, once, before the configuration is read) -------------------------


@hookspec
def kidecar_register_storage_types(register: StorageTypeRegistry) -> None:
    """Add storage types that a plugin's ``storageConfig.type`` may name.

    Fires once at startup, before the configuration is validated, on every loaded plugin.

    :param register: call ``register.storage_type(name, key=..., config_class=...)``: ``name`` is
        the value of ``storageConfig.type`` (``"InKube"``), ``key`` the mapping that holds its
        options (``"inKube"``), ``config_class`` a frozen attrs class for those options.

    Returns nothing.  Results with that storage type reach every ``kidecar_persist`` and
    ``kidecar_on_result`` implementation; the one owning the type acts on them.
    """


# -- lifecycle of one configured plugin (addressed) -------------------------------------------


@hookspec(firstresult=True)
def kidecar_config_schema(name: str) -> type | None:
    """Return the frozen attrs class that ``plugins[].config`` of plugin ``name`` is read into.

    Fires while the configuration is validated, addressed to the plugin named ``name``.
    ``firstresult``: the first non-``None`` answer wins.  A plugin that returns ``None`` (or does
    not implement the hook) takes no config: a non-empty ``config`` is then an error.  Fields are
    documented with :func:`kidecar_core.field`; the configuration reference is generated
    from those docs.
    """


@hookspec
def kidecar_configure(ctx: PluginContext) -> None:
    """Prepare the plugin: check what the schema cannot (files exist, regexes compile, ...).

    Fires once per configured plugin, in boot order, after the whole configuration is valid and
    before any plugin starts.  ``ctx.config`` is the structured config; keep state on
    ``ctx.state``.  Raise :class:`kidecar_core.errors.ConfigError` (paths relative to the plugin's
    ``config``) to reject the configuration: kidecar then exits with code 2 before doing anything.
    Checks of the environment belong here (a token file exists, a directory is writable);
    ``kidecar check-config`` does not call this hook, it validates the file alone.
    Returns nothing.
    """


@hookspec
def kidecar_register_routes(ctx: PluginContext, routes: RouteRegistry) -> None:
    """Add HTTP routes served by the core.

    Fires once per configured plugin after ``kidecar_configure``.  Call
    ``routes.add(method, path, handler, listen=None)``: ``listen=None`` serves the route on the
    admin server (default ``127.0.0.1:9090``), ``listen="HOST:PORT"`` on a server of its own that
    the core starts, stops gracefully and shares between routes with the same address.
    ``handler`` is an aiohttp handler ``async (request) -> response``; it usually closes over
    ``ctx`` (config, state, ``ctx.emit``).  Returns nothing.
    """


@hookspec
def kidecar_start(ctx: PluginContext) -> Awaitable[None] | None:
    """Start the plugin; return an awaitable for asynchronous start-up work, or ``None``.

    Fires for each configured plugin in boot order; the core awaits each plugin's start before
    starting the next one, so keep it short: long-running work goes into ``ctx.spawn(...)``
    tasks.  Also fires when the plugin is restarted after a crash (see ``restartpolicy``).
    An exception marks the plugin as failed and is handled by the restart policy.
    """


@hookspec(firstresult=True)
def kidecar_tick_interval(ctx: PluginContext) -> float | None:
    """Return the period in seconds at which ``kidecar_tick`` fires for this plugin.

    ``firstresult``.  ``None`` (the default) means the plugin is not ticked; ``0`` means as often
    as possible while still yielding to the event loop.  Fires once after each
    ``kidecar_start`` (so again after a restart); the period usually comes from ``ctx.config``.
    """


@hookspec
def kidecar_tick(ctx: PluginContext) -> Awaitable[None] | None:
    """Do one round of periodic work; return an awaitable or ``None``.

    Fires every ``kidecar_tick_interval`` seconds, measured as a period (start to start), not as
    a sleep after the work.  The core awaits the returned awaitable before the next tick; ticks
    that would overlap are skipped, never queued (the scheduler is
    :func:`kidecar_core.every`, which plugins may use for loops of their own, e.g. one per
    probed endpoint).  Must never block; work that may be slow
    (network calls with long timeouts) should run in ``ctx.spawn`` tasks so that it cannot delay
    other work of the same plugin.  An exception marks the plugin as failed.
    """


@hookspec
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    """Stop the plugin: release what ``kidecar_start`` acquired; return an awaitable or ``None``.

    Fires on shutdown (in reverse boot order) and before a crashed plugin is restarted.  The
    plugin's ``ctx.spawn`` tasks are cancelled by the core *after* this hook returns and its
    awaitable completes, within the shutdown budget.
    """


@hookspec
def kidecar_pod_requirements(name: str, config: Any) -> PodRequirements | None:
    """Say what plugin ``name`` configured with ``config`` needs from its pod.

    Fires in ``kidecar inject`` (not in ``kidecar run``), addressed to the plugin named ``name``,
    with its structured config.  Return a :class:`~kidecar_core._inject.podspec.PodRequirements`
    (ports it listens on, volumes shared with the game container, whether it signals the game's
    process and so needs ``shareProcessNamespace``) or ``None`` for nothing.  Pure function of
    the config: no I/O.
    """


# -- results (broadcast) ----------------------------------------------------------------------


@hookspec
def kidecar_on_result(result: Result, runtime: RuntimeView) -> Awaitable[None] | None:
    """Observe a result (metrics, logs, notifications): fan-out to every plugin.

    Fires for every :class:`~kidecar_core.Result` a plugin emits, before
    ``kidecar_persist``.  ``runtime`` (:class:`~kidecar_core.RuntimeView`) offers the
    pod's identity, the metrics registry, ``get_object`` and ``record_event``.  Return an
    awaitable for I/O, or ``None``.  Exceptions are logged and do not stop the result from being
    persisted.
    """


@hookspec
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    """Contribute writes for a result to the write plan; return a list of writes or ``None``.

    Fires for every result, after ``kidecar_on_result``.  Storage backends look at
    ``result.storage.type`` and, when it is theirs, return
    :class:`~kidecar_core.Write` objects (merge patches on a target object), addressed
    with ``runtime.identity`` (the pod).  Do no I/O here: the core merges every write of the plan
    per target object and applies it with **one** request per object, only when the object's
    desired state changed, with retries.

    This hook is the override point for persistence: a ``wrapper=True`` implementation receives
    the lists of the others (``yield`` returns them) and may change, drop or add writes;
    ``tryfirst`` puts a backend's writes first in the plan.  The plan is merged in order, so
    where two writes set the same field the later one wins.  ``result.writes`` join the plan
    through the core's own ``trylast`` implementation, after every other one, so wrappers see
    them too.
    """


@hookspec
def kidecar_shutdown(runtime: RuntimeView) -> Awaitable[None] | None:
    """The sidecar is stopping: every plugin has been stopped; pending writes are being flushed.

    Fires once on SIGTERM/SIGINT, on every plugin, with ``runtime`` (identity, metrics,
    ``get_object``).  Return an awaitable for last I/O; it runs within the shutdown budget.
    """

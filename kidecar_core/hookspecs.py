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

**Awaitables and wrappers.**  For a hook that returns an awaitable, a ``wrapper=True``
implementation sees, as the result of its ``yield``, the list of what the other implementations
returned: awaitables not awaited yet (the core awaits them after the hook call), with ``None``
answers left out.  It may return that list changed: drop, add or wrap awaitables.

**Use in override files.**  Every hook can be implemented in an override file (``kidecar run
--plugin-file overrides.py``, like pytest's ``conftest.py``): override files take part in every
hook call, addressed or broadcast.  A misspelled hook name in any plugin is a startup error.

**Tracing.**  ``KIDECAR_TRACE_HOOKS=1`` logs every hook call, with its arguments and results.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

NAME = "kidecar"
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)

if TYPE_CHECKING:
    from kidecar_core._persist.result import Result
    from kidecar_core._persist.write import Write
    from kidecar_core._plugins.context import PluginContext, RuntimeView
    from kidecar_core._plugins.podspec import PodRequirements
    from kidecar_core._plugins.registry import RouteRegistry, StorageTypeRegistry
    from kidecar_core._store.rollout import RolloutTarget


# -- registration (broadcast, once, before the configuration is read) -------------------------

FIRSTRESULT = (
    "Stops at the first non-``None`` result: the implementations after it are not called "
    "(``firstresult``)."
)
"""The sentence every ``firstresult`` hook's docstring carries (checked by the tests)."""

WRAPPERS = (
    "A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the "
    "others returned, not awaited yet."
)
"""The sentence every awaitable-returning hook's docstring carries (checked by the tests)."""


@hookspec
def kidecar_register_storage_types(register: StorageTypeRegistry) -> None:
    """Add storage types that a plugin's ``storageConfig.type`` may name.

    Fires once at startup, on every loaded plugin, before the configuration is validated (so
    also in ``kidecar check-config`` and ``kidecar inject``).

    :param register: the registry: call ``register.storage_type(name, key=..., config_class=...)``;
        ``name`` is the value of ``storageConfig.type`` (``"InKube"``), ``key`` the mapping that
        holds its options (``"inKube"``), ``config_class`` a frozen attrs class for those options.
    :returns: nothing; results with that storage type then reach every ``kidecar_persist`` and
        ``kidecar_on_result`` implementation, and the one owning the type acts on them.

    If it raises, kidecar does not start (exit code 1); registering a name twice is such an
    error, naming both plugins.

    Use in override files: rarely; a storage type belongs in a plugin distribution.

    Example::

        @hookimpl
        def kidecar_register_storage_types(register):
            register.storage_type("Audit", key="audit", config_class=AuditConfig)
    """


# -- lifecycle of one configured plugin (addressed) -------------------------------------------


@hookspec(firstresult=True)
def kidecar_config_schema(name: str) -> type | None:
    """Return the frozen attrs class that ``plugins[].config`` of plugin ``name`` is read into.

    Fires while the configuration is validated (``kidecar run``, ``check-config``, ``inject``),
    addressed to the plugin named ``name``.

    :param name: the entry-point name of the plugin whose config is being read; answer only for
        your own name.
    :returns: the config class, or ``None``.  A plugin that returns ``None`` (or does not
        implement the hook) takes no config: a non-empty ``config`` is then an error.  Fields are
        documented with :func:`kidecar_core.field`; the configuration reference is generated from
        those docs.

    Stops at the first non-``None`` result: the implementations after it are not called
    (``firstresult``).

    If it raises, kidecar does not start (exit code 1).

    Use in override files: to read a plugin's config into a class of your own (``tryfirst``).

    Example::

        @hookimpl
        def kidecar_config_schema(name):
            return MyConfig if name == "my_plugin" else None
    """


@hookspec
def kidecar_configure(ctx: PluginContext) -> None:
    """Prepare the plugin: check what the schema cannot (files exist, regexes compile, ...).

    Fires once per configured plugin, in boot order, after the whole configuration is valid and
    before any plugin starts; not in ``kidecar check-config``, which validates the file alone.
    Checks of the environment belong here (a token file exists, a directory is writable).

    :param ctx: the plugin's context: ``ctx.config`` is its structured config; keep what later
        hooks need in ``ctx.state`` under a :class:`~kidecar_core.StateKey`.
    :returns: nothing.

    If it raises :class:`~kidecar_core.ConfigError` (paths relative to the plugin's ``config``),
    kidecar reports every plugin's problems with their full paths and exits with code 2 before
    doing anything; any other exception stops the start too.

    Use in override files: to add checks of your own for any plugin (``ctx.name`` says which).

    Example::

        UPDATER = StateKey[Updater]("updater")

        @hookimpl
        def kidecar_configure(ctx):
            if not os.path.isdir(ctx.config.file_dir):
                raise ConfigError.single("fileDir", f"{ctx.config.file_dir} is not a directory")
            ctx.state[UPDATER] = Updater(ctx.config)
    """


@hookspec
def kidecar_register_routes(ctx: PluginContext, routes: RouteRegistry) -> None:
    """Add HTTP routes served by the core.

    Fires once per configured plugin, after ``kidecar_configure`` and before the servers start.

    :param ctx: the plugin's context; a handler usually closes over it (config, state,
        ``ctx.emit``).
    :param routes: the registry: ``routes.add(method, path, handler, listen=None)``;
        ``listen=None`` serves the route on the admin server (default ``127.0.0.1:9090``),
        ``listen="HOST:PORT"`` on a server of its own that the core starts, stops gracefully and
        shares between routes with the same address.  ``handler`` is an aiohttp handler
        ``async (request) -> response``.
    :returns: nothing.

    If it raises, kidecar does not start; a route registered twice is such an error.

    Use in override files: to add an admin route (a debug page) next to the built-in ones.

    Example::

        @hookimpl
        def kidecar_register_routes(ctx, routes):
            async def status(request):
                return web.json_response({"plugin": ctx.name})

            routes.add("GET", "/my-plugin/status", status)
    """


@hookspec
def kidecar_start(ctx: PluginContext) -> Awaitable[None] | None:
    """Start the plugin.

    Fires for each configured plugin in boot order; the core awaits each plugin's start before
    starting the next one, so keep it short: long-running work goes into ``ctx.spawn(...)``
    tasks.  Fires again when the plugin is restarted after a failure (see ``restartpolicy``).

    :param ctx: the plugin's context.
    :returns: an awaitable for asynchronous start-up work, or ``None``.

    A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the
    others returned, not awaited yet.

    If it raises (or its awaitable does, or takes longer than 30 s), the plugin is failed and
    handled by the restart policy; the other plugins start anyway.

    Use in override files: to do something when any plugin starts (``ctx.name`` says which).

    Example::

        @hookimpl
        def kidecar_start(ctx):
            ctx.spawn(watch_game(ctx), "watch")
    """


@hookspec(firstresult=True)
def kidecar_tick_interval(ctx: PluginContext) -> float | None:
    """Return the period at which ``kidecar_tick`` fires for this plugin.

    Fires once after each ``kidecar_start`` (so again after a restart).

    :param ctx: the plugin's context; the period usually comes from ``ctx.config``.
    :returns: seconds between the starts of two ticks; ``None`` (the default) means the plugin
        is not ticked, ``0`` as often as possible while still yielding to the event loop.

    Stops at the first non-``None`` result: the implementations after it are not called
    (``firstresult``).

    If it raises, the plugin is failed and handled by the restart policy.

    Use in override files: to slow a plugin down, e.g. ``tryfirst`` and ``10.0`` for one name.

    Example::

        @hookimpl
        def kidecar_tick_interval(ctx):
            return ctx.config.period if ctx.name == "my_plugin" else None
    """


@hookspec
def kidecar_tick(ctx: PluginContext) -> Awaitable[None] | None:
    """Do one round of periodic work.

    Fires every ``kidecar_tick_interval`` seconds, measured as a period (start to start), not as
    a sleep after the work.  The core awaits the returned awaitable before the next tick; ticks
    that would overlap are skipped, never queued (the scheduler is :func:`kidecar_core.every`,
    which plugins may use for loops of their own, e.g. one per probed endpoint, with
    ``clock=ctx.clock``).  Must never block; work that may be slow (network calls with long
    timeouts) should run in ``ctx.spawn`` tasks so that it cannot delay other work.

    :param ctx: the plugin's context.
    :returns: an awaitable, or ``None``.

    A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the
    others returned, not awaited yet.

    If it raises (or its awaitable does), the plugin is failed and handled by the restart policy.

    Use in override files: to observe or time any plugin's ticks with a wrapper.

    Example::

        @hookimpl
        def kidecar_tick(ctx):
            ctx.emit(Result(plugin=ctx.name, state=read_state()))
    """


@hookspec
def kidecar_stop(ctx: PluginContext) -> Awaitable[None] | None:
    """Stop the plugin: release what ``kidecar_start`` acquired.

    Fires on shutdown (in reverse boot order) and before a failed plugin is restarted.  The
    plugin's ``ctx.spawn`` tasks are cancelled by the core *after* this hook returns and its
    awaitable completes, within the shutdown budget.

    :param ctx: the plugin's context.
    :returns: an awaitable (closing sessions, flushing files), or ``None``.

    A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the
    others returned, not awaited yet.

    If it raises (or its awaitable does, or outlasts the budget), a warning is logged and the
    stop goes on: the plugin's tasks are cancelled all the same.

    Use in override files: to do something when any plugin stops.

    Example::

        SESSION = StateKey[aiohttp.ClientSession]("session")

        @hookimpl
        def kidecar_stop(ctx):
            session = ctx.state.pop(SESSION)
            return session.close() if session is not None else None
    """


@hookspec
def kidecar_pod_requirements(name: str, config: Any) -> PodRequirements | None:
    """Say what plugin ``name`` configured with ``config`` needs from its pod.

    Fires in ``kidecar inject`` (not in ``kidecar run``), addressed to the plugin named ``name``.
    Pure function of the config: no I/O.

    :param name: the entry-point name of the plugin being injected; answer only for your own.
    :param config: that plugin's structured config (the class of ``kidecar_config_schema``).
    :returns: a :class:`~kidecar_core.PodRequirements` (ports it listens on, volumes shared with
        the game container, whether it signals the game's process and so needs
        ``shareProcessNamespace``), or ``None`` for nothing.  The answers of every implementation
        are merged.

    If it raises, ``kidecar inject`` fails (exit code 1).

    Use in override files: to add a volume or a port to what ``kidecar inject`` writes.

    Example::

        @hookimpl
        def kidecar_pod_requirements(name, config):
            if name != "my_plugin":
                return None
            return PodRequirements(ports=(ContainerPort("my-api", config.port),))
    """


@hookspec
def kidecar_check_rollout(name: str, config: Any, target: RolloutTarget) -> list[str] | None:
    """Check a rollout target against plugin ``name``'s config; say whether it follows rollouts.

    Fires in ``kidecar rollout start`` (not in ``kidecar run``), addressed to the plugin named
    ``name``, before anything is written.  Pure function of the config: no I/O.

    :param name: the entry-point name of the plugin being asked; answer only for your own.
    :param config: that plugin's structured config (the class of ``kidecar_config_schema``), from
        the workload's sidecar config.
    :param target: the :class:`~kidecar_core.RolloutTarget` as the user gave it: ``version``,
        ``url`` and ``sha256``.
    :returns: ``None`` when this plugin does not follow rollouts; otherwise the list of problems
        that would make the sidecars refuse the target (empty: it is acceptable), each a
        sentence naming the config key that decides.  The command refuses the rollout when no
        configured plugin follows rollouts or when any problem is returned.

    If it raises, ``kidecar rollout start`` reports the error as a problem of that plugin and
    stops before anything is written (exit code 2).

    Use in override files: to refuse rollouts your platform forbids (a version scheme, a host).

    Example::

        @hookimpl
        def kidecar_check_rollout(name, config, target):
            if name != "hot_update":
                return None
            if not target.url.startswith("https://"):
                return ["url must be https (platform policy)"]
            return []
    """


# -- results (broadcast) ----------------------------------------------------------------------


@hookspec
def kidecar_on_result(result: Result, runtime: RuntimeView) -> Awaitable[None] | None:
    """Observe a result (metrics, logs, notifications): fan-out to every plugin.

    Fires for every :class:`~kidecar_core.Result` a plugin emits, before ``kidecar_persist``,
    one result at a time in the order they were emitted.

    :param result: what a plugin saw: its ``state``, ``storage``, ``data`` (a
        :data:`~kidecar_core.ResultData`: string keys, JSON values), ``writes``.
    :param runtime: the runtime (:class:`~kidecar_core.RuntimeView`): the pod's identity, the
        metrics registry, the clock, ``get_object`` and ``record_event``.
    :returns: an awaitable for I/O, or ``None``.

    A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the
    others returned, not awaited yet.

    If it raises (or its awaitable does), the error is logged with the hook's name and the
    result is persisted all the same.

    Use in override files: to audit every result (``contrib/overrides/audit_jsonl.py``).

    Example::

        @hookimpl
        def kidecar_on_result(result, runtime):
            runtime.metrics.counter("my_results", "Results seen.", ["plugin"]).labels(
                result.plugin
            ).inc()
    """


@hookspec
def kidecar_persist(result: Result, runtime: RuntimeView) -> list[Write] | None:
    """Contribute writes for a result to its write plan.

    Fires for every result, after ``kidecar_on_result``.  Storage backends look at
    ``result.storage.type`` and, when it is theirs, return :class:`~kidecar_core.Write` objects
    (merge patches on a target object).  Do no I/O here: the core merges every write of the plan
    per target object and applies it with **one** request per object, only when the object's
    desired state changed, with retries.

    :param result: the result to store; ``result.source`` is the config path of its storage
        config, for the writes' ``source``.
    :param runtime: the runtime (:class:`~kidecar_core.RuntimeView`); address writes with
        ``runtime.identity`` (``ObjectRef.pod(runtime.identity)``).
    :returns: a list of writes, or ``None``.  The plan is merged in order, so where two writes
        set the same field the later one wins; ``tryfirst`` puts a backend's writes first.

    This is the override point for persistence: a ``wrapper=True`` implementation receives the
    lists of the others (``yield`` returns them) and may change, drop or add writes.
    ``result.writes`` join the plan through the core's own ``trylast`` implementation, after
    every other one, so wrappers see them too.

    If it raises, the error is logged and that result is not stored; the next result is.  A
    contribution that is not a list of valid writes (a patch that is not a mapping, a target
    that is not an ``ObjectRef``) is logged with its ``source`` and dropped, and the rest of
    the plan is written.

    Use in override files: to change what is written (``contrib/overrides/`` has recipes).

    Example::

        @hookimpl(wrapper=True)
        def kidecar_persist(result, runtime):
            plans = yield
            return [[w for w in plan or [] if "opsState" not in str(w.patch)] for plan in plans]
    """


@hookspec
def kidecar_shutdown(runtime: RuntimeView) -> Awaitable[None] | None:
    """The sidecar is stopping: every plugin has been stopped; pending writes are being flushed.

    Fires once on SIGTERM/SIGINT, on every plugin, after the servers stopped accepting and every
    plugin's ``kidecar_stop``.

    :param runtime: the runtime (:class:`~kidecar_core.RuntimeView`): identity, metrics,
        ``get_object``.
    :returns: an awaitable for last I/O, or ``None``; it runs within the shutdown budget.

    A ``wrapper=True`` implementation sees, after ``yield``, the list of the awaitables the
    others returned, not awaited yet.

    If it raises (or its awaitable does), the error is logged and the stop goes on: pending
    results and writes are flushed all the same, and the exit code stays 0.

    Use in override files: to flush a buffer of your own (an audit file) at exit.

    Example::

        @hookimpl
        def kidecar_shutdown(runtime):
            return audit_log.aclose()
    """

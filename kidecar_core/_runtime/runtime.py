"""The runtime of ``kidecar run``: one event loop, composed of small parts.

* :class:`~.supervisor.Supervisor` — plugin tasks, boot order, restart policy;
* :class:`~.pipeline.Pipeline` — results → ``kidecar_on_result`` → write plan → applier;
* :class:`~.servers.Servers` — the admin server and the plugins' servers;
* :mod:`.shutdown` — signals and the shutdown budget.

Lifecycle:

1. every configured plugin is configured and registers its routes (boot order);
2. the pipeline, the Event recorder and the servers start;
3. plugins start one after the other (boot order);
4. on SIGTERM/SIGINT: servers stop accepting, plugins stop (reverse boot order),
   ``kidecar_shutdown`` runs, pending results and writes are flushed, all within the budget;
   exit code 0.

Teardown goes through an :class:`contextlib.AsyncExitStack`: each part registers its cleanup
when it has started, so a start that fails half-way tears down only what started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import attrs

from kidecar_core._base.clock import LOOP_CLOCK, Clock
from kidecar_core._base.memory import release_startup_memory
from kidecar_core._base.metrics import Metrics
from kidecar_core._config.loader import LoadedConfig
from kidecar_core._persist.applier import Applier
from kidecar_core._persist.policysets import PolicySets
from kidecar_core._persist.precedence import OpsStatePrecedence
from kidecar_core._persist.result import Result
from kidecar_core._persist.status import ObjectStatus
from kidecar_core._plugins.context import PluginContext
from kidecar_core._plugins.manager import Plugins
from kidecar_core._plugins.registry import RouteRegistry
from kidecar_core._runtime.context import Context, Shared, View
from kidecar_core._runtime.pipeline import Pipeline, gather_logged
from kidecar_core._runtime.servers import Servers, make_admin_app
from kidecar_core._runtime.shutdown import Budget, install_signal_handlers, step
from kidecar_core._runtime.supervisor import Supervised, SupervisionOptions, Supervisor
from kidecar_core._store.events import EventRecorder
from kidecar_core._store.objects import ObjectRef, ObjectStore, PodIdentity
from kidecar_core._store.watches import Watches
from kidecar_core.errors import ConfigError

log = logging.getLogger("kidecar")


@attrs.frozen
class RuntimeOptions:
    """Options of ``kidecar run`` (seconds for times)."""

    admin_listen: str = "127.0.0.1:9090"
    shutdown_timeout: float = 20.0
    """Budget for a graceful stop; keep it below the pod's terminationGracePeriodSeconds."""
    start_timeout: float = 30.0
    resync_interval: float = 300.0
    restart_backoff: float = 0.5
    restart_backoff_cap: float = 60.0


class Runtime:
    """Everything one ``kidecar run`` owns.  No module-level state."""

    def __init__(
        self,
        config: LoadedConfig,
        plugins: Plugins,
        store: ObjectStore,
        identity: PodIdentity,
        options: RuntimeOptions,
        *,
        local_mode: bool,
        clock: Clock | None = None,
    ) -> None:
        self.plugins = plugins
        self.store = store
        self.identity = identity
        self.options = options
        self.clock = clock or LOOP_CLOCK
        self.metrics = Metrics()
        self.events = EventRecorder(store, ObjectRef.pod(identity))
        self.watches = Watches(store)
        self.applier = self._make_applier()
        self.stopping = asyncio.Event()
        shared = self._make_shared(identity, store, local_mode)
        self._shared = shared
        self.view = View(shared)
        self.pipeline = Pipeline(
            plugins,
            self.view,
            self.applier,
            self.events,
            self.metrics,
            OpsStatePrecedence(config.top.ops_state_precedence),
            PolicySets(),
        )
        self.supervisor = Supervisor(
            plugins,
            config.boot_sequence(),
            policy=config.top.restart_policy,
            options=SupervisionOptions(
                start_timeout=options.start_timeout,
                restart_backoff=options.restart_backoff,
                restart_backoff_cap=options.restart_backoff_cap,
                stop_timeout=options.shutdown_timeout / 2,
            ),
            metrics=self.metrics,
            clock=self.clock,
            stopping=self.stopping,
        )
        self.servers = Servers()
        self.budget = Budget(self.clock, options.shutdown_timeout)
        self._shutdown_started = False

    def _make_applier(self) -> Applier:
        """The applier, following the Pod and its GameServer through the shared watches."""
        return Applier(
            self.store,
            self.metrics,
            watches=self.watches,
            watched=(ObjectRef.pod(self.identity), ObjectRef.gameserver(self.identity)),
            clock=self.clock,
            resync_interval=self.options.resync_interval,
            on_event=self.events.record,
        )

    def _make_shared(self, identity: PodIdentity, store: ObjectStore, local_mode: bool) -> Shared:
        """What every view of this runtime shares (its plugins' contexts included)."""
        return Shared(
            identity,
            store,
            self.metrics,
            self.events,
            self.clock,
            local_mode,
            self._emit,
            self.applier.blocking_guard,
            self.watches,
            self.stopping,  # plugins tell SIGTERM from their own restart
        )

    def _emit(self, result: Result) -> None:
        self.pipeline.emit(result)

    def request_stop(self) -> None:
        self.stopping.set()

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the ``/readyz`` document)."""
        problems = self.applier.problems()
        ready = (
            self.supervisor.started
            and not self._shutdown_started
            and self.supervisor.all_running()
            and ObjectStatus.FORBIDDEN not in problems
        )
        detail = {
            "ready": ready,
            "plugins": self.supervisor.report(),
            "persistence": {
                "store": self.store.description,
                "degraded": problems.get(ObjectStatus.DEGRADED, []),
                "forbidden": problems.get(ObjectStatus.FORBIDDEN, []),
                "waiting": problems.get(ObjectStatus.WAITING, []),
                "missing": problems.get(ObjectStatus.MISSING, []),
                "contested": problems.get("contested", []),
                "pending": len(self.applier.pending()),
            },
        }
        return ready, detail

    # -- running ----------------------------------------------------------------------------

    def configure(self) -> RouteRegistry:
        """Configure every plugin and collect its routes; ConfigError aborts the start."""
        routes = RouteRegistry()
        problems = []
        for sup in self.supervisor.supervised:
            sup.ctx = self._make_ctx(sup)
            try:
                self.plugins.configure(sup.ctx)
                self.plugins.register_routes(sup.ctx, routes)
            except ConfigError as e:
                problems.extend(e.prefixed(sup.ctx.config_path("")).problems)
        if problems:
            raise ConfigError(problems)
        return routes

    def _make_ctx(self, sup: Supervised) -> PluginContext:
        e = sup.entry
        return Context(
            self._shared,
            name=e.name,
            config=e.config,
            bootorder=e.bootorder,
            index=e.index,
            spawn=sup.spawn,
        )

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit code."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(
                install_signal_handlers(
                    self.stopping,
                    self.options.shutdown_timeout,
                    lambda: len(self.applier.pending()),
                )
            )
            stack.push_async_callback(step, "closing the object store", self.store.close)
            stack.push_async_callback(step, "stopping the watches", self.watches.close)
            stack.push_async_callback(step, "stopping the writers", self.applier.close)
            routes = self.configure()
            self.events.start()
            stack.push_async_callback(step, "stopping the Event recorder", self.events.close)
            self.pipeline.start()
            stack.push_async_callback(step, "stopping the results pipeline", self.pipeline.stop)
            stack.push_async_callback(step, "closing the servers", self.servers.cleanup)
            admin = make_admin_app(self.readiness, self.metrics)
            await self.servers.start(admin, self.options.admin_listen, routes)
            stack.push_async_callback(step, "flushing", self._flush)
            stack.push_async_callback(step, "kidecar_shutdown", self._shutdown_hooks)
            stack.push_async_callback(step, "stopping plugins", self._stop_plugins)
            stack.push_async_callback(step, "stopping the servers", self._stop_accepting)
            self._log_started()
            await self.supervisor.start_all()
            release_startup_memory()
            await self.stopping.wait()
        log.info("kidecar stopped")
        return 0

    def _log_started(self) -> None:
        log.info(
            "kidecar started for pod %s/%s with %s; plugins in boot order: %s",
            self.identity.namespace,
            self.identity.name,
            self.store.description,
            ", ".join(s.name for s in self.supervisor.supervised) or "none",
        )

    # -- teardown steps, in the order they run ------------------------------------------------

    async def _stop_accepting(self) -> None:
        self._shutdown_started = True
        self.stopping.set()
        await self.servers.stop_accepting(timeout=self.budget.left(0.2))

    async def _stop_plugins(self) -> None:
        await self.supervisor.stop_all(self.budget.left)

    async def _shutdown_hooks(self) -> None:
        awaitables = self.plugins.shutdown(self.view)
        await asyncio.wait_for(
            gather_logged(awaitables, "kidecar_shutdown"), timeout=self.budget.left(0.2)
        )

    async def _flush(self) -> None:
        await self.pipeline.join(timeout=self.budget.left(0.3))
        if not await self.applier.flush(timeout=self.budget.left(0.8)):
            log.warning(
                "shutdown budget exhausted with unwritten state for: %s",
                ", ".join(str(s.ref) for s in self.applier.pending()),
            )
        await self.events.drain(timeout=min(1.0, self.budget.left(0.5)))

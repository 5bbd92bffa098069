"""The runtime: one event loop, supervised plugins, the result pipeline and the HTTP servers.

Lifecycle of ``kidecar run``:

1. every configured plugin is configured and registers its routes (boot order);
2. the admin server and the plugins' servers start;
3. plugins start one after the other (boot order), each in a supervised task that then ticks it
   at its interval; a plugin that raises is restarted per ``restartpolicy`` with exponential
   backoff while the others keep running;
4. on SIGTERM/SIGINT: servers stop accepting, plugins stop (reverse boot order), pending writes
   are flushed, all within the shutdown budget; exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

import attrs
from aiohttp import web

from kidecar_core._config.loader import ConfiguredPlugin, LoadedConfig
from kidecar_core._persist.applier import Applier, Backoff
from kidecar_core._persist.precedence import OpsStatePrecedence
from kidecar_core._persist.result import Result
from kidecar_core._plugins.context import PluginContext, RuntimeView
from kidecar_core._plugins.manager import Plugins
from kidecar_core._plugins.registry import RouteRegistry
from kidecar_core._runtime.clock import LOOP_CLOCK, Clock
from kidecar_core._runtime.metrics import Metrics
from kidecar_core._runtime.schedule import every
from kidecar_core._runtime.servers import make_admin_app, parse_listen
from kidecar_core._store.events import EventRecorder
from kidecar_core._store.objects import ObjectRef, ObjectStore, PodIdentity
from kidecar_core.errors import ConfigError, StartupError

log = logging.getLogger("kidecar")

MAX_REQUEST_LINE = 64 * 1024
"""aiohttp's default (8190 bytes) would answer a long query string with its own plain-text 400:
a 4096-character download URL passed as a query parameter takes up to 12 bytes per character
once percent-encoded, and the API must answer it (JSON) itself."""


@attrs.frozen
class RuntimeOptions:
    admin_listen: str = "127.0.0.1:9090"
    shutdown_timeout: float = 20.0
    """Budget for a graceful stop; keep it below the pod's terminationGracePeriodSeconds."""
    start_timeout: float = 30.0
    resync_interval: float = 300.0
    restart_backoff: float = 0.5
    restart_backoff_cap: float = 60.0


class PluginFailed(Exception):
    def __init__(self, plugin: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed: {type(error).__name__}: {error}")
        self.error = error


@attrs.define(eq=False)
class Supervised:
    """The runtime's bookkeeping for one configured plugin."""

    entry: ConfiguredPlugin
    ctx: PluginContext | None = None
    status: str = "pending"  # pending | starting | running | failed | backoff | stopped
    last_error: str = ""
    restarts: int = 0
    tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    failure: asyncio.Future[BaseException] | None = None
    main: asyncio.Task[None] | None = None


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
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.store = store
        self.identity = identity
        self.options = options
        self.local_mode = local_mode
        self.metrics = Metrics()
        self.clock: Clock = LOOP_CLOCK
        self.events = EventRecorder(store, ObjectRef.pod(identity))
        self.applier = Applier(
            store,
            self.metrics,
            resync_interval=options.resync_interval,
            on_event=self.events.record,
        )
        self.ops_state = OpsStatePrecedence(config.top.ops_state_precedence)
        self.view = RuntimeView(self)
        self.supervised: list[Supervised] = [Supervised(p) for p in config.boot_sequence()]
        self.started = False
        self.seen: set[object] = set()
        self.stopping = asyncio.Event()
        self._results: asyncio.Queue[Result] = asyncio.Queue()
        self._runners: list[web.AppRunner] = []
        self._pipeline: asyncio.Task[None] | None = None
        self._shutdown_started = False

    # -- results ----------------------------------------------------------------------------

    def emit(self, result: Result) -> None:
        self.metrics.results.labels(result.plugin, result.kind or "result").inc()
        self._results.put_nowait(result)

    async def _pipeline_loop(self) -> None:
        while True:
            result = await self._results.get()
            try:
                await self._process(result)
            finally:
                self._results.task_done()

    async def _process(self, result: Result) -> None:
        try:
            await _gather_logged(self.plugins.on_result(result, self.view), "kidecar_on_result")
        except Exception:
            log.exception("kidecar_on_result failed for a result of %s", result.plugin)
        try:
            writes = self.plugins.persist(result, self.view)
        except Exception:
            log.exception(
                "kidecar_persist failed for a result of %s; result not stored", result.plugin
            )
            return
        self.applier.submit(self.ops_state.resolve(result, writes))
        for event in result.events:
            self.events.record(event)

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        plugins = {
            s.entry.name: {"status": s.status, "restarts": s.restarts, "error": s.last_error}
            for s in self.supervised
        }
        problems = self.applier.problems()
        ready = (
            self.started
            and not self._shutdown_started
            and all(s.status == "running" for s in self.supervised)
            and "forbidden" not in problems
        )
        detail = {
            "ready": ready,
            "plugins": plugins,
            "persistence": {
                "store": self.store.description,
                "degraded": problems.get("degraded", []),
                "forbidden": problems.get("forbidden", []),
                "waiting": problems.get("waiting", []),
                "pending": len(self.applier.pending()),
            },
        }
        return ready, detail

    # -- plugin supervision -----------------------------------------------------------------

    def _make_ctx(self, sup: Supervised) -> PluginContext:
        def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
            return self._spawn(sup, coro, name)

        e = sup.entry
        return PluginContext(
            self, name=e.name, config=e.config, bootorder=e.bootorder, index=e.index, spawn=spawn
        )

    def _spawn(
        self, sup: Supervised, coro: Coroutine[Any, Any, Any], name: str
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"kidecar:{sup.entry.name}:{name}")
        sup.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            sup.tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None and sup.failure is not None and not sup.failure.done():
                sup.failure.set_result(exc)

        task.add_done_callback(done)
        return task

    async def _supervise(self, sup: Supervised, started: asyncio.Future[None]) -> None:
        """Run one plugin: start, tick, and restart it per the restart policy."""
        assert sup.ctx is not None
        ctx = sup.ctx
        name = sup.entry.name
        backoff = Backoff(
            initial=self.options.restart_backoff, cap=self.options.restart_backoff_cap
        )
        policy = self.config.top.restart_policy
        while not self.stopping.is_set():
            sup.failure = asyncio.get_running_loop().create_future()
            sup.status = "starting"
            ran_since = time.monotonic()
            try:
                await asyncio.wait_for(
                    _gather(self.plugins.start(ctx)), timeout=self.options.start_timeout
                )
                sup.status = "running"
                self.metrics.plugin_up.labels(name).set(1)
                if not started.done():
                    started.set_result(None)
                interval = self.plugins.tick_interval(ctx)
                await self._run_until_failure(sup, interval)
                return  # stopping
            except asyncio.CancelledError:
                raise
            except Exception as e:
                error: BaseException = e.error if isinstance(e, PluginFailed) else e
                if isinstance(e, TimeoutError) and not isinstance(e, PluginFailed):
                    error = TimeoutError(
                        f"kidecar_start took longer than {self.options.start_timeout}s"
                    )
            self.metrics.plugin_up.labels(name).set(0)
            sup.status = "failed"
            sup.last_error = f"{type(error).__name__}: {error}"
            log.error("plugin %s failed: %s", name, sup.last_error, exc_info=error)
            if not started.done():
                started.set_result(None)
            await self._stop_plugin(sup, timeout=self.options.shutdown_timeout / 2)
            if policy == "Never":
                log.error("plugin %s stays down (restartpolicy: Never)", name)
                return
            if time.monotonic() - ran_since > 2 * self.options.restart_backoff_cap:
                backoff.reset()  # it ran fine for a long while: this is a new failure
            delay = backoff.next()
            sup.status = "backoff"
            log.info("restarting plugin %s in %.1fs (restartpolicy: %s)", name, delay, policy)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            if self.stopping.is_set():
                return
            sup.restarts += 1
            self.metrics.plugin_restarts.labels(name).inc()

    async def _run_until_failure(self, sup: Supervised, interval: float | None) -> None:
        assert sup.ctx is not None and sup.failure is not None
        ticker: asyncio.Task[None] | None = None
        if interval is not None:
            ticker = self._spawn(sup, self._tick_loop(sup, interval), "tick")
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        waiters: set[asyncio.Future[Any]] = {sup.failure, stop}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if sup.failure in done:
            raise PluginFailed(sup.entry.name, sup.failure.result())
        if ticker is not None:
            ticker.cancel()

    async def _tick_loop(self, sup: Supervised, interval: float) -> None:
        ctx = sup.ctx
        assert ctx is not None
        loop = asyncio.get_running_loop()
        histogram = self.metrics.tick_duration.labels(sup.entry.name)

        async def tick() -> None:
            started = loop.time()
            await _gather(self.plugins.tick(ctx))
            histogram.observe(loop.time() - started)

        await every(interval, tick)

    async def _stop_plugin(self, sup: Supervised, timeout: float) -> None:
        assert sup.ctx is not None
        try:
            await asyncio.wait_for(_gather(self.plugins.stop(sup.ctx)), timeout=timeout)
        except Exception as e:
            log.warning("plugin %s did not stop cleanly: %s", sup.entry.name, e)
        tasks = list(sup.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # -- running ----------------------------------------------------------------------------

    def configure(self) -> RouteRegistry:
        """Configure every plugin and collect its routes; ConfigError aborts the start."""
        routes = RouteRegistry()
        problems = []
        for sup in self.supervised:
            sup.ctx = self._make_ctx(sup)
            try:
                self.plugins.configure(sup.ctx)
                self.plugins.register_routes(sup.ctx, routes)
            except ConfigError as e:
                problems.extend(e.prefixed(sup.ctx.config_path("")).problems)
        if problems:
            raise ConfigError(problems)
        return routes

    async def _start_servers(self, routes: RouteRegistry) -> None:
        by_listen: dict[str | None, list[Any]] = {}
        for r in routes.routes:
            by_listen.setdefault(r.listen, []).append(r)
        admin = make_admin_app(self)
        for r in by_listen.pop(None, []):
            admin.router.add_route(r.method, r.path, r.handler)
        await self._serve(admin, self.options.admin_listen, "admin")
        for listen, rs in by_listen.items():
            assert listen is not None
            app = web.Application(client_max_size=64 * 1024)
            for r in rs:
                app.router.add_route(r.method, r.path, r.handler)
            await self._serve(app, listen, ",".join(sorted({r.plugin for r in rs})))

    async def _serve(self, app: web.Application, listen: str, what: str) -> None:
        host, port = parse_listen(listen)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            max_line_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise StartupError(f"cannot listen on {listen} for {what}: {e.strerror or e}") from None
        self._runners.append(runner)
        log.info("serving %s on http://%s:%s", what, host or "0.0.0.0", port)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        routes = self.configure()
        self._pipeline = loop.create_task(self._pipeline_loop(), name="kidecar-results")
        self.events.start()
        try:
            await self._start_servers(routes)
            log.info(
                "kidecar started for pod %s/%s with %s; plugins in boot order: %s",
                self.identity.namespace,
                self.identity.name,
                self.store.description,
                ", ".join(s.entry.name for s in self.supervised) or "none",
            )
            for sup in self.supervised:
                if self.stopping.is_set():
                    break
                started: asyncio.Future[None] = loop.create_future()
                sup.main = loop.create_task(
                    self._supervise(sup, started), name=f"kidecar:{sup.entry.name}"
                )
                await started  # boot order: the next plugin starts after this one
            self.started = True
            await self.stopping.wait()
        finally:
            await self._shutdown()
        return 0

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            # A second signal (Ctrl-C twice) means "don't wait": unwritten state is lost.
            log.warning(
                "second %s: exiting now without finishing the graceful stop "
                "(pending writes: %d objects)",
                sig.name,
                len(self.applier.pending()),
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)
        log.info("received %s: stopping (budget %.0fs)", sig.name, self.options.shutdown_timeout)
        self.stopping.set()

    def request_stop(self) -> None:
        self.stopping.set()

    async def _shutdown(self) -> None:
        self._shutdown_started = True
        self.stopping.set()
        deadline = time.monotonic() + self.options.shutdown_timeout

        def left(share: float = 1.0) -> float:
            return max(0.1, (deadline - time.monotonic()) * share)

        # Stop accepting new work first: the plugins' servers close their listening sockets
        # (requests in flight go on); the admin server keeps answering /healthz until the end.
        for runner in self._runners[1:]:
            for site in list(runner.sites):
                with contextlib.suppress(Exception):
                    await site.stop()
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.shutdown(), timeout=left(0.2))
        for sup in reversed(self.supervised):
            if sup.main is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(sup.main), timeout=left(0.1))
                sup.main.cancel()
            if sup.ctx is not None and sup.status not in ("pending",):
                await self._stop_plugin(sup, timeout=left(0.3))
            sup.status = "stopped"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_gather(self.plugins.shutdown(self.view)), timeout=left(0.2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._results.join(), timeout=left(0.3))
        flushed = await self.applier.flush(timeout=left(0.8))
        if not flushed:
            log.warning(
                "shutdown budget exhausted with unwritten state for: %s",
                ", ".join(str(s.ref) for s in self.applier.pending()),
            )
        await self.events.drain(timeout=min(1.0, left(0.5)))
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self._pipeline is not None:
            self._pipeline.cancel()
        await self.events.close()
        await self.applier.close()
        await self.store.close()
        log.info("kidecar stopped")


async def _gather(awaitables: list[Awaitable[Any]]) -> None:
    if awaitables:
        await asyncio.gather(*awaitables)


async def _gather_logged(awaitables: list[Awaitable[Any]], hook: str) -> None:
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            log.error("%s implementation failed: %s", hook, r, exc_info=r)

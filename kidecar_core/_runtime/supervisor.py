"""Plugin supervision: each configured plugin runs in a task that starts it, ticks it at its
interval and restarts it per ``restartpolicy`` with exponential backoff when it fails, while the
other plugins keep running.

Plugins start one after the other in boot order (the next once the previous one is running or
has failed) and stop in reverse boot order.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import attrs

from kidecar_core._base.backoff import Backoff
from kidecar_core._base.clock import Clock, sleep_unless
from kidecar_core._base.metrics import Metrics
from kidecar_core._base.schedule import every
from kidecar_core._base.tasks import guarded
from kidecar_core._config.loader import ConfiguredPlugin, RestartPolicy
from kidecar_core._plugins.context import PluginContext
from kidecar_core._plugins.manager import Plugins

log = logging.getLogger("kidecar")


class PluginStatus(enum.StrEnum):
    """Where a configured plugin is in its life, as ``/readyz`` reports it."""

    PENDING = "pending"
    """Not started yet (a plugin before it in boot order is starting)."""
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    """It raised; stays so under ``restartpolicy: Never``."""
    BACKOFF = "backoff"
    """Failed, waiting to be restarted."""
    STOPPED = "stopped"


@attrs.frozen
class SupervisionOptions:
    """Timing of supervision, in seconds."""

    start_timeout: float = 30.0
    """Longest a plugin's ``kidecar_start`` may take before it counts as failed."""
    restart_backoff: float = 0.5
    restart_backoff_cap: float = 60.0
    stop_timeout: float = 10.0
    """Longest a failed plugin's ``kidecar_stop`` may take before a restart."""


class PluginFailed(Exception):
    def __init__(self, plugin: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed: {type(error).__name__}: {error}")
        self.error = error


MakeContext = Callable[["Supervised"], PluginContext]


@attrs.define(eq=False)
class Supervised:
    """The bookkeeping for one configured plugin."""

    entry: ConfiguredPlugin
    ctx: PluginContext | None = None
    status: PluginStatus = PluginStatus.PENDING
    last_error: str = ""
    restarts: int = 0
    tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    failure: asyncio.Future[BaseException] | None = None
    main: asyncio.Task[None] | None = None
    logged: BaseException | None = None
    """The failure of one of its tasks, already logged by the task's guard."""

    @property
    def name(self) -> str:
        return self.entry.name

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A guarded task of this plugin: if it raises, the plugin has failed."""
        task = guarded(
            coro,
            f"kidecar:{self.name}:{name}",
            on_failure=self._failed,
            logger=logging.getLogger(f"kidecar.plugin.{self.name}"),
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _failed(self, error: BaseException) -> None:
        self.logged = error
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(error)


class Supervisor:
    """Starts, ticks, restarts and stops the configured plugins."""

    def __init__(
        self,
        plugins: Plugins,
        entries: list[ConfiguredPlugin],
        *,
        policy: RestartPolicy,
        options: SupervisionOptions,
        metrics: Metrics,
        clock: Clock,
        stopping: asyncio.Event,
    ) -> None:
        self.plugins = plugins
        self.supervised = [Supervised(e) for e in entries]
        self.policy = policy
        self.options = options
        self.metrics = metrics
        self.clock = clock
        self.stopping = stopping
        self.started = False

    def all_running(self) -> bool:
        return all(s.status == PluginStatus.RUNNING for s in self.supervised)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per plugin: status, restarts and the last error, for ``/readyz``."""
        return {
            s.name: {"status": str(s.status), "restarts": s.restarts, "error": s.last_error}
            for s in self.supervised
        }

    async def start_all(self) -> None:
        """Start the plugins in boot order, each once the one before is running (or failed)."""
        loop = asyncio.get_running_loop()
        for sup in self.supervised:
            if self.stopping.is_set():
                break
            started: asyncio.Future[None] = loop.create_future()
            sup.main = guarded(self._supervise(sup, started), f"kidecar:{sup.name}")
            await started
        self.started = True

    async def stop_all(self, budget: Callable[[float], float]) -> None:
        """Stop the plugins in reverse boot order; ``budget(share)`` gives each step's time."""
        for sup in reversed(self.supervised):
            if sup.main is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(sup.main), timeout=budget(0.1))
                sup.main.cancel()
            if sup.ctx is not None and sup.status != PluginStatus.PENDING:
                await self._stop_plugin(sup, timeout=budget(0.3))
            sup.status = PluginStatus.STOPPED

    async def _supervise(self, sup: Supervised, started: asyncio.Future[None]) -> None:
        """Run one plugin until the sidecar stops, restarting it per the restart policy."""
        backoff = Backoff(self.options.restart_backoff, self.options.restart_backoff_cap)
        while not self.stopping.is_set():
            ran_since = self.clock.now()
            error = await self._run_once(sup, started)
            if error is None:
                return  # stopping
            self._mark_failed(sup, error)
            if not started.done():
                started.set_result(None)
            await self._stop_plugin(sup, timeout=self.options.stop_timeout)
            if self.policy == "Never":
                log.error("plugin %s stays down (restartpolicy: Never)", sup.name)
                return
            if self.clock.now() - ran_since > 2 * self.options.restart_backoff_cap:
                backoff.reset()  # it ran fine for a long while: this is a new failure
            if not await self._wait_to_restart(sup, backoff.next()):
                return

    async def _run_once(
        self, sup: Supervised, started: asyncio.Future[None]
    ) -> BaseException | None:
        """Start and run the plugin; the error it failed with, ``None`` when stopping."""
        assert sup.ctx is not None
        sup.failure = asyncio.get_running_loop().create_future()
        sup.status = PluginStatus.STARTING
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the awaited work completes, and the task would then never end.
        try:
            async with asyncio.timeout(self.options.start_timeout):
                await gather(self.plugins.start(sup.ctx))
        except TimeoutError:
            return TimeoutError(f"kidecar_start took longer than {self.options.start_timeout}s")
        except Exception as e:
            return e
        sup.status = PluginStatus.RUNNING
        self.metrics.plugin_up.labels(sup.name).set(1)
        if not started.done():
            started.set_result(None)
        try:
            await self._run_until_failure(sup, self.plugins.tick_interval(sup.ctx))
        except PluginFailed as e:
            return e.error
        except Exception as e:
            return e
        return None

    def _mark_failed(self, sup: Supervised, error: BaseException) -> None:
        self.metrics.plugin_up.labels(sup.name).set(0)
        sup.status = PluginStatus.FAILED
        sup.last_error = f"{type(error).__name__}: {error}"
        traceback = None if error is sup.logged else error  # a task's guard logged it already
        log.error("plugin %s failed: %s", sup.name, sup.last_error, exc_info=traceback)

    async def _wait_to_restart(self, sup: Supervised, delay: float) -> bool:
        """Back off ``delay`` seconds; False when the sidecar stops meanwhile."""
        sup.status = PluginStatus.BACKOFF
        log.info("restarting plugin %s in %.1fs (restartpolicy: %s)", sup.name, delay, self.policy)
        if await sleep_unless(self.clock, delay, self.stopping):
            return False
        sup.restarts += 1
        self.metrics.plugin_restarts.labels(sup.name).inc()
        return True

    async def _run_until_failure(self, sup: Supervised, interval: float | None) -> None:
        assert sup.failure is not None
        ticker: asyncio.Task[None] | None = None
        if interval is not None:
            ticker = sup.spawn(self._tick_loop(sup, interval), "tick")
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({sup.failure, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if sup.failure in done:
            raise PluginFailed(sup.name, sup.failure.result())
        if ticker is not None:
            ticker.cancel()

    async def _tick_loop(self, sup: Supervised, interval: float) -> None:
        ctx = sup.ctx
        assert ctx is not None
        histogram = self.metrics.tick_duration.labels(sup.name)

        async def tick() -> None:
            started = self.clock.now()
            await gather(self.plugins.tick(ctx))
            histogram.observe(self.clock.now() - started)

        await every(interval, tick, clock=self.clock)

    async def _stop_plugin(self, sup: Supervised, timeout: float) -> None:
        assert sup.ctx is not None
        try:
            async with asyncio.timeout(timeout):
                await gather(self.plugins.stop(sup.ctx))
        except Exception as e:
            log.warning("plugin %s did not stop cleanly: %s", sup.name, e)
        tasks = list(sup.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def gather(awaitables: list[Awaitable[Any]]) -> None:
    """Await hook results together; the first failure is raised."""
    if awaitables:
        await asyncio.gather(*awaitables)

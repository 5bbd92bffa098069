"""Each hook through the core's own machinery, in process: the plugin manager, the supervisor on
a :class:`~kidecar_core.testing.ManualClock`, the pipeline.  (The end-to-end runs are in
``test_runtime.py``; every hook has a test named for it, see ``tests/meta/test_hook_docs.py``.)"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import attrs
import pytest

from kidecar_core import (
    ConfigError,
    ContainerPort,
    Metrics,
    ObjectRef,
    PodRequirements,
    Result,
    StartupError,
    Write,
    hookimpl,
)
from kidecar_core._config.loader import ConfiguredPlugin
from kidecar_core._plugins.manager import InstalledPlugin, Plugins
from kidecar_core._runtime.pipeline import Pipeline
from kidecar_core._runtime.supervisor import PluginStatus, SupervisionOptions, Supervisor
from kidecar_core.testing import FakeContext, ManualClock


@attrs.frozen
class Conf:
    period: float | None = 2.0
    fail_starts: int = 0


def manager(*plugins: tuple[str, object], files: tuple[tuple[str, object], ...] = ()) -> Plugins:
    """A plugin manager with these service plugins (configured, in this boot order) and override
    files, and no entry points."""
    pm = Plugins({})
    for name, module in plugins:
        pm._add(InstalledPlugin(name, f"dist-{name}", "1.0", module, "entry point"))
    for name, module in files:
        pm._add(InstalledPlugin(name, "(local file)", "-", module, f"/overrides/{name}.py"))
    pm.check_hooks()
    pm.activate([ConfiguredPlugin(name, i, i, None) for i, (name, _) in enumerate(plugins)])
    return pm


class Lifecycle:
    """A service plugin that records its lifecycle on the fake clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, float]] = []
        self.clock: ManualClock | None = None

    def note(self, ctx: Any, what: str) -> None:
        if ctx.name == self.name:
            self.calls.append((what, ctx.clock.now()))

    @hookimpl
    def kidecar_config_schema(self, name: str) -> type | None:
        return Conf if name == self.name else None

    @hookimpl
    def kidecar_start(self, ctx: Any) -> None:
        self.note(ctx, "start")
        if ctx.name == self.name and ctx.config.fail_starts > 0:
            ctx.config = attrs.evolve(ctx.config, fail_starts=ctx.config.fail_starts - 1)
            raise RuntimeError("start fails on purpose")

    @hookimpl
    def kidecar_tick_interval(self, ctx: Any) -> float | None:
        period: float | None = ctx.config.period
        return period if ctx.name == self.name else None

    @hookimpl
    def kidecar_tick(self, ctx: Any) -> None:
        self.note(ctx, "tick")

    @hookimpl
    def kidecar_stop(self, ctx: Any) -> None:
        self.note(ctx, "stop")


def supervise(
    pm: Plugins, plugin: Lifecycle, conf: Conf, clock: ManualClock, policy: str = "Always"
) -> tuple[Supervisor, FakeContext, asyncio.Event]:
    stopping = asyncio.Event()
    sup = Supervisor(
        pm,
        [ConfiguredPlugin(plugin.name, 0, 0, conf)],
        policy=policy,  # type: ignore[arg-type]
        options=SupervisionOptions(restart_backoff=1.0, restart_backoff_cap=8.0),
        metrics=Metrics(),
        clock=clock,
        stopping=stopping,
    )
    ctx = FakeContext(plugin.name, conf, clock=clock)
    ctx.spawn = sup.supervised[0].spawn  # type: ignore[method-assign]
    sup.supervised[0].ctx = ctx
    return sup, ctx, stopping


# -- registration --------------------------------------------------------------------------------


class Storage:
    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    @hookimpl
    def kidecar_register_storage_types(self, register: Any) -> None:
        register.storage_type(self.type_name, key=self.type_name.lower(), config_class=Conf)


def test_kidecar_register_storage_types_collects_every_type_and_refuses_a_clash() -> None:
    pm = manager(files=(("a", Storage("Audit")), ("b", Storage("Mirror"))))
    registry = pm.storage_types()
    assert sorted(registry.types) == ["Audit", "Mirror"]
    assert registry.types["Audit"].plugin == "a" and set(registry.by_key()) == {"audit", "mirror"}
    clash = manager(files=(("a", Storage("Audit")), ("b", Storage("Audit"))))
    with pytest.raises(StartupError, match="storage type 'Audit' is registered twice"):
        clash.storage_types()


# -- lifecycle ---------------------------------------------------------------------------------


class Schema:
    @hookimpl(tryfirst=True)
    def kidecar_config_schema(self, name: str) -> type | None:
        return dict if name == "first" else None


def test_kidecar_config_schema_is_addressed_and_the_first_result_wins() -> None:
    first, second = Lifecycle("first"), Lifecycle("second")
    assert manager(("first", first), ("second", second)).config_schema("second") is Conf
    # Addressed: "second" does not answer for "first"; an override file with tryfirst wins.
    pm = manager(("first", first), ("second", second), files=(("schema", Schema()),))
    assert pm.config_schema("first") is dict
    assert pm.config_schema("second") is Conf


class Checks:
    @hookimpl
    def kidecar_configure(self, ctx: Any) -> None:
        raise ConfigError.single("period", "must be a multiple of 2")


def test_kidecar_configure_problems_name_the_plugin_config_path(tmp_path: Path) -> None:
    from kidecar_core._config.loader import KidecarConfig, LoadedConfig
    from kidecar_core._runtime.runtime import Runtime, RuntimeOptions
    from kidecar_core._store.local import LocalStore
    from kidecar_core._store.objects import PodIdentity

    plugin = Lifecycle("p")
    pm = manager(("p", plugin), files=(("checks", Checks()),))
    loaded = LoadedConfig(KidecarConfig(), (ConfiguredPlugin("p", 0, 3, Conf()),))
    identity = PodIdentity("gs-0", "default")
    store = LocalStore(tmp_path / "state.json", identity)
    runtime = Runtime(loaded, pm, store, identity, RuntimeOptions(), local_mode=True)
    with pytest.raises(ConfigError) as info:
        runtime.configure()
    assert [str(p) for p in info.value.problems] == [
        "plugins[3].config.period: must be a multiple of 2"
    ]


class Routes:
    @hookimpl
    def kidecar_register_routes(self, ctx: Any, routes: Any) -> None:
        async def handler(request: Any) -> Any:
            raise NotImplementedError

        routes.add("get", "/status", handler)
        routes.add("POST", "/hook", handler, listen="127.0.0.1:0")


def test_kidecar_register_routes_records_method_path_address_and_plugin() -> None:
    from kidecar_core import RouteRegistry

    pm = manager(("p", Lifecycle("p")), files=(("routes", Routes()),))
    registry = RouteRegistry()
    pm.register_routes(FakeContext("p"), registry)
    assert [(r.method, r.path, r.listen, r.plugin) for r in registry.routes] == [
        ("GET", "/status", None, "p"),
        ("POST", "/hook", "127.0.0.1:0", "p"),
    ]
    with pytest.raises(StartupError, match="GET /status on the admin server is registered twice"):
        pm.register_routes(FakeContext("p"), registry)


def test_kidecar_start_then_kidecar_tick_at_the_period_on_the_runtime_clock() -> None:
    async def main() -> list[tuple[str, float]]:
        plugin = Lifecycle("p")
        clock = ManualClock()
        sup, _ctx, stopping = supervise(manager(("p", plugin)), plugin, Conf(period=2.0), clock)
        await sup.start_all()
        await clock.advance(5.0)
        assert sup.all_running()
        stopping.set()
        await sup.stop_all(lambda share: 1.0)
        return plugin.calls

    assert asyncio.run(main()) == [
        ("start", 0.0),
        ("tick", 0.0),
        ("tick", 2.0),
        ("tick", 4.0),
        ("stop", 5.0),
    ]


def test_kidecar_tick_interval_none_means_the_plugin_is_never_ticked() -> None:
    async def main() -> list[str]:
        plugin = Lifecycle("p")
        clock = ManualClock()
        sup, _, stopping = supervise(manager(("p", plugin)), plugin, Conf(period=None), clock)
        await sup.start_all()
        await clock.advance(100.0)
        stopping.set()
        await sup.stop_all(lambda share: 1.0)
        return [what for what, _ in plugin.calls]

    assert asyncio.run(main()) == ["start", "stop"]


def test_kidecar_start_failures_are_restarted_with_growing_backoff_on_the_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> tuple[list[float], Supervisor]:
        plugin = Lifecycle("p")
        clock = ManualClock()
        conf = Conf(period=None, fail_starts=100)
        sup, _ctx, stopping = supervise(manager(("p", plugin)), plugin, conf, clock)
        await sup.start_all()
        await clock.wait_for_sleepers(1)
        assert sup.supervised[0].status == PluginStatus.BACKOFF
        # Delays of at most 1, 2 and 4 s, and at least 4 s before the fifth start.
        await clock.advance(7.0)
        starts = [t for what, t in plugin.calls if what == "start"]
        stopping.set()
        await sup.stop_all(lambda share: 1.0)
        return starts, sup

    with caplog.at_level(logging.INFO, logger="kidecar"):
        starts, sup = asyncio.run(main())
    assert len(starts) == 4 and sup.supervised[0].restarts == 3
    delays = [b - a for a, b in itertools.pairwise(starts)]
    # Backoff 1 s doubling, with jitter in the upper half of each ceiling.
    for delay, ceiling in zip(delays, (1.0, 2.0, 4.0), strict=True):
        assert ceiling / 2 <= delay <= ceiling, delays
    assert "plugin p failed: RuntimeError: start fails on purpose" in caplog.text


class Spawner(Lifecycle):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.task: asyncio.Task[None] | None = None
        self.cancelled_at_stop: bool | None = None

    @hookimpl
    def kidecar_start(self, ctx: Any) -> None:
        self.task = ctx.spawn(asyncio.sleep(3600), "sleeper")

    @hookimpl
    def kidecar_stop(self, ctx: Any) -> None:
        assert self.task is not None
        self.cancelled_at_stop = self.task.cancelled()


def test_kidecar_stop_runs_before_the_plugin_tasks_are_cancelled() -> None:
    async def main() -> Spawner:
        plugin = Spawner("p")
        clock = ManualClock()
        sup, _, stopping = supervise(manager(("p", plugin)), plugin, Conf(period=None), clock)
        await sup.start_all()
        await clock.advance(1.0)
        stopping.set()
        await sup.stop_all(lambda share: 1.0)
        return plugin

    plugin = asyncio.run(main())
    assert plugin.cancelled_at_stop is False
    assert plugin.task is not None and plugin.task.cancelled()


class Needs:
    @hookimpl
    def kidecar_pod_requirements(self, name: str, config: Any) -> PodRequirements | None:
        return PodRequirements(ports=(ContainerPort("api", 5000),)) if name == "p" else None


def test_kidecar_pod_requirements_are_collected_for_the_named_plugin() -> None:
    pm = manager(("p", Lifecycle("p")), ("q", Lifecycle("q")), files=(("needs", Needs()),))
    assert pm.pod_requirements("p", None) == [PodRequirements(ports=(ContainerPort("api", 5000),))]
    assert pm.pod_requirements("q", None) == []


# -- results -------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.events: list[Any] = []

    def submit(self, writes: list[Write]) -> None:
        self.writes.extend(writes)

    def record(self, event: Any) -> None:
        self.events.append(event)


class Observer:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def kidecar_on_result(self, result: Result, runtime: Any) -> Any:
        self.seen.append(result.state)

        async def fail() -> None:
            raise RuntimeError("observer broken on purpose")

        return fail() if result.state == "bad" else None


def pipeline(pm: Plugins) -> tuple[Pipeline, Recorder]:
    sink = Recorder()
    return Pipeline(pm, FakeContext(), sink, sink, Metrics()), sink  # type: ignore[arg-type]


def test_kidecar_on_result_sees_every_result_and_its_failure_does_not_stop_persisting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = Observer()
    pm = manager(files=(("observer", observer),))
    pod = ObjectRef.pod(FakeContext().identity)

    async def main() -> Recorder:
        line, sink = pipeline(pm)
        for state in ("bad", "good"):
            write = Write(pod, {"metadata": {"labels": {"s": state}}})
            await line.process(Result(plugin="p", state=state, writes=(write,)))
        return sink

    sink = asyncio.run(main())
    assert observer.seen == ["bad", "good"]
    assert [w.patch["metadata"]["labels"]["s"] for w in sink.writes] == ["bad", "good"]
    assert "kidecar_on_result implementation failed: observer broken on purpose" in caplog.text


class Backend:
    @hookimpl
    def kidecar_persist(self, result: Result, runtime: Any) -> list[Write]:
        pod = ObjectRef.pod(runtime.identity)
        return [Write(pod, {"metadata": {"annotations": {"state": result.state}}}, source="b")]


class DropAnnotations:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(wrapper=True)
    def kidecar_persist(self, result: Result, runtime: Any) -> Any:
        contributions = yield
        self.seen = contributions
        return [
            [w for w in c or [] if "annotations" not in w.patch["metadata"]] for c in contributions
        ]


def test_kidecar_persist_wrapper_sees_every_contribution_including_result_writes() -> None:
    wrapper = DropAnnotations()
    pm = manager(files=(("backend", Backend()), ("wrapper", wrapper)))
    view = FakeContext()
    pod = ObjectRef.pod(view.identity)
    own = Write(pod, {"metadata": {"labels": {"own": "yes"}}}, source="result")
    plan = pm.persist(Result(plugin="p", state="up", writes=(own,)), view)
    # The backend's write and the result's own write (joined by the core, last) reach the
    # wrapper; it dropped the annotation.
    assert [[w.source for w in c] for c in wrapper.seen] == [["b"], ["result"]]
    assert plan.writes == [own] and plan.rejected == []

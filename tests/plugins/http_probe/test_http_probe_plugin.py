"""The plugin's hooks in process: start/stop own their session and tasks; a restart keeps the
effective states (nothing re-emitted) and does not wait for the start delay again."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any, cast

import pytest

from kidecar_core import Result, StorageConfig
from kidecar_core._plugins.context import PluginContext
from kidecar_core._runtime.metrics import Metrics
from kidecar_plugins.http_probe import plugin
from kidecar_plugins.http_probe.config import Endpoint, HttpProbeConfig, JsonPathConfig
from kidecar_plugins.http_probe.runner import ProbeRun
from tests.plugins.http_probe.game import GameHTTP, answer


class Context:
    """The part of :class:`PluginContext` the plugin uses, recording what it emits and spawns."""

    def __init__(self, config: HttpProbeConfig) -> None:
        self.name = "http_probe"
        self.config = config
        self.state: dict[str, Any] = {}
        self.log = logging.getLogger("test.http_probe")
        self.metrics = Metrics()
        self.results: list[Result] = []
        self.tasks: list[asyncio.Task[Any]] = []

    def config_path(self, sub: str) -> str:
        return f"plugins[0].config.{sub}"

    def emit(self, result: Result) -> None:
        self.results.append(result)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    @property
    def ctx(self) -> PluginContext:
        return cast(PluginContext, self)


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


async def start(context: Context) -> None:
    awaitable = plugin.kidecar_start(context.ctx)
    assert awaitable is not None
    await awaitable


async def stop(context: Context) -> None:
    awaitable = plugin.kidecar_stop(context.ctx)
    assert awaitable is not None
    await awaitable


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_schema_only_for_its_own_name() -> None:
    assert plugin.kidecar_config_schema("http_probe") is HttpProbeConfig
    assert plugin.kidecar_config_schema("hot_update") is None


def test_results_carry_state_storage_and_source(game: GameHTTP) -> None:
    game.set("/s", {"data": {"state": "Allocated"}})
    storage = StorageConfig("HTTPMetric", {})
    endpoint = Endpoint(
        url=game.url("/s"), json_path_config=JsonPathConfig("data.state"), storage_config=storage
    )
    context = Context(HttpProbeConfig((Endpoint(url=game.url("/other")), endpoint)))
    game.set("/other", "x")

    async def scenario() -> None:
        await start(context)
        await until(lambda: len(context.results) == 2)
        await stop(context)

    asyncio.run(scenario())
    by_endpoint = {r.data["endpoint"]: r for r in context.results}
    result = by_endpoint[1]
    assert (result.plugin, result.state, result.kind) == ("http_probe", "Allocated", "probe")
    assert result.storage is storage
    assert result.source == "plugins[0].config.endpoints[1].storageConfig"
    assert result.data["url"] == game.url("/s")
    assert result.data["previous"] is None


def test_stop_cancels_probes_and_closes_the_session(game: GameHTTP) -> None:
    game.set("/s", "None")
    context = Context(HttpProbeConfig((Endpoint(url=game.url("/s")),), probe_interval_seconds=0))

    async def scenario() -> ProbeRun:
        await start(context)
        run: ProbeRun = context.state["run"]
        await until(lambda: game.count("/s") >= 3)
        await stop(context)
        return run

    run = asyncio.run(scenario())
    assert run.session.closed
    assert all(t.done() for t in context.tasks)
    assert "run" not in context.state
    assert context.results[0].state == "None"


def test_a_restart_keeps_effective_states_and_skips_the_start_delay(game: GameHTTP) -> None:
    game.set("/s", "Allocated")
    config = HttpProbeConfig(
        (Endpoint(url=game.url("/s")),), start_delay_seconds=0.5, probe_interval_seconds=0.1
    )
    context = Context(config)

    async def scenario() -> None:
        await start(context)
        await until(lambda: len(context.results) == 1)
        await stop(context)
        # Restarted (after a crash, say): probing resumes at once, the same state is not
        # emitted again, a new one is.
        count = game.count("/s")
        restarted = time.monotonic()
        await start(context)
        await until(lambda: game.count("/s") >= count + 3, timeout=2)
        assert game.requests("/s")[count].at - restarted < 0.4
        assert len(context.results) == 1
        game.set("/s", "WaitToBeDeleted")
        await until(lambda: len(context.results) == 2)
        await stop(context)

    asyncio.run(scenario())
    assert [r.state for r in context.results] == ["Allocated", "WaitToBeDeleted"]
    assert context.results[1].data["previous"] == "Allocated"


def samples(context: Context) -> dict[str, float]:
    """The plugin's samples on /metrics: ``name{labels}`` → value."""
    lines = context.metrics.exposition().decode().splitlines()
    pairs = (line.rsplit(" ", 1) for line in lines if line.startswith("kidecar_http_probe"))
    return {key: float(value) for key, value in pairs}


def test_the_interval_is_a_period_not_a_pause(game: GameHTTP) -> None:
    game.set("/slow", answer("None", delay=0.2))  # shorter than the period
    game.set("/slower", answer("None", delay=0.5))  # longer than the period
    endpoints = (Endpoint(url=game.url("/slow")), Endpoint(url=game.url("/slower")))
    context = Context(HttpProbeConfig(endpoints, probe_interval_seconds=0.3))

    async def scenario() -> None:
        await start(context)
        await until(lambda: game.count("/slow") >= 7 and game.count("/slower") >= 4)
        await stop(context)

    asyncio.run(scenario())

    def gaps(path: str) -> list[float]:
        times = [r.at for r in game.requests(path)]
        return [b - a for a, b in itertools.pairwise(times)]

    # Start to start: 0.3 s (a pause after each probe would make it 0.5 s).
    assert all(0.25 < gap < 0.4 for gap in gaps("/slow")), gaps("/slow")
    # An overrun is followed at once by the next probe (0.5 s), not at the next period (0.6 s).
    assert all(0.45 < gap < 0.58 for gap in gaps("/slower")), gaps("/slower")


def test_metrics_count_probes_by_outcome(game: GameHTTP) -> None:
    game.set("/s", "None")
    context = Context(
        HttpProbeConfig(
            (Endpoint(url=game.url("/s")), Endpoint(url=game.url("/missing"))),
            probe_interval_seconds=0,
        )
    )
    probes = "kidecar_http_probe_probes_total"
    ok = f'{probes}{{endpoint="0",outcome="success",plugin="http_probe"}}'
    status = f'{probes}{{endpoint="1",outcome="status",plugin="http_probe"}}'

    async def scenario() -> None:
        await start(context)
        await until(lambda: samples(context)[ok] >= 2 and samples(context)[status] >= 2)
        await stop(context)

    asyncio.run(scenario())
    found = samples(context)
    assert found[f'{probes}{{endpoint="1",outcome="success",plugin="http_probe"}}'] == 0
    assert found['kidecar_http_probe_duration_seconds_count{endpoint="0",plugin="http_probe"}'] >= 2
    assert found['kidecar_http_probe_state_changes_total{endpoint="0",plugin="http_probe"}'] == 1

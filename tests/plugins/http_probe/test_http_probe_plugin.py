"""The plugin's hooks in process: start/stop own their session and tasks; a restart keeps the
effective states (nothing re-emitted) and does not wait for the start delay again.  Time is a
:class:`ManualClock` wherever a test is about periods or delays."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidecar_core import LOOP_CLOCK, Clock, ConfigError, ManualClock, StorageConfig
from kidecar_core.testing import FakeContext
from kidecar_plugins.http_probe import plugin
from kidecar_plugins.http_probe.config import Endpoint, HttpProbeConfig, JsonPathConfig
from kidecar_plugins.http_probe.runner import ProbeRun
from tests.plugins.http_probe.game import GameHTTP, answer


def Context(config: HttpProbeConfig, clock: Clock = LOOP_CLOCK) -> FakeContext:
    """The plugin's context, recording what it emits and spawns (on the real clock unless a
    :class:`ManualClock` is given)."""
    return FakeContext("http_probe", config, clock=clock)


@pytest.fixture
def game() -> Iterator[GameHTTP]:
    with GameHTTP() as server:
        yield server


async def start(context: FakeContext) -> None:
    if plugin._TARGETS not in context.state:
        plugin.kidecar_configure(context)
    awaitable = plugin.kidecar_start(context)
    assert awaitable is not None
    await awaitable


async def stop(context: FakeContext) -> None:
    awaitable = plugin.kidecar_stop(context)
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
        run: ProbeRun = context.state[plugin._RUN]
        await until(lambda: game.count("/s") >= 3)
        await stop(context)
        return run

    run = asyncio.run(scenario())
    assert run.session.closed
    assert all(t.done() for t in context.tasks)
    assert plugin._RUN not in context.state
    assert context.results[0].state == "None"


def test_a_restart_keeps_effective_states_and_skips_the_start_delay(game: GameHTTP) -> None:
    game.set("/s", "Allocated")
    config = HttpProbeConfig(
        (Endpoint(url=game.url("/s")),), start_delay_seconds=30, probe_interval_seconds=5
    )
    clock = ManualClock()
    context = Context(config, clock)

    async def scenario() -> None:
        await start(context)
        await clock.advance(29.9)
        assert game.count("/s") == 0  # the game's boot time
        await clock.advance(0.1)
        assert game.count("/s") == 1 and len(context.results) == 1
        await clock.advance(2)  # the plugin crashes 2 s later and is restarted
        await stop(context)
        # Probing resumes at once (the clock does not move), the same state is not emitted
        # again, a new one is.
        await start(context)
        await until(lambda: game.count("/s") == 2)
        assert len(context.results) == 1
        game.set("/s", "WaitToBeDeleted")
        await clock.wait_for_sleepers(1)
        await clock.advance(5)
        assert game.count("/s") == 3
        await stop(context)

    asyncio.run(scenario())
    assert [r.state for r in context.results] == ["Allocated", "WaitToBeDeleted"]
    assert context.results[1].data["previous"] == "Allocated"


def test_each_endpoint_is_probed_at_the_period_on_its_own(game: GameHTTP) -> None:
    game.set("/fast", "None")
    game.set("/slow", answer("None", delay=30))  # hangs until its timeout, in real time
    endpoints = (Endpoint(url=game.url("/fast")), Endpoint(url=game.url("/slow"), timeout=30))
    clock = ManualClock()
    context = Context(HttpProbeConfig(endpoints, probe_interval_seconds=0.3), clock)

    async def scenario() -> None:
        await start(context)
        await clock.wait_for_sleepers(1)  # the fast endpoint answered and sleeps
        for n in range(2, 6):
            await clock.advance(0.29)
            assert game.count("/fast") == n - 1
            await clock.advance(0.01)
            assert game.count("/fast") == n
        assert game.count("/slow") == 1  # still waiting for its first answer
        await stop(context)

    asyncio.run(scenario())
    assert [r.data["endpoint"] for r in context.results] == [0]


def test_a_bad_ca_file_is_a_config_error_naming_the_endpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)  # read by OpenSSL, it would block the sidecar for ever
    endpoints = (
        Endpoint(url="https://127.0.0.1:1/"),
        Endpoint(url="https://127.0.0.1:1/", ca_file=str(garbage)),
        Endpoint(url="https://127.0.0.1:1/", ca_file=str(tmp_path / "missing.pem")),
        Endpoint(url="https://127.0.0.1:1/", ca_file=str(fifo)),
        Endpoint(url="https://127.0.0.1:1/", ca_file=str(tmp_path)),
    )
    context = Context(HttpProbeConfig(endpoints))
    with pytest.raises(ConfigError) as caught:
        plugin.kidecar_configure(context)
    problems = {p.path: p.message for p in caught.value.problems}
    assert sorted(problems) == [f"endpoints[{i}].caFile" for i in range(1, 5)]
    assert problems["endpoints[1].caFile"].startswith(f"cannot load {garbage}: ")
    assert "No such file or directory" in problems["endpoints[2].caFile"]
    assert "not a regular file" in problems["endpoints[3].caFile"]
    assert "not a regular file" in problems["endpoints[4].caFile"]


def samples(context: FakeContext) -> dict[str, float]:
    """The plugin's samples on /metrics: ``name{labels}`` → value."""
    lines = context.metrics.exposition().decode().splitlines()
    pairs = (line.rsplit(" ", 1) for line in lines if line.startswith("kidecar_http_probe"))
    return {key: float(value) for key, value in pairs}


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

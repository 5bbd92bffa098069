"""Probing on a period, one task per endpoint, on kidecar's probe kit: results only on change,
no endpoint waits for another.  Time is a :class:`ManualClock`: no assertion reads the wall
clock."""

from __future__ import annotations

import asyncio
from typing import Any

from kidecar_core import ManualClock, Metrics, ProbeLoop, ProbeOutcome, Result
from tcp_probe_servers import GamePort, closed_port

from kidecar_tcp_probe.config import Endpoint
from kidecar_tcp_probe.runner import Target, TcpMetrics, endpoint_loop


def target(endpoint: Endpoint, index: int = 0, **states: str) -> Target:
    return Target(
        plugin="tcp_probe",
        index=index,
        endpoint=endpoint,
        up_state=states.get("up_state", "Reachable"),
        down_state=states.get("down_state", "Unreachable"),
        source=f"plugins[0].config.endpoints[{index}].storageConfig",
    )


def make_loop(t: Target, results: list[Result], metrics: TcpMetrics, **kw: Any) -> ProbeLoop:
    return endpoint_loop(t, thresholds=t.thresholds(), emit=results.append, metrics=metrics, **kw)


def sample(metrics: Metrics, name: str, endpoint: str = "0", **labels: str) -> float:
    value = metrics.registry.get_sample_value(
        name, {"plugin": "tcp_probe", "endpoint": endpoint, **labels}
    )
    return 0.0 if value is None else value


def test_results_only_when_the_state_changes() -> None:
    results: list[Result] = []
    loop = make_loop(
        target(Endpoint(port=1, failure_threshold=2)), results, TcpMetrics.of(Metrics())
    )
    for ok in (True, True, False, False, False, True, True):
        if ok:
            loop.observe(ProbeOutcome("success", "Reachable", seconds=0.01))
        else:
            loop.observe(ProbeOutcome("timeout", reason="slow", seconds=0.01))
    assert [r.state for r in results] == ["Reachable", "Unreachable", "Reachable"]
    first, down, up = results
    assert first.events == ()  # a healthy start is no news
    assert (down.data["previous"], down.data["reason"], down.data["up"]) == (
        "Reachable",
        "slow",
        False,
    )
    (event,) = down.events
    assert (event.reason, event.type) == ("TcpProbeUnreachable", "Warning")
    assert "failed 2 times in a row: slow" in event.message
    assert [e.reason for e in up.events] == ["TcpProbeReachable"]
    assert all(r.source == "plugins[0].config.endpoints[0].storageConfig" for r in results)
    assert all((r.plugin, r.kind) == ("tcp_probe", "probe") for r in results)


def test_configured_state_names_are_used() -> None:
    results: list[Result] = []
    t = target(Endpoint(port=1, failure_threshold=1), up_state="1", down_state="0")
    loop = make_loop(t, results, TcpMetrics.of(Metrics()))
    loop.observe(ProbeOutcome("refused", reason="refused"))
    loop.observe(ProbeOutcome("success", "1"))
    assert [r.state for r in results] == ["0", "1"]


def test_a_hanging_endpoint_does_not_delay_another(game: GamePort) -> None:
    registry = Metrics()
    metrics = TcpMetrics.of(registry)
    results: list[Result] = []

    async def scenario() -> None:
        clock = ManualClock()
        with GamePort() as hanging:
            hanging.reply, hanging.delay = b"PONG", 30  # accepts, then says nothing for 30 s
            slow = make_loop(
                target(Endpoint(port=hanging.port, expect="PONG", timeout=30, failure_threshold=1)),
                results,
                metrics,
                clock=clock,
            )
            fast = make_loop(
                target(Endpoint(port=game.port), index=1), results, metrics, clock=clock
            )
            tasks = [asyncio.create_task(loop.run(period=0.1)) for loop in (slow, fast)]
            await clock.wait_for_sleepers(1)  # the fast one probed and sleeps, the slow one waits
            for _ in range(6):
                await clock.advance(0.1)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert sample(registry, "kidecar_tcp_probe_probes_total", "1", outcome="success") == 7
    assert sample(registry, "kidecar_tcp_probe_probes_total", "0", outcome="timeout") == 0
    assert [(r.data["endpoint"], r.state) for r in results] == [(1, "Reachable")]


def test_the_period_is_start_to_start_and_the_start_delay_is_honoured() -> None:
    registry = Metrics()
    results: list[Result] = []

    async def scenario() -> None:
        clock = ManualClock()
        t = target(Endpoint(port=closed_port(), failure_threshold=2))
        loop = make_loop(t, results, TcpMetrics.of(registry), clock=clock)
        task = asyncio.create_task(loop.run(period=0.2, delay=0.3))
        await clock.advance(0.29)
        assert sample(registry, "kidecar_tcp_probe_probes_total", outcome="refused") == 0
        await clock.advance(0.41)  # probes at 0.3, 0.5, 0.7
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert sample(registry, "kidecar_tcp_probe_probes_total", outcome="refused") == 3
    assert [r.state for r in results] == ["Unreachable"]
    assert sample(registry, "kidecar_tcp_probe_up") == 0

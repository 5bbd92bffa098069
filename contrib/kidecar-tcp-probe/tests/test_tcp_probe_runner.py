"""Probing on a period, one task per endpoint: results only on change, no endpoint waits for
another."""

from __future__ import annotations

import asyncio
from typing import Any

from kidecar_core import Metrics, Result
from tcp_probe_servers import GamePort, closed_port

from kidecar_tcp_probe.config import Endpoint
from kidecar_tcp_probe.probe import ProbeOutcome
from kidecar_tcp_probe.runner import EndpointProber, ProbeMetrics, Target
from kidecar_tcp_probe.state import UpDown


def prober(
    endpoint: Endpoint, results: list[Result], metrics: ProbeMetrics, index: int = 0, **kw: Any
) -> EndpointProber:
    target = Target(
        plugin="tcp_probe",
        index=index,
        endpoint=endpoint,
        up_state=kw.pop("up_state", "Reachable"),
        down_state=kw.pop("down_state", "Unreachable"),
        source=f"plugins[0].config.endpoints[{index}].storageConfig",
    )
    updown = UpDown(endpoint.success_threshold, endpoint.failure_threshold)
    return EndpointProber(target, updown=updown, emit=results.append, metrics=metrics, **kw)


def run_for(seconds: float, *probers: EndpointProber, delay: float = 0.0) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(p.run(delay)) for p in probers]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_results_only_when_the_state_changes() -> None:
    results: list[Result] = []
    p = prober(Endpoint(port=1, failure_threshold=2), results, ProbeMetrics.of(Metrics()), period=1)
    for ok in (True, True, False, False, False, True, True):
        p.observe(ProbeOutcome("success" if ok else "timeout", "" if ok else "slow", 0.01))
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
    p = prober(
        Endpoint(port=1, failure_threshold=1),
        results,
        ProbeMetrics.of(Metrics()),
        period=1,
        up_state="1",
        down_state="0",
    )
    p.observe(ProbeOutcome("refused", "refused", 0.0))
    p.observe(ProbeOutcome("success", "", 0.0))
    assert [r.state for r in results] == ["0", "1"]


def test_a_hanging_endpoint_does_not_delay_another(game: GamePort) -> None:
    with GamePort() as hanging:
        hanging.reply, hanging.delay = b"PONG", 10  # accepts, then says nothing for 10s
        metrics = ProbeMetrics.of(Metrics())
        results: list[Result] = []
        slow = prober(
            Endpoint(port=hanging.port, expect="PONG", timeout=2, failure_threshold=1),
            results,
            metrics,
            index=0,
            period=0.1,
        )
        fast = prober(Endpoint(port=game.port), results, metrics, index=1, period=0.1)
        run_for(0.8, slow, fast)
    fast_probes = metrics.probes.labels("tcp_probe", "1", "success")._value.get()
    assert fast_probes >= 6, fast_probes  # every 0.1s while the other waits 2s for its reply
    assert [(r.data["endpoint"], r.state) for r in results] == [(1, "Reachable")]


def test_the_period_is_start_to_start_and_the_start_delay_is_honoured() -> None:
    metrics = ProbeMetrics.of(Metrics())
    results: list[Result] = []
    p = prober(Endpoint(port=closed_port(), failure_threshold=2), results, metrics, period=0.2)
    run_for(0.75, p, delay=0.3)  # probes at 0.3, 0.5, 0.7
    refused = metrics.probes.labels("tcp_probe", "0", "refused")._value.get()
    assert refused == 3
    assert [r.state for r in results] == ["Unreachable"]
    assert metrics.up.labels("tcp_probe", "0")._value.get() == 0

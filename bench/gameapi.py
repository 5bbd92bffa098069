"""Figure 8 (the game API): PATCH -> GameServer updated latency, and API writes for 100 PATCHes.

Two sidecars with only ``game_api``, each for its own Pod and GameServer:

* latency: the sidecar talks to the API server directly (TLS, like figure 3). A ``PATCH
  /v1/gameserver`` changes ``opsState``; the time until the GameServer event with the new value
  arrives on a watch (admin client). Each PATCH comes after a pause longer than the write
  interval, so it is the first of its interval and written at once (what a game's occasional
  state change sees);
* coalescing: the sidecar talks through the counting proxy. 100 PATCHes paced evenly over one
  second (changing ``deletionPriority`` and ``opsState`` each time); the PATCH requests the API
  server receives for the GameServer are counted once the last value is there.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import (
    BenchSidecar,
    Figure,
    Options,
    Row,
    median,
    percentile,
    running,
    sidecar_config,
    wait_until,
)
from bench.kube import BenchCluster, OpsStateWatch
from kidecar_core.testing import free_port
from kidecar_plugins.game_api.client import GameApiClient

LATENCY_TARGET = 0.05
WRITES_TARGET = 3
PAUSE = 0.6  # longer than the default write interval (0.5 s): each PATCH is written at once
STATES = ("Allocated", "WaitToBeDeleted", "None")


def game_api_plugin(port: int) -> dict[str, Any]:
    return {"name": "game_api", "config": {"listen": f"127.0.0.1:{port}"}}


def start_sidecar(opts: Options, bench: BenchCluster, name: str, kubeconfig: str) -> Any:
    port = free_port()
    bench.create_game_server(name)
    sidecar = BenchSidecar(
        opts.workdir / "gameapi" / name, sidecar_config(game_api_plugin(port)),
        kubeconfig=kubeconfig, pod_name=name, namespace=bench.namespace,
    )  # fmt: skip
    return sidecar, GameApiClient(f"http://127.0.0.1:{port}")


def latencies(opts: Options, bench: BenchCluster) -> list[float]:
    name = "gameapi-latency"
    count = opts.pick(50, len(STATES))
    rng = random.Random(8)
    delays: list[float] = []
    sidecar, api = start_sidecar(opts, bench, name, str(bench.sa_kubeconfig))
    with running([sidecar]), OpsStateWatch(bench, name) as watch:
        watch.wait_for("None", 10)
        sidecar.start(wait_ready=True)
        api.patch(deletion_priority=1)  # warm-up: first connections, first write
        wait_until(lambda: bench.gameserver(name)["spec"].get("deletionPriority") == 1, 10, "up")
        for k in range(count):
            time.sleep(PAUSE + rng.uniform(0, 0.2))
            state = STATES[k % len(STATES)]
            watch.drain()
            sent = time.monotonic()
            api.set_ops_state(state)
            delays.append(watch.wait_for(state, 10) - sent)
    return delays


def writes_for_a_burst(opts: Options, bench: BenchCluster) -> tuple[int, float]:
    name = "gameapi-burst"
    sidecar, api = start_sidecar(opts, bench, name, str(bench.proxy_kubeconfig))
    with running([sidecar]):
        sidecar.start(wait_ready=True)
        time.sleep(1)
        bench.proxy.reset()
        started = time.monotonic()
        for i in range(100):
            api.patch(deletion_priority=i, ops_state=STATES[i % len(STATES)])
            time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
        elapsed = time.monotonic() - started
        wait_until(
            lambda: bench.gameserver(name)["spec"].get("deletionPriority") == 99, 10, "the last"
        )
        return bench.proxy.count("PATCH", bench.gameserver_path(name)), elapsed


def run(opts: Options, bench: BenchCluster) -> Figure:
    fig = Figure(8, "Game API")
    delays = latencies(opts, bench)
    p95 = percentile(delays, 95)
    fig.details["latencies_ms"] = [round(d * 1000, 2) for d in delays]
    fig.add(
        Row(
            "PATCH /v1/gameserver -> GameServer updated",
            p95 * 1000,
            "ms",
            f"p50 {median(delays) * 1000:.1f} / p95 {p95 * 1000:.1f} / "
            f"max {max(delays) * 1000:.1f} ms",
            f"p95 <= {LATENCY_TARGET * 1000:.0f} ms",
            p95 <= LATENCY_TARGET,
            f"{len(delays)} opsState changes, each {PAUSE:g}-{PAUSE + 0.2:g} s after the last "
            "(the first write of its interval); from just before the PATCH to the GameServer "
            "event on a watch (admin client) of the real API server; the sidecar talks to it "
            "directly (ServiceAccount, TLS)",
        )
    )
    writes, elapsed = writes_for_a_burst(opts, bench)
    fig.details["burst_seconds"] = round(elapsed, 3)
    fig.add(
        Row(
            "API writes for 100 PATCHes in one second",
            writes,
            "writes",
            f"{writes} PATCH of the GameServer (100 requests in {elapsed:.2f} s)",
            f"<= {WRITES_TARGET}",
            writes <= WRITES_TARGET,
            "100 PATCHes (deletionPriority and opsState) paced evenly over one second; PATCH "
            "requests to the GameServer counted by the proxy in front of the API server until "
            "the last value is there (write interval 0.5 s: the first at once, then one per "
            "interval)",
        )
    )
    return fig

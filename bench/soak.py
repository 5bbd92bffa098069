"""Figure 7: soak. 10,000 probes and 200 hot updates through one sidecar; RSS and fds over time.

The sidecar runs against the real API server (through the counting proxy) with both plugins:
http_probe with 4 endpoints at the fastest period (0.1 s; endpoint 0 drives opsState, the others
pod annotations) and hot_update (SIGHUP to a game process, 1 MiB file from a loopback server).
While it probes, one endpoint changes state about every second (so results are written to the
API server all along) and a hot update is posted about every 1.25 s. RSS and open fds are read
after the first 10% of the work (warm-up: first connections, caches, allocator arenas) and after
the end, each time after a quiet second; growth is end minus warm-up.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    BenchSidecar,
    Figure,
    MiB,
    Options,
    Row,
    hot_update_plugin,
    num_fds,
    probe_plugin,
    rss_bytes,
    running,
    sidecar_config,
)
from bench.game import StateGame
from bench.hotupdate import file_server, make_file, post_update, signal_game
from bench.kube import BenchCluster
from kidecar_core.testing import free_port

ENDPOINTS = 4
PERIOD = 0.1
GROWTH_TARGET = 2 * MiB
STATES = (("Allocated", "None"), ("Busy", "Idle"))


def run(opts: Options, bench: BenchCluster) -> Figure:
    fig = Figure(7, "Soak")
    probes = opts.pick(10_000, 300)
    updates = opts.pick(200, 10)
    duration = probes / (ENDPOINTS / PERIOD)
    gap = duration / updates
    workdir = opts.workdir / "soak"
    serve = workdir / "serve"
    serve.mkdir(parents=True)
    make_file(serve / "small.bin", MiB)
    name = "soak-0"
    bench.create_game_server(name)
    samples: list[dict[str, Any]] = []
    with (
        StateGame(ENDPOINTS) as game,
        file_server(serve) as base,
        signal_game(workdir) as (process_name, _log),
    ):
        for i in range(1, ENDPOINTS):
            game.set(i, "Idle")
        port = free_port()
        plugins = (
            probe_plugin(game.urls, PERIOD),
            hot_update_plugin(workdir / "files", port, process_name),
        )
        sidecar = BenchSidecar(
            workdir / "sidecar", sidecar_config(*plugins), kubeconfig=str(bench.proxy_kubeconfig),
            pod_name=name, namespace=bench.namespace,
        )  # fmt: skip
        with running([sidecar]):
            sidecar.start(wait_ready=True)
            served = game.count()
            started = time.monotonic()
            baseline: dict[str, Any] | None = None
            done_updates = 0
            flips = 0
            deadline = started + 3 * duration + 60
            while done_updates < updates or game.count() - served < probes:
                if time.monotonic() > deadline:
                    raise TimeoutError("soak: the sidecar fell far behind; see its log")
                tick = time.monotonic()
                if done_updates < updates:
                    post_update(port, f"v3.0.{done_updates}", base + "small.bin")
                    done_updates += 1
                ep = flips % ENDPOINTS
                game.set(ep, STATES[min(ep, 1)][(flips // ENDPOINTS) % 2])
                flips += 1
                sample = _sample(sidecar, game.count() - served, done_updates, started)
                samples.append(sample)
                if (
                    baseline is None
                    and done_updates >= updates / 10
                    and (sample["probes"] >= probes / 10)
                ):
                    time.sleep(1.0)
                    baseline = _sample(sidecar, game.count() - served, done_updates, started)
                time.sleep(max(0.0, tick + gap - time.monotonic()))
            time.sleep(1.0)
            end = _sample(sidecar, game.count() - served, done_updates, started)
            assert baseline is not None
            metric_probes = sidecar.probes()
            updates_ok = sidecar.metric_sum(
                "kidecar_hot_update_updates_total", {"result": "success", "trigger": "api"}
            )
    growth = end["rss"] - baseline["rss"]
    fds = [s["fds"] for s in samples]
    fig.details.update(
        baseline=baseline,
        end=end,
        probes_metric=metric_probes,
        updates_succeeded=updates_ok,
        state_changes=flips,
        api_writes=bench.writes(),
        samples=samples[:: max(1, len(samples) // 50)],
    )
    fig.add(
        Row(
            f"RSS growth over {probes:,} probes + {updates} hot updates",
            growth / MiB,
            "MiB",
            f"{growth / MiB:+.2f} MiB ({baseline['rss'] / MiB:.1f} -> {end['rss'] / MiB:.1f})",
            "<= 2 MiB",
            growth <= GROWTH_TARGET,
            f"psutil RSS after 10% of the work (warm-up) and at the end; {ENDPOINTS} endpoints "
            f"at {PERIOD:g} s, {flips} state changes written to the real API server, one update "
            f"every {gap:.2f} s (1 MiB file, SIGHUP)",
        )
    )
    fig.add(
        Row(
            "open file descriptors",
            float(end["fds"] - baseline["fds"]),
            "fds",
            f"{baseline['fds']} -> {end['fds']} (min {min(fds)}, max {max(fds)})",
            "stable",
            end["fds"] <= baseline["fds"],
            "psutil num_fds of the sidecar at each step; growth end minus warm-up",
        )
    )
    return fig


def _sample(sidecar: BenchSidecar, probes: int, updates: int, started: float) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - started, 1),
        "probes": probes,
        "updates": updates,
        "rss": rss_bytes(sidecar.pid),
        "fds": num_fds(sidecar.pid),
    }

"""Figures 1 (idle RSS) and 4 (API writes at steady state), from one run of idle sidecars.

``repeat`` local-mode sidecars and ``repeat`` sidecars against the real API server (through the
counting proxy, each with its own Pod and GameServer) are started together, all configured with
both plugins: http_probe with 2 endpoints at 1 s (endpoint 0 drives the GameServer's opsState,
endpoint 1 a pod annotation) and hot_update listening. Their RSS is read 60 s after start; the
local ones then stop. The API-server ones go on: the API writes of the 5-minute steady window are
counted, then both endpoints change state a few times and the writes per change are counted.
Running the idle sidecars side by side does not change any one's RSS (it is per process) and
they use well under 1% of a CPU each, so they do not disturb one another.
"""

from __future__ import annotations

import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    STATE_ANNOTATION,
    BenchSidecar,
    Figure,
    MiB,
    Options,
    Row,
    hot_update_plugin,
    median,
    probe_plugin,
    rss_bytes,
    running,
    sidecar_config,
    spawn,
    wait_until,
)
from bench.convergence import requests_row
from bench.game import StateGame
from bench.incluster import InClusterSidecar, unavailable
from bench.kube import BenchCluster
from kidecar_core.testing import free_port

IDLE_TARGET = 48 * MiB
"""Issue 17: at most 1.2 x the Go predecessor's 39.9 MiB."""
FLOOR_CODE = (
    "import kidecar_core, kidecar_plugins, sys; print('ready', flush=True); sys.stdin.read()"
)
PYTHON_CODE = "import sys; print('ready', flush=True); sys.stdin.read()"
RUN_IMPORTS = (
    "import sys, kidecar_core.cli, kidecar_core._runtime.bootstrap, kidecar_core._store.kube\n"
    "from importlib.metadata import entry_points\n"
    "for ep in entry_points(group='kidecar'): ep.load()\n"
)
IN_POD_CODE = RUN_IMPORTS + "print('ready', flush=True); sys.stdin.read()"
"""What ``kidecar run`` imports in a pod (in-cluster configuration), before it starts."""
KUBECONFIG_CODE = (
    RUN_IMPORTS + "kidecar_core._store.kube.k8s.kube_config()\n"
    "print('ready', flush=True); sys.stdin.read()"
)
"""The same with ``--kubeconfig`` (the loader brings requests, oauthlib, pydantic): the
benchmark's API-server sidecars, which cannot use a pod's in-cluster configuration."""
OPS_CYCLE = ("Allocated", "None")
ANNOTATION_CYCLE = ("Busy", "Idle")


def resident_after_import(code: str) -> int:
    """RSS of ``python -c code`` once it printed ``ready`` (its imports are done)."""
    proc = spawn([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"`python -c {code!r}` did not start")
        return rss_bytes(proc.pid)
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(10)


def _mib(value: float) -> str:
    return f"{value / MiB:.1f} MiB"


def _memory(pid: int) -> dict[str, float]:
    full = psutil.Process(pid).memory_full_info()
    return {"rss_mib": full.rss / MiB, "uss_mib": full.uss / MiB, "pss_mib": full.pss / MiB}


def run(
    opts: Options, bench: BenchCluster | None, want: set[int], steady_seconds: float | None = None
) -> list[Figure]:
    """Figures 1, 4 and/or 12 (``want``); 4 and 12 need ``bench``."""
    idle = opts.pick(60.0, 3.0)
    steady = steady_seconds or opts.pick(300.0, 4.0)
    changes = opts.pick(10, 2)
    workdir = opts.workdir / "steady"
    figures: list[Figure] = []
    fig1 = Figure(1, "Idle RSS") if 1 in want else None
    fig4 = Figure(4, "API writes at steady state") if 4 in want and bench is not None else None
    fig12 = Figure(12, "API requests at steady state") if 12 in want and bench is not None else None

    if fig1 is not None:
        floor = [resident_after_import(FLOOR_CODE) for _ in range(opts.repeat)]
        bare = [resident_after_import(PYTHON_CODE) for _ in range(opts.repeat)]
        fig1.details["floor_rss_mib"] = [x / MiB for x in floor]
        fig1.details["python_rss_mib"] = [x / MiB for x in bare]
        for key, code in (("in_pod", IN_POD_CODE), ("kubeconfig", KUBECONFIG_CODE)):
            values = [resident_after_import(code) for _ in range(opts.repeat)]
            fig1.details[f"{key}_imports_rss_mib"] = [x / MiB for x in values]

    with StateGame(2) as game, running([]) as sidecars:
        game.set(1, "Idle")
        local: list[BenchSidecar] = []
        kube: list[tuple[str, BenchSidecar]] = []
        pods: list[tuple[str, BenchSidecar]] = []  # in-cluster configuration, as in a pod
        no_pods = unavailable() if fig1 is not None and bench is not None else "not wanted"
        if fig1 is not None and bench is not None and no_pods is not None:
            fig1.details["in_cluster_skipped"] = no_pods
        for i in range(opts.repeat):
            if fig1 is not None:
                local.append(
                    BenchSidecar(
                        workdir / f"local-{i}", _config(game, workdir / f"local-{i}"),
                        pod_name=f"local-{i}",
                    )
                )  # fmt: skip
            if bench is not None:
                name = f"steady-{i}"
                bench.create_game_server(name)
                kube.append(
                    (name, BenchSidecar(
                        workdir / f"kube-{i}", _config(game, workdir / f"kube-{i}"),
                        kubeconfig=str(bench.proxy_kubeconfig), pod_name=name,
                        namespace=bench.namespace,
                    ))
                )  # fmt: skip
            if bench is not None and no_pods is None:
                name = f"pod-{i}"
                bench.create_game_server(name)
                pods.append((name, InClusterSidecar(
                    workdir / name, _config(game, workdir / name), bench=bench, pod_name=name
                )))  # fmt: skip
        sidecars.extend(local + [sc for _, sc in kube] + [sc for _, sc in pods])
        started = time.monotonic()
        for sc in sidecars:
            sc.start(wait_ready=True)
        # Settled: each sidecar has written its first state (endpoint 1's annotation).
        for sc in local:
            sc.wait_for(partial(_local_annotation_is, sc, "Idle"), 20, "the first state")
        for name, _ in kube + pods:
            assert bench is not None
            wait_until(partial(_recorded_is, bench, name, 1, "Idle"), 20, f"{name}'s first state")
        time.sleep(
            opts.pick(2.0, 0.5)
        )  # let any follow-up request of the start settle before counting
        if bench is not None:
            bench.proxy.reset()
        window_start = time.monotonic()

        if fig1 is not None:
            time.sleep(max(0.0, started + idle - time.monotonic()))
            _idle_rows(fig1, local, [sc for _, sc in kube], idle, [sc for _, sc in pods])
            for sc in local + [sc for _, sc in pods]:
                sc.stop()
            figures.append(fig1)

        if (fig4 is not None or fig12 is not None) and bench is not None:
            time.sleep(max(0.0, window_start + steady - time.monotonic()))
            if fig12 is not None:
                requests_row(fig12, bench, len(kube), time.monotonic() - window_start)
                figures.append(fig12)
            if fig4 is not None:
                _steady_rows(fig4, bench, game, kube, steady, changes)
                figures.append(fig4)
    return figures


def _config(game: StateGame, workdir: Path) -> dict[str, Any]:
    """Both plugins: http_probe with the game's 2 endpoints at 1 s, hot_update listening."""
    return sidecar_config(
        probe_plugin(game.urls, 1.0),
        hot_update_plugin(workdir / "files", free_port(), "bench-game-not-running"),
    )


def _idle_rows(
    fig: Figure,
    local: list[BenchSidecar],
    kube: list[BenchSidecar],
    idle: float,
    pods: list[BenchSidecar],
) -> None:
    local_rss = [rss_bytes(sc.pid) for sc in local]
    kube_rss = [rss_bytes(sc.pid) for sc in kube]
    pod_rss = [rss_bytes(sc.pid) for sc in pods]
    fig.details["local_rss_mib"] = [x / MiB for x in local_rss]
    fig.details["kube_rss_mib"] = [x / MiB for x in kube_rss]
    fig.details["in_cluster_rss_mib"] = [x / MiB for x in pod_rss]
    fig.details["memory_full_info"] = [_memory(sc.pid) for sc in local + kube + pods]
    config = "both plugins: http_probe 2 endpoints at 1 s, hot_update listening"
    for label, values in (
        ("local mode", local_rss),
        ("real API server (--kubeconfig)", kube_rss),
        ("real API server, in-cluster configuration (as in a pod)", pod_rss),
    ):
        if not values:
            continue
        value = median([float(v) for v in values])
        fig.add(
            Row(
                f"idle RSS, {label}",
                value / MiB,
                "MiB",
                _mib(value),
                f"<= {IDLE_TARGET / MiB:g} MiB",
                value <= IDLE_TARGET,
                f"psutil RSS of `kidecar run` >= {idle:g} s after start ({config}); "
                f"median of {len(values)} sidecars",
            )
        )
    floor = median(fig.details["floor_rss_mib"])
    python = median(fig.details["python_rss_mib"])
    fig.add(
        Row(
            "floor: python -c 'import kidecar_core, kidecar_plugins'",
            floor,
            "MiB",
            f"{floor:.1f} MiB",
            method=f"psutil RSS after the imports; bare interpreter: {python:.1f} MiB",
        )
    )
    in_pod = median(fig.details["in_pod_imports_rss_mib"])
    kubeconfig = median(fig.details["kubeconfig_imports_rss_mib"])
    fig.add(
        Row(
            "imports of `kidecar run`: in a pod / with --kubeconfig",
            in_pod,
            "MiB",
            f"{in_pod:.1f} / {kubeconfig:.1f} MiB",
            method="psutil RSS after importing the CLI, the runtime, the Kubernetes store and "
            "every installed plugin (in a pod: the in-cluster loader only; --kubeconfig: plus "
            "the client's kubeconfig loader, as the sidecars above use). The difference is what "
            "an idle sidecar in a pod saves over the measured ones",
        )
    )


def _recorded_is(bench: BenchCluster, name: str, endpoint: int, state: str) -> bool:
    """Whether the API server holds ``state`` for ``endpoint`` of sidecar ``name``."""
    if endpoint == 0:
        return bool(bench.gameserver(name)["spec"].get("opsState") == state)
    return bench.pod_annotations(name).get(STATE_ANNOTATION) == state


def _local_annotation_is(sidecar: BenchSidecar, state: str) -> bool:
    annotations = sidecar.state()["pod"]["metadata"].get("annotations") or {}
    return bool(annotations.get(STATE_ANNOTATION) == state)


def _steady_rows(
    fig: Figure,
    bench: BenchCluster,
    game: StateGame,
    kube: list[tuple[str, BenchSidecar]],
    steady: float,
    changes: int,
) -> None:
    writes = bench.writes()
    reads = bench.requests() - writes
    fig.details["steady_seconds"] = steady
    fig.details["steady_requests"] = {f"{m} {p}": n for (m, p), n in bench.proxy.counts().items()}
    fig.add(
        Row(
            f"API writes in {steady / 60:g} min at steady state",
            float(writes),
            "writes",
            f"{writes} ({reads} reads)",
            "0",
            writes == 0,
            f"write requests counted by the proxy in front of the API server, "
            f"{len(kube)} sidecars x 2 endpoints at 1 s, steady game; reads: watch requests "
            "and reads (none at steady state: the Pod and the GameServer are watched)",
        )
    )

    bench.proxy.reset()
    expected: dict[str, int] = {}
    for k in range(changes):
        ep = k % 2
        cycle = OPS_CYCLE if ep == 0 else ANNOTATION_CYCLE
        state = cycle[(k // 2) % 2]
        game.set(ep, state)
        for name, _ in kube:
            path = bench.gameserver_path(name) if ep == 0 else bench.pod_path(name)
            expected[path] = expected.get(path, 0) + 1
            wait_until(
                partial(_recorded_is, bench, name, ep, state), 15, f"{name} to record {state!r}"
            )
        time.sleep(1.5)  # two more probe periods: a duplicate write would show up now
    total = bench.writes()
    per_object = {path: bench.writes(path) for path in expected}
    patches = sum(per_object.values())
    events = bench.proxy.count("POST", r"/events$")
    ops_changes = sum(n for path, n in expected.items() if "/gameservers/" in path)
    n_changes = changes * len(kube)
    fig.details["changes"] = {"per_sidecar": changes, "sidecars": len(kube)}
    fig.details["writes_per_object"] = per_object
    fig.details["change_requests"] = {f"{m} {p}": n for (m, p), n in bench.proxy.counts().items()}
    fig.add(
        Row(
            "object writes (PATCH) per state change",
            patches / n_changes,
            "writes/change",
            f"{patches}/{n_changes} (+{events} Events, {total} writes in all)",
            "exactly 1",
            per_object == expected and total == patches + events and events <= ops_changes,
            f"{changes} changes per sidecar alternating between the endpoints (opsState, "
            "annotation), each awaited on the API server, then 1.5 s for duplicates; "
            "write requests per object counted by the proxy. Besides, each opsState change "
            "records one `OpsStateChanged` Event on the pod (by design, rate-limited)",
        )
    )

"""Figure 9: ``pod_probe`` (Kruise's serverless PodProbeMarker protocol) against the real API
server: CPU per probe by handler, and pod writes per state change.

A pod carries Kruise's ``kruise.io/podprobe`` annotation; ``kidecar run`` (ServiceAccount and
Role of deploy/base, through the counting proxy) runs its probes and writes the pod conditions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from kubernetes import client as k8s

from bench.common import (
    BenchSidecar,
    Figure,
    Options,
    Row,
    at_least,
    median,
    running,
    sidecar_config,
    wait_until,
)
from bench.game import StateGame
from bench.kube import BenchCluster

PROBES_METRIC = "kidecar_pod_probe_probes_total"
STATUS_WRITES = r"/pods/{name}/status$"
CPU_TARGET = 0.002  # as http_probe's figure 2
PERIOD = 1  # kruise-daemon's minimum period


def entry(name: str, probe: dict[str, Any]) -> dict[str, Any]:
    return {
        "containerName": "game",
        "name": name,
        "podConditionType": f"game.kruise.io/{name}",
        "probe": {"periodSeconds": PERIOD, "timeoutSeconds": 2, **probe},
    }


def handler_probes(kind: str, count: int, game: StateGame) -> list[dict[str, Any]]:
    """``count`` probes of one handler: TCP and HTTP to the game's server (which accepts every
    connection, as a game would), exec of ``true``."""
    url = urlsplit(game.url(0))
    if kind == "tcpSocket":
        return [entry(f"tcp-{i}", {"tcpSocket": {"port": url.port}}) for i in range(count)]
    if kind == "httpGet":
        http = {"httpGet": {"port": url.port, "path": url.path}}
        return [entry(f"http-{i}", http) for i in range(count)]
    return [entry(f"exec-{i}", {"exec": {"command": ["true"]}}) for i in range(count)]


class PodProbeRun:
    """One pod with its annotation and a sidecar running ``pod_probe`` for it."""

    def __init__(self, opts: Options, bench: BenchCluster, name: str, probes: list[Any]) -> None:
        bench.cluster.create_game_server(
            bench.namespace, name, pod_annotations={"kruise.io/podprobe": json.dumps(probes)}
        )
        self.bench = bench
        self.name = name
        self.sidecar = BenchSidecar(
            opts.workdir / "podprobe" / name,
            sidecar_config({"name": "pod_probe", "config": {}}),
            kubeconfig=str(bench.proxy_kubeconfig),
            pod_name=name,
            namespace=bench.namespace,
        )

    def probes(self) -> float:
        return self.sidecar.metric_sum(PROBES_METRIC)

    def cpu(self) -> float:
        """user+sys CPU of the sidecar and of the children it waited for (exec probes)."""
        t = psutil.Process(self.sidecar.pid).cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def conditions(self) -> dict[str, dict[str, Any]]:
        with self.bench.cluster.admin_api_client() as api:
            pod = k8s.CoreV1Api(api).read_namespaced_pod(self.name, self.bench.namespace)
            found = api.sanitize_for_serialization(pod)["status"].get("conditions") or []
        return {c["type"]: c for c in found}


def cpu_per_probe(
    opts: Options, bench: BenchCluster, kind: str, game: StateGame
) -> tuple[Row, list[dict[str, Any]]]:
    count = 10 if kind != "exec" else 4
    window = opts.pick(60, 2)
    per_probe: list[float] = []
    runs = []
    for r in range(opts.repeat):
        run = PodProbeRun(opts, bench, f"pp-{kind.lower()}-{r}", handler_probes(kind, count, game))
        with running([run.sidecar]):
            run.sidecar.start(wait_ready=True)
            wait_until(at_least(run.probes, opts.pick(3, 1) * count), 30, "warm-up probes")
            before, cpu0 = run.probes(), run.cpu()
            time.sleep(window)
            cpu1, n = run.cpu(), run.probes() - before
            per_probe.append((cpu1 - cpu0) / n)
            runs.append({"probes": n, "cpu_s": round(cpu1 - cpu0, 4), "seconds": window})
    value = median(per_probe)
    row = Row(
        f"CPU per {kind} probe",
        value * 1000,
        "ms",
        f"{value * 1000:.3f} ms",
        "<= 2 ms",
        value <= CPU_TARGET,
        f"psutil user+sys CPU delta of `kidecar run` (exec: with its children) / probes on "
        f"/metrics; {count} {kind} probes at {PERIOD} s for {window} s against the real API "
        f"server (the pod followed through the watch); median of {opts.repeat} runs",
    )
    return row, runs


def writes_per_change(opts: Options, bench: BenchCluster, workdir: Path) -> list[Row]:
    """An exec probe whose output flips; one pods/status PATCH per flip, none while steady."""
    changes = opts.pick(30, 2)
    state = workdir / "podprobe-state"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("idle")
    # failureThreshold 3 (OKG's default): one `cat` slower than its timeout on a loaded machine
    # must not count as a change.
    probe = {"exec": {"command": ["cat", str(state)]}, "failureThreshold": 3}
    run = PodProbeRun(opts, bench, "pp-writes", [entry("idle", probe)])
    path = STATUS_WRITES.format(name=run.name)
    with running([run.sidecar]):
        run.sidecar.start(wait_ready=True)
        condition = "game.kruise.io/idle"
        wait_until(lambda: run.conditions().get(condition, {}).get("message") == "idle", 20, "idle")
        bench.proxy.reset()
        steady_probes = run.probes()
        time.sleep(opts.pick(30, 2))
        steady_writes, steady_n = bench.writes(path), run.probes() - steady_probes
        bench.proxy.reset()
        for k in range(changes):
            text = "busy" if k % 2 == 0 else "idle"
            state.write_text(text)
            wait_until(lambda t=text: run.conditions()[condition].get("message") == t, 20, text)
        time.sleep(2 * PERIOD)
        writes = bench.writes(path)
        others = bench.writes(rf"/pods/{run.name}$")
    return [
        Row(
            "pods/status writes while steady",
            steady_writes,
            "writes",
            f"{steady_writes} in {steady_n:.0f} probes",
            "0",
            steady_writes == 0,
            "PATCH/PUT/POST on pods/status counted by the proxy while the probe's result stays",
        ),
        Row(
            "pods/status writes per condition change",
            writes / changes,
            "writes",
            f"{writes} / {changes} changes (pod metadata writes: {others})",
            "exactly 1",
            writes == changes and others == 0,
            "an exec probe's output flipped idle/busy; each flip waited for on the pod's "
            "condition (admin client); writes counted by the proxy",
        ),
    ]


def run(opts: Options, bench: BenchCluster) -> Figure:
    fig = Figure(9, "pod_probe (Kruise's serverless probes)")
    with StateGame(1) as game:
        for kind in ("tcpSocket", "httpGet", "exec"):
            row, runs = cpu_per_probe(opts, bench, kind, game)
            fig.add(row)
            fig.details[f"{kind}_runs"] = runs
    for row in writes_per_change(opts, bench, opts.workdir / "podprobe"):
        fig.add(row)
    return fig

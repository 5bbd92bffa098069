"""Figure 10: the API cost of ``kidecar rollout`` per sidecar, measured on a real fleet and
extrapolated to 10,000 pods.

As many real sidecars as this machine holds (each with its game process, both from
``tests/rollout/fleet.py``) run as one GameServerSet against the real API server, through the
counting proxy, with the rollout settings' defaults (``pollSeconds`` 10, ``retrySeconds`` 2, a
Lease of 60 s; ``--quick`` polls every 2 s) and a shorter verification window (10 s, 2 s with
``--quick``). Two windows:

* **during a rollout**: from ``kidecar rollout start`` (``--max-unavailable 20%``, ``--when
  always``) until every pod reports ``Updated``;
* **steady state**: then, for two minutes (5 s with ``--quick``), with the rollout complete.

Each window gives the requests per sidecar per minute (by verb and resource in the JSON), the
API server's and etcd's CPU per request (their processes' CPU time over the requests served) and
the mean request latency inside the API server (``apiserver_request_duration_seconds``). The
10,000-pod rows multiply those out; docs/benchmarks.md states the assumptions.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from typing import Any

import psutil

from bench.common import Figure, MiB, Options, Row, cpu_seconds, lifeline
from bench.kube import BenchCluster
from tests.rollout.fleet import Fleet, FleetFiles, Timing, phases, wait_until

PODS = 10_000
SEATS = 245
"""APF: the nominal seats of ``workload-low`` (where a pod's ServiceAccount lands) out of the
600 of --max-requests-inflight 400 + --max-mutating-requests-inflight 200 (shares 100 of 245)."""
PER_MEMBER = 110 * MiB
"""Resident memory of one sidecar and its game, with headroom (measured: about 85 MiB)."""
_DURATION = re.compile(r"^apiserver_request_duration_seconds_(sum|count)\{(.*)\} (\S+)$")


def resource_of(path: str) -> str:
    """``/api/v1/namespaces/NS/pods/NAME`` → ``pods`` (the path itself when not namespaced)."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        return parts[parts.index("namespaces") + 2]
    return path


def fleet_size(opts: Options) -> int:
    """As many members as half the free memory holds, at most 40 per core (their start costs
    about 2 CPU-seconds each) and 100; ``KIDECAR_BENCH_FLEET`` overrides."""
    if os.environ.get("KIDECAR_BENCH_FLEET"):
        return int(os.environ["KIDECAR_BENCH_FLEET"])
    if opts.quick:
        return 2
    memory = int(psutil.virtual_memory().available * 0.5 // PER_MEMBER)
    return max(6, min(memory, 40 * (os.cpu_count() or 1), 100))


class Window:
    """Requests, server CPU and API latency between :meth:`open` and :meth:`close`."""

    def __init__(self, bench: BenchCluster) -> None:
        self.bench = bench
        self.idle_rate = 0.0

    def _cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.bench.cluster.process_ids().values())

    def _latency(self) -> tuple[float, float]:
        total = count = 0.0
        for line in self.bench.cluster.get_as_admin("/metrics").splitlines():
            match = _DURATION.match(line)
            if match and 'verb="WATCH"' not in match.group(2):
                if match.group(1) == "sum":
                    total += float(match.group(3))
                else:
                    count += float(match.group(3))
        return total, count

    def idle_cpu_rate(self, seconds: float) -> float:
        """CPU-seconds per second the servers use with no client (their own background work),
        subtracted from the windows' CPU so that it is the requests' cost only."""
        before = self._cpu()
        time.sleep(seconds)
        self.idle_rate = (self._cpu() - before) / seconds
        return self.idle_rate

    def open(self) -> None:
        self.bench.proxy.reset()
        self.started = time.monotonic()
        self.cpu = self._cpu()
        self.latency = self._latency()

    def close(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        cpu = max(0.0, self._cpu() - self.cpu - self.idle_rate * seconds)
        total, count = (a - b for a, b in zip(self._latency(), self.latency, strict=True))
        kinds: Counter[str] = Counter()
        for (method, path), n in self.bench.proxy.counts().items():
            kinds[f"{method} {resource_of(path)}"] += n
        requests = sum(kinds.values())
        return {
            "seconds": seconds,
            "requests": requests,
            "by_kind": dict(kinds.most_common()),
            "server_cpu_seconds": cpu,
            "mean_latency_seconds": total / count if count else 0.0,
        }


def run(opts: Options, bench: BenchCluster) -> Figure:
    fig = Figure(10, "Fleet rollout API cost")
    size = fleet_size(opts)
    timing = Timing(
        poll=opts.pick(10.0, 2.0), retry=2.0, verify=opts.pick(10.0, 2.0), lease=60, probe=1.0
    )
    files = FleetFiles(delay=0.2).start()
    fleet = Fleet(
        bench.cluster, bench.namespace, opts.workdir / "rollout", size, files,
        bench.proxy_kubeconfig, timing, wrap=lifeline,
    )  # fmt: skip
    window = Window(bench)
    try:
        fleet.create_objects()
        fig.details["servers_idle_cpu"] = window.idle_cpu_rate(opts.pick(30.0, 2.0))
        fleet.start(timeout=60 + 5.0 * size)
        time.sleep(opts.pick(20.0, 2.0))  # every follower has read its pod and the rollout
        rollout, steady = measure(opts, window, fleet, files, size)
        fig.details["rss_mib_fleet"] = round(fleet.rss_mib(), 1)
    finally:
        fleet.stop()
        files.stop()
    rows(fig, size, rollout, steady)
    fig.details.update({"fleet": size, "rollout": rollout, "steady": steady})
    return fig


def measure(
    opts: Options, window: Window, fleet: Fleet, files: FleetFiles, size: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    window.open()
    code, _, err = fleet.rollout(
        "start", "gss/game", "--version", "v1", "--url", files.add("v1", "v1"),
        "--max-unavailable", "20%", "--when", "always",
    )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"kidecar rollout start failed: {err}")
    wait_until(lambda: phases(fleet.progress(), 1)["Updated"] == size, 120 + 10.0 * size, "rollout")
    rollout = window.close()
    time.sleep(opts.pick(5.0, 1.0))  # the last slots given back, the last annotations written
    window.open()
    time.sleep(opts.pick(120.0, 5.0))
    return rollout, window.close()


def per_minute(window: dict[str, Any], size: int) -> float:
    return float(window["requests"]) / size / (float(window["seconds"]) / 60)


def rows(fig: Figure, size: int, rollout: dict[str, Any], steady: dict[str, Any]) -> None:
    method = f"{size} real sidecars through the counting proxy"
    fig.add(Row("sidecars in the fleet", size, "pods", f"{size} pods", method=method))
    for name, window in (("steady state", steady), ("during a rollout", rollout)):
        rate = per_minute(window, size)
        fig.add(Row(f"{name}: requests per sidecar per minute", rate, "req/min",
                    f"{rate:.1f}", method=method))  # fmt: skip
    fig.add(
        Row(
            f"rollout of {size} pods at 20%",
            rollout["seconds"],
            "s",
            f"{rollout['seconds']:.0f} s",
            method="start until every pod reports Updated",
        )
    )
    cpu = rollout["server_cpu_seconds"] / max(1, rollout["requests"]) * 1000
    latency = rollout["mean_latency_seconds"]
    fig.add(Row("API server + etcd CPU per 1,000 requests", cpu, "CPU-s", f"{cpu:.2f} CPU-s",
                method="their CPU time beyond idle / requests, rollout window"))  # fmt: skip
    fig.add(
        Row(
            "mean request latency in the API server",
            latency * 1000,
            "ms",
            f"{latency * 1000:.1f} ms",
            method="apiserver_request_duration_seconds",
        )
    )
    extrapolated(fig, size, rollout, steady)


def extrapolated(fig: Figure, size: int, rollout: dict[str, Any], steady: dict[str, Any]) -> None:
    """The 10,000-pod rows: each window's own latency and CPU per request."""
    for name, window in (("steady", steady), ("rollout", rollout)):
        per_second = per_minute(window, size) * PODS / 60
        seats = per_second * window["mean_latency_seconds"]
        cores = per_second * window["server_cpu_seconds"] / max(1, window["requests"])
        fig.add(
            Row(
                f"{PODS:,} pods, {name}: requests per second",
                per_second,
                "req/s",
                f"{per_second:,.0f} req/s",
                method="per sidecar x 10,000",
            )
        )
        fig.add(
            Row(
                f"{PODS:,} pods, {name}: API server seats in use",
                seats,
                "seats",
                f"{seats:.1f} of {SEATS}",
                target=f"< {SEATS} (APF workload-low)",
                met=seats < SEATS,
                method="req/s x mean latency (Little's law)",
            )
        )
        fig.add(
            Row(
                f"{PODS:,} pods, {name}: API server + etcd cores",
                cores,
                "cores",
                f"{cores:.1f} cores",
                method="req/s x CPU per request (this machine)",
            )
        )

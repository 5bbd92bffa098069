"""Shared pieces of the benchmark: figures, options, measuring processes, sidecars, the cluster.

The benchmark is a set of scripts run by ``bench/run.py``, not a package users import. It uses the
test harness (``tests.support``) to run the real kube-apiserver and ``kidecar run`` subprocesses.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from kidecar_core.testing import Sidecar

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
WRITE_METHODS = ("PATCH", "PUT", "POST", "DELETE")
PROBES_METRIC = "kidecar_http_probe_probes_total"
STATE_ANNOTATION = "example.com/state"


# -- results --------------------------------------------------------------------------------


@dataclass
class Row:
    """One measured value of a figure, with its target and how it was measured."""

    name: str
    value: float
    unit: str
    display: str
    target: str = "-"
    met: bool | None = None
    method: str = ""


@dataclass
class Figure:
    """One of the benchmark figures: one or more rows, plus raw details for the JSON."""

    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "rows": [asdict(r) for r in self.rows], **self.details}


@dataclass(frozen=True)
class Options:
    """What to run and how long: ``quick`` shrinks every duration and count for a smoke run."""

    quick: bool
    repeat: int
    workdir: Path

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` for a real run, ``quick`` for a smoke run."""
        return quick if self.quick else full


# -- statistics -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50.0)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- waiting and processes ------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def at_least(counter: Callable[[], float], target: float) -> Callable[[], bool]:
    """A predicate for :func:`wait_until`: ``counter()`` has reached ``target``."""
    return lambda: counter() >= target


def lifeline(argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM if the benchmark dies (even by SIGKILL).

    ``setpriv --pdeathsig`` sets the parent-death signal and then execs the command (same PID).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a helper process (game, file server, shell loop) tied to the benchmark's life."""
    return subprocess.Popen(lifeline(argv), **kwargs)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (its own threads, not its children)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def num_fds(pid: int) -> int:
    return int(psutil.Process(pid).num_fds())


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, int(self.process.memory_info().rss))
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- sidecars -------------------------------------------------------------------------------


class BenchSidecar(Sidecar):
    """``kidecar_core.testing.Sidecar`` started under :func:`lifeline`, so that it cannot outlive
    an interrupted benchmark; otherwise the same (local mode, or ``kubeconfig=``)."""

    def argv(self) -> list[str]:
        return lifeline(super().argv())

    def start(self, *, wait_ready: bool = False, timeout: float = 30.0) -> BenchSidecar:
        super().start(wait_ready=wait_ready, timeout=timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metric_sum(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Sum of every sample of ``name`` on /metrics whose labels include ``labels``."""
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {body[:200]}")
        want = labels or {}
        total = 0.0
        for line in body.splitlines():
            if line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            got = {}
            for part in label_text.rstrip("}").split(","):
                if "=" in part:
                    key, _, raw = part.partition("=")
                    got[key] = raw.strip('"')
            if all(got.get(k) == v for k, v in want.items()):
                total += float(value)
        return total

    def probes(self) -> int:
        """Probes sent so far, all endpoints and outcomes (from /metrics)."""
        return int(self.metric_sum(PROBES_METRIC))


@contextlib.contextmanager
def running(sidecars: list[BenchSidecar]) -> Iterator[list[BenchSidecar]]:
    """Stop every sidecar of the list on the way out (started or not)."""
    try:
        yield sidecars
    finally:
        for sc in sidecars:
            if sc.proc is not None and sc.proc.returncode is None:
                sc.stop(timeout=15)


# -- configs --------------------------------------------------------------------------------

OPS_POLICIES = [
    {"state": s, "gameServerOpsState": s} for s in ("None", "Allocated", "WaitToBeDeleted")
]


def endpoint(url: str, storage: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON state endpoint (``{"state": ...}``) whose state goes to ``storage``."""
    return {
        "url": url,
        "timeout": 2,
        "jsonPathConfig": {"jsonPath": "state"},
        "storageConfig": dict(storage),
    }


def ops_storage() -> dict[str, Any]:
    """The state drives the GameServer's ``spec.opsState`` (and nothing else)."""
    return {"type": "InKube", "inKube": {"markerPolicies": OPS_POLICIES}}


def annotation_storage(key: str = STATE_ANNOTATION) -> dict[str, Any]:
    """The state goes to a pod annotation (and nothing else)."""
    return {"type": "InKube", "inKube": {"annotationKey": key}}


def probe_plugin(urls: list[str], interval: float) -> dict[str, Any]:
    """http_probe: endpoint 0 drives opsState, the others write a pod annotation each."""
    endpoints = [endpoint(urls[0], ops_storage())]
    endpoints += [
        endpoint(url, annotation_storage(f"{STATE_ANNOTATION}-{i}" if i > 1 else STATE_ANNOTATION))
        for i, url in enumerate(urls[1:], start=1)
    ]
    return {
        "name": "http_probe",
        "config": {"probeIntervalSeconds": interval, "endpoints": endpoints},
    }


def hot_update_plugin(file_dir: Path, port: int, process_name: str) -> dict[str, Any]:
    """hot_update on 127.0.0.1:``port``, SIGHUP to ``process_name``, up to 2 GiB files."""
    file_dir.mkdir(parents=True, exist_ok=True)
    return {
        "name": "hot_update",
        "config": {
            "loadPatchType": "signal",
            "signal": {"processName": process_name, "signalName": "SIGHUP"},
            "fileDir": str(file_dir),
            "listen": f"127.0.0.1:{port}",
            "maxBytes": 2 * 1024**3,
            "storageConfig": annotation_storage("example.com/hot-update-result"),
        },
    }


def sidecar_config(*plugins: Mapping[str, Any]) -> dict[str, Any]:
    return {"plugins": [dict(p) for p in plugins]}

"""kidecar benchmark: footprint and speed on this machine, in one command.

    .venv/bin/python bench/run.py [--only 1,4] [--repeat 3] [--quick] [--json bench/results.json]

Figures: 1 idle RSS, 2 CPU per probe, 3 probe -> GameServer latency, 4 API writes at steady
state, 5 hot update (latency, throughput vs curl, RSS growth), 6 the curl + kubectl shell loop
users write today, 7 soak, 8 the game API (PATCH -> GameServer latency, API writes for 100
PATCHes), 9 pod_probe (CPU per probe by handler, pod writes per change), 10 the API cost of a
fleet rollout (per sidecar, and at 10,000 pods), 11 kidecar's own part of a state change, 12 API
requests per sidecar per minute at steady state (watches included), 13 start -> first state
written. Prints a table and writes JSON. A real etcd + kube-apiserver is started for the
figures that need it (``make apiserver`` builds and caches them), after the figures that run
without one (see :func:`run_figures`). ``--quick`` shrinks every duration and count (a smoke run
of a few minutes: its numbers are not meaningful). See docs/benchmarks.md for the methods and
the results of a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence, Set
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench import (  # noqa: E402
    alternative,
    convergence,
    gameapi,
    hotupdate,
    podprobe,
    probe,
    rollout,
    soak,
    startup,
    steady,
)
from bench.common import Figure, Options, load_average  # noqa: E402
from bench.kube import BenchCluster  # noqa: E402
from tests.support.apiserver import locate_binaries  # noqa: E402

ALL = tuple(range(1, 14))
NEEDS_CLUSTER = {1, 3, 4, 6, 7, 8, 9, 10, 11, 12}
FLEET = 10
STEPS: tuple[frozenset[int], ...] = tuple(
    frozenset(step) for step in ({2}, {5}, {13}, {1, 4, 12}, {3}, {6}, {7}, {8}, {9}, {11}, {10})
)
"""The order the figures run in (figures sharing a step run together); see :func:`run_figures`."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated figures to run, e.g. 1,4 (default: all)")
    parser.add_argument(
        "--steady-seconds",
        type=float,
        help="length of the steady window of figures 4 and 12 (default 300; 4 with --quick)",
    )
    parser.add_argument(
        "--repeat", type=int, help="repeated runs for medians (default 3; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (~2 min)")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench" / "results.json", help="results file"
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the temporary directory (logs)"
    )
    args = parser.parse_args(argv)
    try:
        args.figures = sorted({int(x) for x in args.only.split(",")}) if args.only else list(ALL)
    except ValueError:
        parser.error(f"--only: expected figure numbers like 1,4; got {args.only!r}")
    if not set(args.figures) <= set(ALL):
        parser.error(f"--only: figures are 1-{len(ALL)}; got {args.only!r}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP become KeyboardInterrupt, so every `finally` stops what it started.
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kidecar-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"work directory kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


class LazyCluster:
    """The bench's API server, started at the first figure that needs it (:meth:`get`).

    Its binaries are located (built, the first time: several minutes) when it is created, so
    that a machine without them fails before any figure runs rather than after the first ones.
    """

    def __init__(self, workdir: Path, wanted: list[int]) -> None:
        self.workdir = workdir
        self.bench: BenchCluster | None = None
        self.binaries = locate_binaries(workdir) if NEEDS_CLUSTER & set(wanted) else None

    def get(self) -> BenchCluster:
        if self.bench is None:
            print("[bench] starting etcd + kube-apiserver", file=sys.stderr, flush=True)
            self.bench = BenchCluster.start(self.workdir, self.binaries)
        return self.bench

    def stop(self) -> None:
        if self.bench is not None:
            self.bench.stop()
            self.bench = None


def run_figures(
    opts: Options,
    wanted: list[int],
    cluster: LazyCluster,
    steady_seconds: float | None = None,
) -> list[Figure]:
    """Run the ``wanted`` figures; return them in numeric order.

    They do not run in that order.  The figures without an API server (2, 5, 13: local mode)
    run first, before etcd and kube-apiserver start: etcd fsyncs its log on the same disk
    (figure 5's fsync of each update waits for it: p50 +1 ms, more as its database grows) and
    both take CPU (figure 2's).  The fleet (10) runs last: it leaves its pods, their Leases and
    Events in the API server, which every later figure would be measured against.
    """
    need = cluster.get
    run: dict[frozenset[int], Callable[[], list[Figure]]] = {
        frozenset({2}): lambda: [probe.cpu_per_probe(opts)],
        frozenset({5}): lambda: [hotupdate.run(opts)],
        frozenset({13}): lambda: [startup.run(opts)],
        frozenset({1, 4, 12}): lambda: steady.run(opts, need(), set(wanted), steady_seconds),
        frozenset({3}): lambda: [probe.latency(opts, need())],
        frozenset({6}): lambda: [alternative.run(opts, need())],
        frozenset({7}): lambda: [soak.run(opts, need())],
        frozenset({8}): lambda: [gameapi.run(opts, need())],
        frozenset({9}): lambda: [podprobe.run(opts, need())],
        frozenset({11}): lambda: [convergence.own_part(opts, need())],
        frozenset({10}): lambda: [rollout.run(opts, need())],
    }
    check_order(STEPS)
    steps = [(set(numbers), run[numbers]) for numbers in STEPS]
    figures: list[Figure] = []
    for numbers, step in steps:
        if not numbers & set(wanted):
            continue
        if numbers & NEEDS_CLUSTER:
            need()  # started before the figure's load and clock readings
        load_before = load_average()
        started = time.monotonic()
        label = ",".join(str(n) for n in sorted(numbers & set(wanted)))
        print(f"[bench] figure {label}: running (load {load_before})", file=sys.stderr, flush=True)
        for fig in step():
            fig.details["load_before"] = load_before
            fig.details["load_after"] = load_average()
            fig.details["wall_seconds"] = round(time.monotonic() - started, 1)
            figures.append(fig)
            for row in fig.rows:
                print(f"[bench]   {fig.number} {row.name}: {row.display}", file=sys.stderr)
    return sorted(figures, key=lambda f: f.number)


def check_order(steps: Sequence[Set[int]]) -> None:
    """Every figure in exactly one step, no step without the API server after one with it, and
    the fleet (10) last (see :func:`run_figures`); ``RuntimeError`` otherwise."""
    numbers = [n for step in steps for n in step]
    if sorted(numbers) != list(ALL):
        raise RuntimeError(f"bench steps cover {sorted(numbers)}, not figures {list(ALL)}")
    mixed = [sorted(step) for step in steps if step & NEEDS_CLUSTER and step - NEEDS_CLUSTER]
    if mixed:
        raise RuntimeError(f"bench steps {mixed} mix figures with and without an API server")
    needs = [bool(step & NEEDS_CLUSTER) for step in steps]
    if needs != sorted(needs):
        raise RuntimeError("bench steps: the figures without an API server must run first")
    if set(steps[-1]) != {FLEET}:
        raise RuntimeError(f"bench steps: the fleet (figure {FLEET}) must run last")


def table(figures: list[Figure]) -> str:
    """The results as a Markdown table: figure, value, target, met/missed, method."""
    lines = [
        "| # | figure | value | target | result | method |",
        "|---|---|---|---|---|---|",
    ]
    for fig in figures:
        for row in fig.rows:
            result = "-" if row.met is None else ("met" if row.met else "**MISSED**")
            lines.append(
                f"| {fig.number} | {fig.title}: {row.name} | {row.display} | {row.target} "
                f"| {result} | {row.method} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    command = " ".join([Path(sys.executable).name, "bench/run.py", *sys.argv[1:]])
    started_at = datetime.datetime.now(datetime.UTC)
    load_start = load_average()
    with workdir(args.keep_workdir) as work:
        opts = Options(quick=args.quick, repeat=args.repeat, workdir=work)
        cluster = LazyCluster(work, args.figures)
        try:
            figures = run_figures(opts, args.figures, cluster, args.steady_seconds)
        finally:
            cluster.stop()
    results = {
        "command": command,
        "date": started_at.isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeat": args.repeat,
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_average()},
        "figures": {str(f.number): f.as_dict() for f in figures},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(figures))
    missed = [f"{f.number} ({r.name})" for f in figures for r in f.rows if r.met is False]
    print(f"\nresults: {args.json}; load average {load_start} -> {load_average()}")
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

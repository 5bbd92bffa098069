"""Fault injection with real processes: what breaks, and that the sidecar comes out of it whole.

Each fault is injected into a real ``kidecar run`` subprocess working with a real game process,
a real file server and (for the API-server outage) the real kube-apiserver. Each test asserts
the four promises: a clear error, the previous file intact (no temporary file left), the final
state converged once the fault is gone, and the sidecar alive (for SIGTERM: a clean exit).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kidecar_core.testing import Sidecar, free_port
from tests.plugins.hot_update.conftest import StartSidecar
from tests.plugins.hot_update.fileserver import pattern_bytes, wait_until
from tests.plugins.hot_update.harness import ANNOTATION, Api, Game, hot_update_config
from tests.reliability.faults import (
    InBackground,
    StateGame,
    kill_process,
    small_disk,
    temporaries,
)
from tests.reliability.faultserver import FaultyFileServer
from tests.support.apiserver import GameServerFactory, TestCluster

STATE_KEY = "example.com/state"
FILE = "index.html"


def alive(sidecar: Sidecar) -> bool:
    return sidecar.get("/healthz")[0] == 200


def probe_plugin(url: str, failure_threshold: int = 2) -> dict[str, Any]:
    """http_probe: the game's ``data.state`` into a pod annotation and the GameServer."""
    policies = [
        {"state": "None", "gameServerOpsState": "None"},
        {"state": "Allocated", "gameServerOpsState": "Allocated"},
        {"state": "WaitToBeDeleted", "gameServerOpsState": "WaitToBeDeleted"},
    ]
    endpoint = {
        "url": url,
        "timeout": 1,
        "failureThreshold": failure_threshold,
        "jsonPathConfig": {"jsonPath": "data.state"},
        "storageConfig": {
            "type": "InKube",
            "inKube": {"annotationKey": STATE_KEY, "markerPolices": policies},
        },
    }
    return {"name": "http_probe", "config": {"probeIntervalSeconds": 0.1, "endpoints": [endpoint]}}


# -- the game process ------------------------------------------------------------------------


def test_game_killed_during_a_hot_update_then_restarted(
    start_sidecar: StartSidecar, faulty_files: FaultyFileServer, tmp_path: Path
) -> None:
    running = start_sidecar()
    game = running.game
    assert game is not None
    target = running.file_dir / FILE
    assert running.api.post({"version": "v1", "url": faulty_files.add(FILE, "v1 file")})[0] == 200

    faulty_files.add(FILE, "v2 file")
    slow = faulty_files.url(f"/slow/{FILE}")
    answer = InBackground(lambda: running.api.post({"version": "v2", "url": slow}))
    wait_until(faulty_files.slow_started.is_set, 10, "the download to start")
    kill_process(game.proc)  # the game crashes while its update is being downloaded
    faulty_files.release()
    status, body = answer.result()

    assert status == 503, body
    assert body["reason"] in ("game process not found", "game process exited"), body
    assert "previous file" in body["message"] or "no process" in body["message"], body
    assert target.read_text() == "v1 file"
    assert temporaries(running.file_dir) == []
    running.sidecar.wait_for(
        lambda: running.annotation() == f"v2: Update failed: {body['reason']}", 10, "the record"
    )
    assert alive(running.sidecar)

    restarted = Game(tmp_path, target, title=game.title).start()
    try:
        assert restarted.report()["loaded"] == "v1 file"  # what it finds at boot
        status, body = running.api.post({"version": "v3", "url": faulty_files.add(FILE, "v3")})
        assert status == 200, body
        restarted.wait_loaded("v3")
        assert running.api.get()[1]["version"] == "v3"
    finally:
        restarted.stop()


def test_game_killed_and_restarted_during_probing(tmp_path: Path) -> None:
    game = StateGame(tmp_path, "Allocated").start()
    sidecar = Sidecar(tmp_path / "sidecar", {"plugins": [probe_plugin(game.url)]})
    try:
        sidecar.start(wait_ready=True)

        def observed() -> tuple[str | None, str | None]:
            state = sidecar.state()
            annotations = state["pod"]["metadata"].get("annotations") or {}
            return annotations.get(STATE_KEY), state["gameserver"]["spec"].get("opsState")

        sidecar.wait_for(lambda: observed() == ("Allocated", "Allocated"), 10, "Allocated")
        game.kill()
        # Failed after failureThreshold probes; the GameServer keeps its last real state.
        sidecar.wait_for(lambda: observed() == ("Failed", "Allocated"), 10, "Failed")
        assert alive(sidecar)
        assert sidecar.readyz()["ready"] is True  # a game that is down is not a sidecar failure

        game.set("WaitToBeDeleted")  # it comes back in another state
        game.start()
        sidecar.wait_for(
            lambda: observed() == ("WaitToBeDeleted", "WaitToBeDeleted"), 10, "the new state"
        )
        assert alive(sidecar)
        assert "Traceback" not in sidecar.log()
    finally:
        sidecar.stop()
        game.stop()


# -- the download ----------------------------------------------------------------------------


def test_download_server_dropping_the_connection_mid_file(
    start_sidecar: StartSidecar, faulty_files: FaultyFileServer
) -> None:
    running = start_sidecar()
    target = running.file_dir / FILE
    assert running.api.post({"version": "v1", "url": faulty_files.add(FILE, "v1 file")})[0] == 200

    faulty_files.add(FILE, pattern_bytes(256 * 1024))  # /drop/ sends half of it, then closes
    status, body = running.api.post({"version": "v2", "url": faulty_files.url(f"/drop/{FILE}")})

    assert faulty_files.dropped == 1
    assert status == 502, body
    assert body["reason"] == "download failed", body
    assert "failed" in body["message"] and "Payload" in body["message"], body
    assert target.read_text() == "v1 file"
    assert temporaries(running.file_dir) == []
    running.sidecar.wait_for(
        lambda: running.annotation() == "v2: Update failed: download failed", 10, "the record"
    )
    assert alive(running.sidecar)
    assert running.game is not None and running.game.report()["loaded"] == "v1 file"
    # The same file from a server that does not drop: the update goes through.
    status, body = running.api.post({"version": "v2", "url": faulty_files.url(f"/f/{FILE}")})
    assert status == 200, body
    assert target.read_bytes() == pattern_bytes(256 * 1024)


@pytest.mark.parametrize("prefer", ["tmpfs", "rlimit"])
def test_disk_full_in_file_dir(
    start_sidecar: StartSidecar, faulty_files: FaultyFileServer, tmp_path: Path, prefer: str
) -> None:
    """A real 1 MiB tmpfs (ENOSPC) where mounting is allowed, and RLIMIT_FSIZE (EFBIG) always,
    so that the fallback is known to work too."""
    with small_disk(tmp_path / "small", 1024 * 1024, prefer) as disk:
        print(f"disk full simulated with {disk.kind}")
        running = start_sidecar(file_dir=disk.path)
        disk.limit(running.sidecar.proc.pid if running.sidecar.proc else 0)
        target = disk.path / FILE
        status, body = running.api.post({"version": "v1", "url": faulty_files.add(FILE, "v1")})
        assert status == 200, body
        before = disk.usage()

        too_big = faulty_files.url(f"/big?size={3 * 1024 * 1024}")
        status, body = running.api.post({"version": "v2", "url": too_big})

        assert status == 500, body
        assert body["reason"] == "cannot write file", body
        error = "No space left on device" if disk.kind == "tmpfs" else "File too large"
        assert error in body["message"], body
        assert target.read_text() == "v1"
        assert temporaries(disk.path) == []
        if disk.kind == "tmpfs":
            assert disk.usage() == before  # the partial download's space is given back
        running.sidecar.wait_for(
            lambda: running.annotation() == "v2: Update failed: cannot write file", 10, "record"
        )
        assert alive(running.sidecar)
        # A file that fits goes through: nothing was left behind to fill the disk.
        status, body = running.api.post({"version": "v3", "url": faulty_files.add(FILE, "v3")})
        assert status == 200, body
        assert running.game is not None
        running.game.wait_loaded("v3")
        running.sidecar.stop()
        if running.game is not None:
            running.game.stop()


# -- an attack run (issue 12) ---------------------------------------------------------------------

ATTACK_SECRET = "AttackRunSignature0123456789"


def test_an_attack_run_leaves_the_sidecar_whole(
    start_sidecar: StartSidecar, faulty_files: FaultyFileServer
) -> None:
    """The black-box attack of issue 12 in one run against one sidecar: each input gets a clear
    JSON error, the applied file stays, no temporary file is left, no secret shows, no
    traceback; then a good update goes through and SIGTERM ends the process with 0."""
    routes = ("/f/good", "/partial/", "/drop/", "/bad-length/", "/encoded/")
    prefixes = [faulty_files.url(p) for p in routes]
    running = start_sidecar(allowedUrlPrefixes=prefixes)
    game = running.game
    assert game is not None
    target = running.file_dir / FILE
    good = faulty_files.add(f"good/{FILE}", "v1 file")
    assert running.api.post({"version": "v1", "url": good})[0] == 200
    faulty_files.add(FILE, "x" * 100)
    os.mkfifo(running.file_dir / f".{FILE}.zz.kidecar-tmp")  # a stray entry
    port = running.api.port

    def post(url: str) -> tuple[int, dict[str, Any]]:
        return running.api.post({"version": "v2", "url": url})

    attacks: list[tuple[str, int, Callable[[], tuple[int, Any]]]] = [
        ("encoded escape", 403, lambda: post(faulty_files.url(f"/f/good/..%2fevil/{FILE}"))),
        ("double-encoded", 403, lambda: post(faulty_files.url(f"/f/good/%252e%252e/e/{FILE}"))),
        ("206", 502, lambda: post(faulty_files.url(f"/partial/{FILE}"))),
        ("deep JSON", 400, lambda: running.api.post(raw=("application/json", b"[" * 20_000))),
        ("JSON key twice", 400, lambda: running.api.post(raw=(
            "application/json", b'{"version": "v1", "version": "v9", "url": "http://h/x"}'))),
        ("overlong UTF-8", 400, lambda: post(faulty_files.url(f"/f/good/%c0%ae%c0%ae/e/{FILE}"))),
        ("escape not text", 400, lambda: running.api.post(raw=(
            "application/x-www-form-urlencoded", b"version=v2&url=http://h/%ff"))),
        ("secret", 502,
         lambda: post(faulty_files.url(f"/drop/{FILE}?X-Amz-Signature={ATTACK_SECRET}"))),
        ("secret, bad header", 502,
         lambda: post(faulty_files.url(f"/bad-length/{FILE}?X-Amz-Signature={ATTACK_SECRET}"))),
    ]  # fmt: skip
    for name, expected, attack in attacks:
        status, body = attack()
        assert status == expected, (name, body)
        assert body["status"] == "error" and body["message"], (name, body)
        assert target.read_text() == "v1 file", name
        assert temporaries(running.file_dir) == [f".{FILE}.zz.kidecar-tmp"], name
    # A gzip file served with `Content-Encoding: gzip`: stored as the bytes that were sent.
    packed = gzip.compress(b"a packed file\n" * 100)
    faulty_files.add("packed/assets.tar.gz", packed)
    status, body = post(faulty_files.url("/encoded/packed/assets.tar.gz"))
    assert status == 200, body
    assert (running.file_dir / "assets.tar.gz").read_bytes() == packed
    # Silent connections and malformed requests, then the sidecar still serves.
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(100)]
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /hot-update HTTP/1.1\r\nHost: x\r\nBad\x01: y\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                sock.recv(4096)
    status, body = running.api.post(
        {"version": "v3", "url": faulty_files.add(f"good/{FILE}", "v3")}
    )
    assert status == 200, body
    game.wait_loaded("v3")
    for sock in silent:
        sock.close()
    log = running.sidecar.log()
    assert "Traceback" not in log and ATTACK_SECRET not in log
    assert ATTACK_SECRET not in json.dumps(running.state())
    assert running.sidecar.stop() == 0


def test_sigterm_during_a_download(faulty_files: FaultyFileServer, tmp_path: Path) -> None:
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    game = Game(tmp_path, file_dir / FILE).start()
    port = free_port()
    config = hot_update_config(file_dir, port, process_name=game.title)
    sidecar = Sidecar(tmp_path / "sidecar", config, extra_args=["--shutdown-timeout", "5"])
    api = Api(port)
    try:
        sidecar.start(wait_ready=True)
        assert api.post({"version": "v1", "url": faulty_files.add(FILE, "v1 file")})[0] == 200
        faulty_files.add(FILE, pattern_bytes(512 * 1024))
        answer = InBackground(
            lambda: api.post({"version": "v2", "url": faulty_files.url(f"/slow/{FILE}")})
        )
        wait_until(faulty_files.slow_started.is_set, 10, "the download to start")

        started = time.monotonic()
        assert sidecar.stop(signal.SIGTERM, timeout=15) == 0
        took = time.monotonic() - started

        # The download is cancelled, not waited for (the file server would hold it for 10 s).
        assert took < 5, f"exited after {took:.1f}s"
        status, body = answer.result()
        assert status == 503, body
        assert body["reason"] == "sidecar stopping", body
        assert "cancelled" in body["message"], body
        assert (file_dir / FILE).read_text() == "v1 file"
        assert temporaries(file_dir) == []
        assert game.signals() == ["SIGHUP"]  # v1 only
        # Recorded as a failed attempt, written before the exit.
        annotations = sidecar.state()["pod"]["metadata"]["annotations"]
        assert annotations[ANNOTATION] == "v2: Update failed: sidecar stopping"
    finally:
        faulty_files.release()
        sidecar.stop()
        game.stop()


# -- the API server --------------------------------------------------------------------------


@pytest.fixture
def core(kube_cluster: TestCluster) -> Iterator[k8s.CoreV1Api]:
    with kube_cluster.admin_api_client() as api:
        yield k8s.CoreV1Api(api)


def ops_state(cluster: TestCluster, namespace: str, name: str) -> str | None:
    with cluster.admin_api_client() as api:
        gs = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            "game.kruise.io", "v1alpha1", namespace, "gameservers", name
        )
    value = gs["spec"].get("opsState")
    return None if value is None else str(value)


def result_configmap(core: k8s.CoreV1Api, namespace: str) -> dict[str, Any]:
    try:
        data = core.read_namespaced_config_map("sidecar-result", namespace).data or {}
    except ApiException as e:
        if e.status == 404:
            return {}
        raise
    return {k: json.loads(v) for k, v in data.items()}


@pytest.mark.kube
def test_api_server_killed_and_restarted_while_both_plugins_run(
    kube_cluster: TestCluster,
    kube_namespace: str,
    sa_kubeconfig: Path,
    make_game_server: GameServerFactory,
    core: k8s.CoreV1Api,
    faulty_files: FaultyFileServer,
    tmp_path: Path,
) -> None:
    name = "gs-0"
    make_game_server(name)
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    game = Game(tmp_path, file_dir / FILE).start()
    state_game = StateGame(tmp_path, "Allocated").start()
    port = free_port()
    config = hot_update_config(file_dir, port, process_name=game.title)
    config["plugins"].append(probe_plugin(state_game.url))
    sidecar = Sidecar(
        tmp_path / "sidecar",
        config,
        kubeconfig=str(sa_kubeconfig),
        pod_name=name,
        namespace=kube_namespace,
    )
    api = Api(port)

    def annotations() -> dict[str, str]:
        return dict(core.read_namespaced_pod(name, kube_namespace).metadata.annotations or {})

    def pod_record() -> dict[str, Any] | None:
        record: dict[str, Any] | None = result_configmap(core, kube_namespace).get(f"pod.{name}")
        return record

    try:
        sidecar.start(wait_ready=True, timeout=30)
        sidecar.wait_for(
            lambda: ops_state(kube_cluster, kube_namespace, name) == "Allocated", 15, "Allocated"
        )
        assert api.post({"version": "v1", "url": faulty_files.add(FILE, "v1 file")})[0] == 200
        sidecar.wait_for(lambda: (pod_record() or {}).get("version") == "v1", 15, "v1 record")

        kube_cluster.stop_apiserver()
        state_game.set("WaitToBeDeleted")
        status, body = api.post({"version": "v2", "url": faulty_files.add(FILE, "v2 file")})
        assert status == 200, body  # the game is told; only the record has to wait
        game.wait_loaded("v2 file")
        # The sidecar keeps working and says the API server is away.
        sidecar.wait_for(
            lambda: sidecar.readyz()["persistence"]["degraded"], 20, "persistence degraded"
        )
        assert alive(sidecar)

        kube_cluster.start_apiserver()
        sidecar.wait_for(
            lambda: ops_state(kube_cluster, kube_namespace, name) == "WaitToBeDeleted",
            30,
            "the state changed during the outage",
        )
        sidecar.wait_for(
            lambda: annotations().get(ANNOTATION) == "v2: Update success", 30, "v2 annotation"
        )
        assert annotations()[STATE_KEY] == "WaitToBeDeleted"
        sidecar.wait_for(lambda: (pod_record() or {}).get("version") == "v2", 30, "v2 record")
        sidecar.wait_for(lambda: sidecar.readyz()["ready"], 30, "ready again")
        assert not sidecar.readyz()["persistence"]["degraded"]
        assert (file_dir / FILE).read_text() == "v2 file"
        assert alive(sidecar)
    finally:
        if not kube_cluster.apiserver_running:
            kube_cluster.start_apiserver()
        sidecar.stop()
        state_game.stop()
        game.stop()

"""Running game_api for the tests: a real ``kidecar run`` and the package's own client."""

from __future__ import annotations

import http.client
import json
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kidecar_core.testing import Sidecar, free_port
from kidecar_plugins.game_api.client import GameApiClient, GameApiError, GameServer

__all__ = ["GameApiClient", "GameApiError", "GameServer", "Raw", "Watch", "game_api_config"]


def game_api_config(
    port: int, others: Sequence[Mapping[str, Any]] = (), **config: Any
) -> dict[str, Any]:
    """A sidecar config with ``game_api`` listening on 127.0.0.1:``port``, after ``others``."""
    game_api = {"name": "game_api", "config": {"listen": f"127.0.0.1:{port}", **config}}
    return {"plugins": [*(dict(p) for p in others), game_api]}


def start(
    workdir: Path,
    *,
    kubeconfig: str | None = None,
    env: Mapping[str, str] | None = None,
    pod_name: str = "gs-0",
    namespace: str = "default",
    token: str | None = None,
    others: Sequence[Mapping[str, Any]] = (),
    **config: Any,
) -> tuple[Sidecar, GameApiClient]:
    """Start a sidecar running game_api (and the plugins ``others``; local mode unless
    ``kubeconfig``); wait until it is ready."""
    port = free_port()
    sidecar = Sidecar(
        workdir,
        game_api_config(port, others, **config),
        kubeconfig=kubeconfig,
        env=env,
        pod_name=pod_name,
        namespace=namespace,
    )
    sidecar.start(wait_ready=True)
    client = GameApiClient(f"http://127.0.0.1:{port}", token=token)
    return sidecar, client


class Raw:
    """Requests the typed client cannot send (wrong bodies, media types, headers)."""

    def __init__(self, client: GameApiClient) -> None:
        host, _, port = client.url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)

    def send(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) of one request."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, data, dict(headers or {}))
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}, dict(response.getheaders())
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        status, data, _ = self.send(
            method, path, json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        return status, data


class Watch:
    """``client.watch()`` read in a thread: the objects arrive on a queue; ``ended`` is set when
    the stream ended cleanly, ``error`` holds what broke it otherwise."""

    def __init__(self, client: GameApiClient) -> None:
        self.client = client
        self.objects: queue.Queue[GameServer] = queue.Queue()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def _run(self) -> None:
        try:
            for gs in self.client.watch():
                self.objects.put(gs)
            self.ended.set()
        except BaseException as e:
            self.error = e

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=0)

    def next(self, timeout: float = 10.0) -> GameServer:
        try:
            return self.objects.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no object on the watch within {timeout}s: {self.error!r}"
            ) from None

    def until(self, predicate: Any, timeout: float = 10.0) -> GameServer:
        """The first object (from now) for which ``predicate(gs)`` is true."""
        while True:
            gs = self.next(timeout)
            if predicate(gs):
                return gs

    def drain(self) -> Iterator[GameServer]:
        while not self.objects.empty():
            yield self.objects.get_nowait()

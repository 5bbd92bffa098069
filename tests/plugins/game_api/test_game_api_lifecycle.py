"""game_api across its own stop and start, in-process: the real runtime (local store) configures
the plugin and its routes are served by a real aiohttp server on 127.0.0.1, so that the moment
between the plugin's stop and the process's end (or a restart) can be reached on purpose."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kidecar_core import ObjectRef, PluginContext, PodIdentity
from kidecar_core._config.catalog import load_parsed
from kidecar_core._plugins.manager import Plugins
from kidecar_core._runtime.runtime import Runtime, RuntimeOptions
from kidecar_core._store.local import LocalStore
from kidecar_plugins.game_api.plugin import API


class Harness:
    """The runtime, the plugin's context and an HTTP client of its routes."""

    def __init__(self, runtime: Runtime, plugins: Plugins, client: TestClient[Any, Any]) -> None:
        self.runtime = runtime
        self.plugins = plugins
        self.client = client
        ctx = runtime.supervisor.supervised[0].ctx
        assert ctx is not None
        self.ctx: PluginContext = ctx

    async def start(self) -> None:
        for awaitable in self.plugins.start(self.ctx):
            await awaitable

    async def stop(self) -> None:
        for awaitable in self.plugins.stop(self.ctx):
            await awaitable


async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    env = {"POD_NAME": "gs-0", "POD_NAMESPACE": "default"}
    config = {"plugins": [{"name": "game_api", "config": {"listen": "127.0.0.1:5001"}}]}
    plugins = Plugins.load(env)
    loaded = load_parsed(config, plugins, env, lenient=False)
    plugins.activate(loaded.plugins)
    identity = PodIdentity("gs-0", "default")
    store = LocalStore(tmp_path / "state.json", identity)
    runtime = Runtime(loaded, plugins, store, identity, RuntimeOptions(), local_mode=True)
    app = web.Application()
    for route in runtime.configure().routes:
        app.router.add_route(route.method, route.path, route.handler)
    # The runtime's result pipeline (on_result -> persist -> writer), as `kidecar run` runs it.
    runtime.pipeline.start()
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
        h = Harness(runtime, plugins, client)
        await h.start()
        try:
            yield h
        finally:
            await h.stop()
            await runtime.pipeline.stop()
            await runtime.applier.close()
            await store.close()


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        agen = harness(tmp_path)
        h = await anext(agen)
        try:
            await scenario(h)
        finally:
            await agen.aclose()

    asyncio.run(main())


def test_after_stop_writes_are_503_and_watches_end_cleanly(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        watch = await h.client.get("/v1/gameserver/watch")
        assert watch.status == 200
        assert watch.headers["Content-Type"] == "application/x-ndjson"
        first = json.loads(await watch.content.readline())
        assert (first["name"], first["opsState"]) == ("gs-0", "None")
        patch = await h.client.patch("/v1/gameserver", json={"opsState": "Allocated"})
        assert patch.status == 202
        await h.stop()
        rest = await asyncio.wait_for(watch.content.read(), 10)  # the stream ends, not breaks
        assert all(json.loads(line)["name"] == "gs-0" for line in rest.splitlines())
        for method, path, body in (
            ("PATCH", "/v1/gameserver", {"opsState": "None"}),
            ("PUT", "/v1/metadata/labels/game.kidecar.io/a", {"value": "1"}),
            ("DELETE", "/v1/metadata/labels/game.kidecar.io/a", None),
        ):
            answer = await h.client.request(method, path, json=body)
            assert answer.status == 503, (method, path)
            assert answer.headers["Retry-After"] == "1"
            assert "cannot be queued" in (await answer.json())["message"]
        refused = await h.client.get("/v1/gameserver/watch")
        assert refused.status == 503
        # What was acknowledged before the stop went to the writer.
        assert await h.runtime.pipeline.join(10)
        assert await h.runtime.applier.flush(10)
        gs = await h.runtime.store.get(ObjectRef.gameserver(h.ctx.identity))
        assert gs is not None and gs["spec"]["opsState"] == "Allocated"
        await h.start()  # a restarted plugin takes writes again
        again = await h.client.patch("/v1/gameserver", json={"opsState": "None"})
        assert again.status == 202

    run(tmp_path, scenario)


@pytest.mark.parametrize("path", ["/v1/gameserver", "/v1/gameserver/watch"])
def test_reads_of_a_missing_gameserver(tmp_path: Path, path: str) -> None:
    async def scenario(h: Harness) -> None:
        state = json.loads((tmp_path / "state.json").read_text())
        state["gameserver"] = None  # the local store's way of saying "not created yet"
        (tmp_path / "state.json").write_text(json.dumps(state))
        if path.endswith("watch"):
            watch = await h.client.get(path)
            assert watch.status == 200
            with pytest.raises(TimeoutError):  # nothing to show until it exists
                await asyncio.wait_for(watch.content.readline(), 1.5)
            watch.close()
        else:
            answer = await h.client.get(path)
            assert answer.status == 404
            assert "does not exist (yet)" in (await answer.json())["message"]

    run(tmp_path, scenario)


def test_a_watch_whose_game_went_away_is_let_go(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        api = h.ctx.state[API]
        api.feed.idle = 0.2  # check for a gone client every 0.2 s instead of 5 s
        watch = await h.client.get("/v1/gameserver/watch")
        await watch.content.readline()
        assert api.feed.watchers == 1
        follower = api.feed._follower
        assert follower is not None
        watch.close()  # the game disconnects while nothing changes
        # The follower (the poll of the GameServer) ends once no watch is left.
        await asyncio.wait_for(follower, 10)
        assert api.feed.watchers == 0

    run(tmp_path, scenario)


def test_annotations_the_object_shows_are_not_remembered(tmp_path: Path) -> None:
    """A game that names an annotation per match (set, then deleted) leaves nothing behind in
    the plugin's bookkeeping once the GameServer shows the change."""

    async def scenario(h: Harness) -> None:
        api = h.ctx.state[API]
        key = "/v1/metadata/annotations/game.kidecar.io/"
        for i in range(20):
            put = await h.client.put(f"{key}match-{i}", json={"value": "over"})
            assert put.status == 202
            assert (await h.client.delete(f"{key}match-{i}")).status == 202

        async def landed() -> bool:
            obj = await api.feed.current()
            annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
            return not any(k.startswith("game.kidecar.io/match-") for k in annotations)

        for _ in range(600):  # a condition, waited for generously: not a timing
            if await landed():
                break
            await asyncio.sleep(0.05)
        assert await landed()
        assert (await h.client.put(f"{key}last", json={"value": "x"})).status == 202
        assert set(api.writer.annotations) == {"game.kidecar.io/last"}

    run(tmp_path, scenario)


def test_a_watch_whose_game_left_before_the_answer_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(h: Harness) -> None:
        host, port = h.client.server.host, h.client.server.port
        assert isinstance(port, int)
        for _ in range(20):
            sock = socket.create_connection((host, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(b"GET /v1/gameserver/watch HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.close()  # a reset: gone before the first byte of the answer
        await asyncio.sleep(0.5)  # let the handlers run (what is checked is the log, not time)
        watch = await h.client.get("/v1/gameserver/watch")  # the API still serves
        assert (await watch.content.readline()).startswith(b"{")
        watch.close()

    with caplog.at_level(logging.ERROR):
        run(tmp_path, scenario)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text

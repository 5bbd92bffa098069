"""``loadPatchType: request``: the game is told over HTTP (a real reload endpoint)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kidecar_core.testing import free_port
from tests.plugins.hot_update.conftest import StartSidecar
from tests.plugins.hot_update.fileserver import FileServer
from tests.plugins.hot_update.harness import Game


def request_config(port: int, **extra: object) -> dict[str, object]:
    return {
        "loadPatchType": "request",
        "request": {
            "url": f"http://127.0.0.1:{port}/reload",
            "method": "POST",
            "timeoutSeconds": 2,
            **extra,
        },
    }


def test_request_mode_calls_the_reload_endpoint(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    port = free_port()
    file_dir = tmp_path / "downloads"
    game = Game(tmp_path, file_dir / "index.html", http_port=port).start()
    try:
        r = start_sidecar(game=None, file_dir=file_dir, **request_config(port))
        url = files.add("r1/index.html", "by request\n")
        status, body = r.api.post({"version": "v1", "url": url})
        assert status == 200, body
        assert "answered 200" in body["message"]
        game.wait_loaded("by request\n")
        sent = json.loads(game.report()["requests"][-1]["body"])
        assert sent == {
            "version": "v1",
            "url": url,
            "file": str(file_dir / "index.html"),
            "sha256": hashlib.sha256(b"by request\n").hexdigest(),
        }
        assert game.signals() == []
    finally:
        game.stop()


def test_failing_reload_endpoint_is_503_and_restores_the_previous_file(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    port = free_port()
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    (file_dir / "index.html").write_text("previous\n")
    game = Game(tmp_path, file_dir / "index.html", http_port=port, fail_reload=True).start()
    try:
        r = start_sidecar(game=None, file_dir=file_dir, **request_config(port, retries=1))
        status, body = r.api.post({"version": "v2", "url": files.add("r2/index.html", "new\n")})
        assert status == 503, body
        assert body["reason"] == "game reload request failed"
        assert "2 attempt(s)" in body["message"]
        assert len(game.report()["requests"]) == 2
        assert (file_dir / "index.html").read_text() == "previous\n"
        assert sorted(p.name for p in file_dir.iterdir()) == ["index.html"]
        want = "v2: Update failed: game reload request failed"
        r.sidecar.wait_for(lambda: r.annotation() == want, 5, want)
    finally:
        game.stop()


def test_unreachable_reload_endpoint_is_503(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    r = start_sidecar(game=None, file_dir=file_dir, **request_config(free_port(), retries=0))
    status, body = r.api.post({"version": "v2", "url": files.add("r3/index.html", "new\n")})
    assert status == 503, body
    assert not (file_dir / "index.html").exists(), "no previous file: the new one is removed"
    assert list(file_dir.iterdir()) == []


def test_request_mode_replay_after_restart(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    port = free_port()
    file_dir = tmp_path / "downloads"
    game = Game(tmp_path, file_dir / "index.html", http_port=port).start()
    try:
        r = start_sidecar(game=None, file_dir=file_dir, **request_config(port))
        assert r.api.post({"version": "v1", "url": files.add("r4/index.html", "again\n")})[0] == 200
        r.sidecar.wait_for(
            lambda: "pod.gs-0" in r.state()["configmaps"]["sidecar-result"]["data"], 5, "record"
        )
        r.sidecar.stop()
        (file_dir / "index.html").unlink()
        requests = len(game.report()["requests"])
        r2 = start_sidecar(
            game=None, file_dir=file_dir, workdir=r.sidecar.workdir, **request_config(port)
        )
        labels = {"result": "success", "trigger": "replay"}
        r2.sidecar.wait_for(
            lambda: r2.sidecar.metric("kidecar_hot_update_updates_total", labels) == 1, 10, "replay"
        )
        assert len(game.report()["requests"]) == requests + 1
        game.wait_loaded("again\n")
    finally:
        game.stop()

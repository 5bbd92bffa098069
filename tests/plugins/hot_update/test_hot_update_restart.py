"""Restart safety in local mode: the last applied version is re-applied after a restart.

A real sidecar is stopped and started again on the same state file (local mode keeps the result
ConfigMap there), with a real game process and a real file server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.plugins.hot_update.conftest import Running, StartSidecar
from tests.plugins.hot_update.fileserver import FileServer, wait_until
from tests.plugins.hot_update.harness import Game


def restart(
    r: Running, start_sidecar: StartSidecar, game: Game | None = None, **config: object
) -> Running:
    """Stop the sidecar and start a new one on the same state file and download directory."""
    r.sidecar.stop()
    if game is None and r.game is not None:
        config.setdefault("process_name", r.game.title)
    return start_sidecar(game=game, file_dir=r.file_dir, workdir=r.sidecar.workdir, **config)


def replayed(r: Running, result: str = "success") -> bool:
    """Whether the sidecar's replay ended with ``result``."""
    labels = {"result": result, "trigger": "replay"}
    return r.sidecar.metric("kidecar_hot_update_updates_total", labels) == 1


def record(r: Running) -> dict[str, str]:
    data = r.state()["configmaps"]["sidecar-result"]["data"]
    value: dict[str, str] = json.loads(data["pod.gs-0"])
    return value


def test_restart_downloads_and_reapplies_the_last_version(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    assert r.api.post({"version": "v1", "url": files.add("a1/index.html", "one\n")})[0] == 200
    assert r.api.post({"version": "v2", "url": files.add("a2/index.html", "two\n")})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v2", 15, "the v2 record")
    (r.file_dir / "index.html").unlink()  # as in a new pod: the download volume is empty
    signals = len(r.game.signals())

    r2 = restart(r, start_sidecar, r.game)

    r2.sidecar.wait_for(lambda: replayed(r2), 10, "the replay")
    assert r2.annotation() == "v2: Update success"
    assert (r.file_dir / "index.html").read_text() == "two\n"
    # The game had loaded "two" before the restart: wait for the replay's own signal (the game
    # writes its report after handling it).
    wait_until(lambda: len(r.game.signals()) == signals + 1, 10, "the replay's SIGHUP")
    r.game.wait_loaded("two\n")
    _, status = r2.api.get()
    assert status["version"] == "v2"
    assert status["sha256"] == hashlib.sha256(b"two\n").hexdigest()


def test_restart_skips_the_download_when_the_file_is_intact(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    url = files.add("b1/index.html", "intact\n")
    assert r.api.post({"version": "v1", "url": url})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v1", 15, "the record")
    downloads = files.count("/f/b1/")
    signals = len(r.game.signals())

    r2 = restart(r, start_sidecar, r.game)

    r2.sidecar.wait_for(lambda: len(r.game.signals()) == signals + 1, 10, "the game to be told")
    assert files.count("/f/b1/") == downloads, "the file on disk already had the sha256"
    assert "sha256 matches" in r2.sidecar.log()
    assert r2.api.get()[1]["version"] == "v1"


def test_rollback_survives_a_restart(start_sidecar: StartSidecar, files: FileServer) -> None:
    r = start_sidecar()
    assert r.api.post({"version": "v3", "url": files.add("c3/index.html", "three\n")})[0] == 200
    assert r.api.post({"version": "v2", "url": files.add("c2/index.html", "two again\n")})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v2", 15, "the rollback record")
    (r.file_dir / "index.html").unlink()

    r2 = restart(r, start_sidecar, r.game)

    r2.sidecar.wait_for(lambda: replayed(r2), 10, "the replay")
    assert (r.file_dir / "index.html").read_text() == "two again\n", "last applied, not highest"
    assert r2.api.get()[1]["version"] == "v2"


def test_replay_restores_the_file_then_waits_for_the_game(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    r = start_sidecar()
    assert r.game is not None
    assert r.api.post({"version": "v1", "url": files.add("d1/index.html", "waited\n")})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v1", 15, "the record")
    r.game.stop()
    (r.file_dir / "index.html").unlink()

    r2 = restart(
        r,
        start_sidecar,
        None,
        process_name="game: master process late-game",
        waitForProcessSeconds=30,
    )
    # The file comes back at once, so a game that starts now reads it at boot...
    r2.sidecar.wait_for(lambda: (r.file_dir / "index.html").exists(), 10, "the file to be restored")
    status, body = r2.api.post({"version": "v9", "url": files.add("d9/index.html", "x\n")})
    assert status == 409, body
    assert "re-applying v1" in body["message"]
    # ...and a game that is still starting (no SIGHUP handler yet) is not killed by the signal.
    late = Game(
        tmp_path,
        r.file_dir / "index.html",
        title="game: master process late-game",
        handler_delay=1.0,
    ).start(wait_ready=False)
    try:
        r2.sidecar.wait_for(lambda: replayed(r2), 15, "the replay")
        assert late.alive
        assert late.signals() == ["SIGHUP"]
        late.wait_loaded("waited\n")
    finally:
        late.stop()


def test_replay_gives_up_after_the_wait_and_the_sidecar_keeps_running(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    assert r.game is not None
    assert r.api.post({"version": "v1", "url": files.add("e1/index.html", "e\n")})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v1", 15, "the record")
    r.game.stop()

    r2 = restart(r, start_sidecar, None, process_name=r.game.title, waitForProcessSeconds=1)

    want = "v1: Update failed: game process not found"
    r2.sidecar.wait_for(lambda: r2.annotation() == want, 10, want)
    assert r2.sidecar.get("/healthz")[0] == 200
    assert r2.sidecar.get("/readyz")[0] == 200, "a failed replay is recorded, not a crash"
    assert not r2.sidecar.metric("kidecar_plugin_restarts_total", {"plugin": "hot_update"})
    status, body = r2.api.post({"version": "v2", "url": files.add("e2/index.html", "e2\n")})
    assert status == 503, body  # no game, but the API answers again


def test_replay_refuses_a_file_whose_checksum_changed(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    r = start_sidecar()
    url = files.add("f1/index.html", "original\n")
    assert r.api.post({"version": "v1", "url": url})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v1", 15, "the record")
    files.add("f1/index.html", "tampered\n")
    (r.file_dir / "index.html").write_text("something else\n")

    r2 = restart(r, start_sidecar, r.game)

    want = "v1: Update failed: checksum mismatch"
    r2.sidecar.wait_for(lambda: r2.annotation() == want, 10, want)
    assert (r.file_dir / "index.html").read_text() == "something else\n"
    assert sorted(p.name for p in r.file_dir.iterdir()) == ["index.html"]

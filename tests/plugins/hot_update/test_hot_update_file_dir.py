"""What may lie in ``fileDir`` besides regular files (issue 12 #5, #6), with real sidecars.

A FIFO, a directory or a socket at the target name, when the sidecar restarts with a version
to replay: the replay fails with a clear reason (it never blocks on the FIFO), updates go on,
SIGTERM ends the process. Stray entries named like kidecar's temporaries are skipped with a
warning, never a plugin crash loop.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from kidecar_core.testing import Sidecar, free_port
from tests.plugins.hot_update.conftest import StartSidecar
from tests.plugins.hot_update.fileserver import FileServer
from tests.plugins.hot_update.harness import Api, hot_update_config
from tests.plugins.hot_update.test_hot_update_restart import record, replayed, restart


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("not ours")


def make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


KINDS: dict[str, Callable[[Path], None]] = {
    "a FIFO": make_fifo,
    "a directory": make_directory,
    "a socket": make_socket,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_replay_onto_something_that_is_not_a_file(
    start_sidecar: StartSidecar, files: FileServer, kind: str
) -> None:
    r = start_sidecar()
    assert r.api.post({"version": "v1", "url": files.add("q1/index.html", "one\n")})[0] == 200
    r.sidecar.wait_for(lambda: record(r)["version"] == "v1", 15, "the v1 record")
    target = r.file_dir / "index.html"
    r.sidecar.stop()
    target.unlink()
    KINDS[kind](target)

    r2 = restart(r, start_sidecar, r.game)

    r2.sidecar.wait_for(lambda: replayed(r2, "error"), 20, "the replay to fail")
    status = r2.api.get()[1]
    assert status["lastResult"]["code"] == 500
    assert f"is {kind}" in status["lastResult"]["message"]
    assert status["inProgress"] is None
    # The lock is free: updates are answered, honestly.
    code, body = r2.api.post({"version": "v2", "url": files.add("q2/index.html", "two\n")})
    assert (code, body["reason"]) == (500, "target is not a regular file"), body
    code, body = r2.api.post({"version": "v3", "url": files.add("q3/other.html", "three\n")})
    assert code == 200, body
    assert r2.sidecar.get("/readyz")[0] == 200
    assert r2.sidecar.stop() == 0
    assert "kidecar stopped" in r2.sidecar.log()
    assert "Traceback" not in r2.sidecar.log()


def test_stray_entries_in_file_dir_are_skipped_with_a_warning(
    start_sidecar: StartSidecar, files: FileServer, tmp_path: Path
) -> None:
    file_dir = tmp_path / "downloads"
    file_dir.mkdir()
    entries = [file_dir / ".index.html.abc123.kidecar-tmp", file_dir / ".other.kidecar-prev"]
    entries[0].mkdir()
    os.mkfifo(entries[1])
    leftover = file_dir / ".index.html.x1.kidecar-tmp"
    leftover.write_text("half a file")
    r = start_sidecar(file_dir=file_dir)
    assert r.game is not None
    status, body = r.api.post({"version": "v1", "url": files.add("s1/index.html", "new\n")})
    assert status == 200, body
    r.game.wait_loaded("new\n")
    assert all(e.exists() for e in entries), "what is not a file is left alone"
    assert not leftover.exists(), "a real leftover file is removed"
    log = r.sidecar.log()
    assert "named like a kidecar temporary file, but it is a directory" in log
    assert "it is a FIFO" in log
    assert "restarting" not in log and "Traceback" not in log


def test_fifo_named_like_the_backup_does_not_block_an_update(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    """The backup link of the previous file is created where a FIFO was put after start."""
    r = start_sidecar()
    assert r.game is not None
    (r.file_dir / "index.html").write_text("previous\n")
    os.mkfifo(r.file_dir / ".index.html.kidecar-prev")
    status, body = r.api.post({"version": "v2", "url": files.add("s2/index.html", "new\n")})
    assert status == 200, body
    r.game.wait_loaded("new\n")
    assert r.listing() == ["index.html"]


def test_a_directory_named_like_the_backup_is_named_in_the_500(
    start_sidecar: StartSidecar, files: FileServer
) -> None:
    """Put there after start (at start it is skipped with a warning): the answer says which
    entry is in the way and what to do, not a bare "Is a directory"; the file is kept."""
    r = start_sidecar()
    assert r.game is not None
    (r.file_dir / "index.html").write_text("previous\n")
    stray = r.file_dir / ".index.html.kidecar-prev"
    stray.mkdir()
    status, body = r.api.post({"version": "v2", "url": files.add("s3/index.html", "new\n")})
    assert status == 500, body
    assert body["reason"] == "cannot write file"
    assert f"{stray} is a directory" in body["message"] and "remove it" in body["message"]
    assert (r.file_dir / "index.html").read_text() == "previous\n"
    stray.rmdir()
    assert r.api.post({"version": "v2", "url": files.add("s3/index.html", "new\n")})[0] == 200


FAILING_START = """
from kidecar_core import hookimpl


@hookimpl
def kidecar_start(ctx):
    if ctx.name == "hot_update":
        raise RuntimeError("the plugin's start failed (injected)")
"""


def test_a_plugin_that_is_restarting_says_so_not_sigterm(files: FileServer, tmp_path: Path) -> None:
    """A hot_update plugin whose start fails is restarted by its restartpolicy; meanwhile a
    POST gets a 503 that says that, not "the sidecar is stopping (SIGTERM)"."""
    override = tmp_path / "failing_start.py"
    override.write_text(FAILING_START)
    port = free_port()
    sidecar = Sidecar(
        tmp_path / "s",
        hot_update_config(tmp_path / "downloads", port, process_name="game"),
        extra_args=["--plugin-file", str(override)],
    )
    sidecar.start()
    try:
        sidecar.wait_for(lambda: sidecar.log().count("start failed (injected)") >= 2, 20, "2 fails")
        status, body = Api(port).post({"version": "v2", "url": files.add("z/x.html", "x")})
        assert status == 503, body
        assert "restarting after a failure" in body["message"], body
        assert "SIGTERM" not in body["message"]
    finally:
        assert sidecar.stop() == 0


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_disk_full_reported_at_close_is_cannot_write_file(
    files: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    """A network file system reports a full disk when the file is closed: fault injected at
    close (a real file system does not do it on demand), the real download and server."""
    import asyncio
    from typing import IO

    import aiohttp
    from yarl import URL

    from kidecar_plugins.hot_update import download as download_module
    from kidecar_plugins.hot_update.errors import UpdateError
    from kidecar_plugins.hot_update.urls import UrlPolicy

    real_open = download_module.open_temporary

    class FullAtClose:
        def __init__(self, f: IO[bytes]) -> None:
            self.f = f

        def __getattr__(self, name: str) -> object:
            return getattr(self.f, name)

        def close(self) -> None:
            self.f.close()
            raise OSError(error, os.strerror(error))

    def open_temporary(directory: Path, name: str) -> tuple[Path, object]:
        path, f = real_open(directory, name)
        return path, FullAtClose(f)

    monkeypatch.setattr(download_module, "open_temporary", open_temporary)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            await download_module.download(
                session, URL(files.add("c/index.html", "x" * 5000)), directory=tmp_path,
                name="index.html", policy=UrlPolicy(), max_bytes=1 << 20, timeout=10,
                expected_sha256=None,
            )  # fmt: skip

    with pytest.raises(UpdateError) as caught:
        asyncio.run(main())
    assert (caught.value.status, caught.value.reason) == (500, "cannot write file")
    assert os.strerror(error) in caught.value.message
    assert list(tmp_path.iterdir()) == [], "the temporary file is removed"

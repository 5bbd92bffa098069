"""download() and install() against the real file server, without a sidecar."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from yarl import URL

from kidecar_plugins.hot_update.download import Downloaded, download
from kidecar_plugins.hot_update.errors import NotifyFailed, UpdateError
from kidecar_plugins.hot_update.files import file_sha256, install, remove_stale_temporaries
from kidecar_plugins.hot_update.notify import UpdateInfo
from kidecar_plugins.hot_update.updater import swap_then_notify
from kidecar_plugins.hot_update.urls import GuardedResolver, UrlPolicy
from tests.plugins.hot_update.fileserver import FileServer


@pytest.fixture
def fs() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


def fetch(url: str, directory: Path, *, max_bytes: int = 1 << 20, timeout: float = 5,
          sha: str | None = None, policy: UrlPolicy | None = None) -> Downloaded:  # fmt: skip
    async def main() -> Downloaded:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(False))
        ) as session:
            return await download(
                session, URL(url), directory=directory, name="f", policy=policy or UrlPolicy(),
                max_bytes=max_bytes, timeout=timeout, expected_sha256=sha,
            )  # fmt: skip

    return asyncio.run(main())


def test_download_to_a_temp_file_with_sha256(fs: FileServer, tmp_path: Path) -> None:
    got = fetch(fs.add("a", "hello"), tmp_path)
    assert got.temp.parent == tmp_path
    assert got.temp.name.startswith(".f.") and got.temp.name.endswith(".kidecar-tmp")
    assert got.temp.read_bytes() == b"hello"
    assert got.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert got.size == 5


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/f/missing", {}, 502),
        ("/status/503", {}, 502),
        ("/big?size=2000", {"max_bytes": 1000}, 413),
        ("/stream?size=5000", {"max_bytes": 1000}, 413),
        ("/hang", {"timeout": 0.5}, 502),
        ("/redirect-loop", {}, 502),
        ("/f/a", {"sha": "0" * 64}, 422),
        ("/redirect?to=http://169.254.169.254/x", {}, 403),
    ],
)
def test_failed_downloads_leave_no_temp_file(
    fs: FileServer, tmp_path: Path, path: str, kwargs: dict[str, object], status: int
) -> None:
    fs.add("a", "hello")
    with pytest.raises(UpdateError) as e:
        fetch(fs.url(path), tmp_path, **kwargs)  # type: ignore[arg-type]
    assert e.value.status == status, e.value.message
    fs.release()
    assert list(tmp_path.iterdir()) == []


def test_cancelled_download_leaves_no_temp_file(fs: FileServer, tmp_path: Path) -> None:
    fs.add("slow", "x" * 1000)
    fs.reset_slow()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            job = asyncio.ensure_future(
                download(session, URL(fs.url("/slow/slow")), directory=tmp_path, name="f",
                         policy=UrlPolicy(), max_bytes=10_000, timeout=10, expected_sha256=None)
            )  # fmt: skip
            await asyncio.to_thread(fs.slow_started.wait, 5)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job

    asyncio.run(main())
    fs.release()
    assert list(tmp_path.iterdir()) == []


def test_install_replaces_atomically_and_rolls_back(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    target.write_text("old")
    os.chmod(target, 0o640)
    temp = tmp_path / ".index.html.1.kidecar-tmp"
    temp.write_text("new")
    installed = install(temp, target)
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == "0o640", "the previous file's mode is kept"
    assert installed.backup is not None and installed.backup.read_text() == "old"
    installed.rollback()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_install_without_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    temp = tmp_path / ".index.html.1.kidecar-tmp"
    temp.write_text("new")
    installed = install(temp, target)
    assert oct(target.stat().st_mode & 0o777) == "0o644", "readable by the game's user"
    installed.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    temp.write_text("newer")
    install(temp, target).rollback()
    assert target.read_text() == "new"


def test_swap_then_notify_signals_after_the_swap_and_puts_the_file_back_when_it_fails(
    tmp_path: Path,
) -> None:
    target = tmp_path / "index.html"
    target.write_text("old")
    info = UpdateInfo("v2", "http://127.0.0.1/index.html", str(target), "0" * 64)
    seen: list[str] = []

    def send(got: UpdateInfo) -> str:
        seen.append(target.read_text())  # what the game reads when it gets the signal
        assert got is info
        raise NotifyFailed("game process exited", "gone before it could be signalled")

    temp = tmp_path / ".index.html.1.kidecar-tmp"
    temp.write_text("new")
    with pytest.raises(NotifyFailed, match="gone before"):
        swap_then_notify(temp, target, send, info)
    assert seen == ["new"], "the signal comes after the new file is in place"
    assert target.read_text() == "old", "the previous file is back"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]

    temp.write_text("new")
    installed, done = swap_then_notify(temp, target, lambda _info: "sent SIGHUP to pid 7", info)
    assert (done, target.read_text()) == ("sent SIGHUP to pid 7", "new")
    installed.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_a_signal_that_hangs_is_reported_as_install_or_signal_not_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swap and signal run in one worker-thread call under the file-system timeout: when it
    runs out, the 500 names both possible causes (a scan of ``/proc`` can hang too)."""
    import functools
    import threading

    from kidecar_plugins.hot_update import updater
    from kidecar_plugins.hot_update.errors import InternalError
    from kidecar_plugins.hot_update.files import blocking

    release = threading.Event()

    class HangingSignal:
        def blocking_notify(self) -> Any:
            return lambda _info: release.wait(10) and "sent"

    monkeypatch.setattr(updater, "blocking", functools.partial(blocking, timeout=0.2))
    target = tmp_path / "index.html"
    temp = tmp_path / ".index.html.1.kidecar-tmp"
    temp.write_text("new")
    info = UpdateInfo("v2", "http://127.0.0.1/index.html", str(target), "0" * 64)

    async def main() -> None:
        try:
            await updater.install_and_notify(HangingSignal(), temp, target, info)  # type: ignore[arg-type]
        finally:
            release.set()  # the thread ends before asyncio.run waits for it

    with pytest.raises(InternalError) as e:
        asyncio.run(main())
    assert e.value.reason == "install or signal not responding"
    assert "signalling the game" in e.value.message and "(/proc)" in e.value.message


def test_rollback_of_a_first_file_removes_it(tmp_path: Path) -> None:
    temp = tmp_path / ".x.kidecar-tmp"
    temp.write_text("new")
    install(temp, tmp_path / "x").rollback()
    assert list(tmp_path.iterdir()) == []


def test_file_sha256_and_stale_cleanup(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a") == hashlib.sha256(b"abc").hexdigest()
    assert file_sha256(tmp_path / "missing") is None
    (tmp_path / ".a.x1.kidecar-tmp").write_text("")
    (tmp_path / ".a.kidecar-prev").write_text("")
    (tmp_path / "b.kidecar-tmp").write_text("")  # not ours: no leading dot
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".a.kidecar-prev", ".a.x1.kidecar-tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.kidecar-tmp"]


def test_unwritable_directory_is_500_cannot_write(fs: FileServer, tmp_path: Path) -> None:
    with pytest.raises(UpdateError) as e:
        fetch(fs.add("a", "hello"), tmp_path / "gone")
    assert (e.value.status, e.value.reason) == (500, "cannot write file")


def test_disk_full_on_the_last_batch_closes_and_removes_the_temp_file(
    fs: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last batch is written with the fsync in one worker-thread call: a full disk there
    (fault injected at write: a real one does not fill on demand) is ``cannot write file``, the
    temporary file is closed and removed, and nothing else is left open."""
    from kidecar_plugins.hot_update import download as download_module

    real_open = download_module.open_temporary
    opened: list[Any] = []

    class FullAtWrite:
        def __init__(self, f: IO[bytes]) -> None:
            self.f = f

        def __getattr__(self, name: str) -> object:
            return getattr(self.f, name)

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_temporary(directory: Path, name: str) -> tuple[Path, object]:
        path, f = real_open(directory, name)
        opened.append(f)
        return path, FullAtWrite(f)

    monkeypatch.setattr(download_module, "open_temporary", open_temporary)
    with pytest.raises(UpdateError) as e:
        fetch(fs.add("a", "hello"), tmp_path)
    assert (e.value.status, e.value.reason) == (500, "cannot write file")
    assert "No space left on device" in e.value.message
    assert [f.closed for f in opened] == [True]
    assert list(tmp_path.iterdir()) == []

"""Helpers of the fault-injection tests: a killable state game, a full disk, file checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from kidecar_core.testing import free_port
from tests.plugins.hot_update.fileserver import wait_until

STATE_GAME = Path(__file__).resolve().parent / "stategame.py"
TEMPORARY = (".kidecar-tmp", ".kidecar-prev")


def temporaries(directory: Path) -> list[str]:
    """Names of the temporary/backup files an update left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(TEMPORARY))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class StateGame:
    """``stategame.py`` as a real process on a fixed port; kill it and start it again."""

    def __init__(self, workdir: Path, state: str) -> None:
        self.port = free_port()
        self.state_file = workdir / f"state-{self.port}.txt"
        self.set(state)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/state"

    def set(self, state: str) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state)
        os.replace(tmp, self.state_file)

    def start(self) -> StateGame:
        argv = [sys.executable, str(STATE_GAME), "--port", str(self.port)]
        self.proc = subprocess.Popen([*argv, "--state-file", str(self.state_file)])
        wait_until(self.answers, 10, "the state game to answer")
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, like a crash (no clean shutdown), and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.kill()


def kill_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a child process and reap it (a zombie would still be listed by ps)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


class InBackground:
    """Run ``call`` in a thread (a client waiting for a slow answer); ``result()`` joins it."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._result.append(call())
            except BaseException as e:
                self._error.append(e)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self, timeout: float = 30.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"no answer within {timeout}s"
        if self._error:
            raise self._error[0]
        return self._result[0]


@attrs.define
class SmallDisk:
    """A directory that runs out of space after ``size`` bytes.

    ``kind`` says how: ``tmpfs`` (a real size-limited tmpfs: writes fail with ENOSPC) or, where
    mounting is not allowed, ``rlimit`` (RLIMIT_FSIZE of the sidecar process, applied by
    :meth:`limit`: writes past ``size`` fail with EFBIG, "File too large". Python ignores
    SIGXFSZ, so the process gets the error instead of being killed). Both are a write that fails
    half-way through the file, which is what the sidecar must survive.
    """

    path: Path
    size: int
    kind: str

    def limit(self, pid: int) -> None:
        """Make the sidecar process ``pid`` hit the limit (nothing to do for a tmpfs)."""
        if self.kind == "rlimit":
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (self.size, self.size))

    def usage(self) -> int:
        return shutil.disk_usage(self.path).used


@contextlib.contextmanager
def small_disk(path: Path, size: int, prefer: str = "tmpfs") -> Iterator[SmallDisk]:
    """A :class:`SmallDisk` at ``path``: a tmpfs when ``prefer`` says so and ``mount`` works
    (we are root), else rlimit."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if prefer == "tmpfs" and os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "kidecar-test", str(path)],
            capture_output=True,
        )
        mounted = done.returncode == 0
    try:
        yield SmallDisk(path, size, "tmpfs" if mounted else "rlimit")
    finally:
        if mounted:
            done = subprocess.run(["umount", str(path)], capture_output=True)
            if done.returncode != 0:  # still busy (a process left behind): detach it anyway
                subprocess.run(["umount", "-l", str(path)], capture_output=True)

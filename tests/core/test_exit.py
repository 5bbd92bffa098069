"""SIGTERM always ends the process, even with a blocking call that never returns.

A real ``kidecar run`` whose override file leaves a worker thread blocked in ``open()`` of a
FIFO nobody writes to (what a FIFO in ``fileDir`` did to the hot-update replay): after
SIGTERM the process must exit, with code 0, instead of waiting for that thread forever.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kidecar_core._runtime import eventloop
from kidecar_core.testing import Sidecar

BLOCKING_OVERRIDE = """
import asyncio
import contextlib
import os

from kidecar_core import hookimpl

FIFO = {fifo!r}


@hookimpl
def kidecar_shutdown(runtime):
    async def block():
        # open() of a FIFO without a writer never returns: the thread stays blocked.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(os.open, FIFO, os.O_RDONLY), 0.2)

    return block()
"""


def test_sigterm_exits_although_a_thread_is_blocked(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    override = tmp_path / "blocking_override.py"
    override.write_text(BLOCKING_OVERRIDE.format(fifo=str(fifo)))
    sidecar = Sidecar(tmp_path / "s", {"plugins": []}, extra_args=["--plugin-file", str(override)])
    sidecar.start(wait_ready=True)
    code = sidecar.stop(signal.SIGTERM, timeout=10 + eventloop.EXIT_GRACE)
    log = sidecar.log()
    assert code == 0, log
    assert "kidecar stopped" in log
    assert "blocking call(s) still running" in log
    assert "Traceback" not in log


def test_a_normal_stop_does_not_wait_for_the_grace(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path / "s", {"plugins": []})
    sidecar.start(wait_ready=True)
    assert sidecar.stop(signal.SIGTERM) == 0
    assert "blocking call(s) still running" not in sidecar.log()


def test_a_games_reload_signal_sent_to_kidecar_is_ignored(tmp_path: Path) -> None:
    """Review of issue 12: with ``shareProcessNamespace`` another container's ``kill -USR2``
    (or ``-HUP``, ``-USR1``) may reach kidecar, whose default action ended it without a word.
    Each is logged and ignored; SIGTERM still stops it cleanly."""
    sidecar = Sidecar(tmp_path / "s", {"plugins": []})
    sidecar.start(wait_ready=True)
    try:
        assert sidecar.proc is not None
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            sidecar.proc.send_signal(sig)
            line = f"received {sig.name}: ignored"
            sidecar.wait_for(lambda line=line: line in sidecar.log(), 20, sig.name)
        assert sidecar.get("/healthz")[0] == 200
    finally:
        code = sidecar.stop(signal.SIGTERM)
    assert code == 0, sidecar.log()

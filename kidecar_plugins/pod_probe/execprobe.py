"""``exec`` probes, run in the sidecar's own container.

Kruise's daemon runs an exec probe inside the game's container through the container runtime
(CRI ``ExecSync``); a sidecar cannot do that.  kidecar runs the command **in its own
container**: it sees the game's files through the volumes both containers mount, the game's
ports on ``127.0.0.1`` (one network namespace per pod), and the game's processes only with
``shareProcessNamespace: true``.  The command runs without a shell (``["sh", "-c", "..."]``
for one), with the sidecar's environment and user, stdin closed.

Semantics, as kruise-daemon's: exit code 0 is success and the message is the command's
stdout; any other exit code is failure and the message is its stderr (what ``ExecSync``
returns).  Each stream is read up to :data:`~kidecar_plugins.pod_probe.outcome.MAX_OUTPUT_BYTES`
(the rest is drained and dropped, so a chatty command never blocks on a full pipe).  At
``timeoutSeconds`` the command's whole process group is killed (SIGKILL) and the probe fails, as
the kubelet's exec probes do since ``ExecProbeTimeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from kidecar_plugins.pod_probe.outcome import MAX_OUTPUT_BYTES, Outcome, decode
from kidecar_plugins.pod_probe.spec import ExecAction

KILL_WAIT = 10.0
"""Seconds to wait for a killed command to be reaped (it is at once unless the kernel holds it
in an uninterruptible wait)."""


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first ``MAX_OUTPUT_BYTES`` of stdout (fd 1) and stderr (fd 2), drops the rest
    (so a chatty command never blocks on a full pipe); ``done`` when both pipes reached their
    end and the process exited."""

    def __init__(self) -> None:
        self.kept = {1: bytearray(), 2: bytearray()}
        self.open_pipes = {1, 2}
        self.exited = False
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.gone = loop.create_future()
        """Set when the process exited (its pipes may still be held by its children)."""

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.kept[fd]
        room = MAX_OUTPUT_BYTES - len(kept)
        if room > 0:
            kept += data[:room]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.open_pipes.discard(fd)
        self._check()

    def process_exited(self) -> None:
        self.exited = True
        if not self.gone.done():
            self.gone.set_result(None)
        self._check()

    def _check(self) -> None:
        if self.exited and not self.open_pipes and not self.done.done():
            self.done.set_result(None)


async def run_exec(action: ExecAction, timeout: float) -> Outcome:
    """Run ``action.command``; never raises for a failing, missing or hanging command.

    The pipes are closed when the probe ends, whatever happened: a command that leaves a
    process behind holding its stdout (``setsid daemon &``) times out and costs no file
    descriptor.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, collector = await loop.subprocess_exec(
            _Collector,
            *action.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except OSError as e:
        reason = f"cannot run {action.command[0]!r}: {e.strerror or e}"
        return Outcome(False, reason, reason)
    try:
        await asyncio.wait_for(asyncio.shield(collector.done), timeout)
    except TimeoutError:
        await _kill_group(transport, collector)
        return Outcome(False, decode(bytes(collector.kept[2])), f"timed out after {timeout:g}s")
    except asyncio.CancelledError:  # the probe was stopped: leave nothing behind
        await _kill_group(transport, collector)
        raise
    finally:
        transport.close()
    code = transport.get_returncode()
    if code == 0:
        return Outcome(True, decode(bytes(collector.kept[1])))
    reason = f"exit status {code}" if code and code > 0 else f"killed by signal {-(code or 0)}"
    return Outcome(False, decode(bytes(collector.kept[2])), reason)


async def _kill_group(transport: asyncio.SubprocessTransport, collector: _Collector) -> None:
    """SIGKILL the command's process group (also when the command itself has exited and a
    child of it still holds its output open), and wait for the command to be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(transport.get_pid(), signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(collector.gone), KILL_WAIT)

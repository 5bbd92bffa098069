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

_CHUNK = 64 * 1024


async def run_exec(action: ExecAction, timeout: float) -> Outcome:
    """Run ``action.command``; never raises for a failing, missing or hanging command."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *action.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except OSError as e:
        reason = f"cannot run {action.command[0]!r}: {e.strerror or e}"
        return Outcome(False, reason, reason)
    stdout, stderr = bytearray(), bytearray()
    try:
        await asyncio.wait_for(_collect(proc, stdout, stderr), timeout)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return Outcome(False, decode(bytes(stderr)), f"timed out after {timeout:g}s")
    except asyncio.CancelledError:  # the probe was stopped: leave nothing behind
        _kill_group(proc)
        await proc.wait()
        raise
    code = proc.returncode
    if code == 0:
        return Outcome(True, decode(bytes(stdout)))
    reason = f"exit status {code}" if code and code > 0 else f"killed by signal {-(code or 0)}"
    return Outcome(False, decode(bytes(stderr)), reason)


async def _collect(proc: asyncio.subprocess.Process, out: bytearray, err: bytearray) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err))
    await proc.wait()


async def _drain(stream: asyncio.StreamReader, kept: bytearray) -> None:
    """Read ``stream`` to its end, keeping its first ``MAX_OUTPUT_BYTES`` in ``kept``."""
    while chunk := await stream.read(_CHUNK):
        room = MAX_OUTPUT_BYTES - len(kept)
        if room > 0:
            kept += chunk[:room]


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)

"""Telling the game that a new file is in place: a signal to its process, or an HTTP request.

Process matching follows ``ps``: a process's command line is its arguments joined by single
spaces, with empty arguments (and the NUL padding of a rewritten process title, which psutil
reports as empty arguments) dropped. ``processName`` must equal it (or ``fullmatch`` it as a
regex). PID 1, the sidecar and its own parents and children never match: the Go predecessor's
substring match on ``ps aux`` signalled PID 1 for an empty name.

``psutil`` is imported at the first use (the first update in signal mode), not with the module:
an idle sidecar does not need it, and it costs ~2.5 MiB of resident memory (issue 17,
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import attrs

from kidecar_core import Backoff, redact_url
from kidecar_plugins.hot_update import process_hint, reload
from kidecar_plugins.hot_update.config import RequestConfig, SignalConfig
from kidecar_plugins.hot_update.errors import NotifyFailed, UpdateError
from kidecar_plugins.hot_update.urls import UrlPolicy

log = logging.getLogger("kidecar.plugin.hot_update")

SHARE_PROCESS_NAMESPACE_HINT = (
    "the sidecar sees the game's processes only when the pod sets `shareProcessNamespace: true` "
    "(`kidecar inject` does it for signal mode)"
)


@attrs.frozen
class UpdateInfo:
    """What the game is told about (the request body of ``loadPatchType: request``)."""

    version: str
    url: str
    file: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return attrs.asdict(self)


class Notifier(Protocol):
    """A way to tell the game about a new file."""

    description: str

    async def ready(self) -> None:
        """Raise :class:`UpdateError` (503) when notifying cannot work now; before downloading."""

    async def wait_ready(self, deadline: float) -> None:
        """Wait until :meth:`ready` passes (restart replay); raise its error at ``deadline``."""

    async def notify(self, info: UpdateInfo, deadline: float | None = None) -> str:
        """Notify the game; return what was done (for the answer). 503 when it failed."""

    def blocking_notify(self) -> Callable[[UpdateInfo], str] | None:
        """:meth:`notify` as a blocking call, when it is one (run in a worker thread, right
        after the file is swapped in, with no hand-off between); ``None``: use :meth:`notify`."""


def command_line(args: Sequence[str]) -> str:
    """A process's command line as ``ps -o args`` shows it."""
    return " ".join(a for a in args if a).strip()


def own_process_tree() -> set[int]:
    """PIDs that must never be signalled: PID 1, the sidecar, its parents and its children."""
    import psutil  # deferred: see the module docstring

    me = psutil.Process()
    pids = {1, me.pid}
    try:
        pids.update(p.pid for p in me.parents())
        pids.update(p.pid for p in me.children(recursive=True))
    except psutil.Error:
        pass
    return pids


@attrs.frozen
class Candidate:
    pid: int
    create_time: float
    cmdline: str


def find_processes(matches: Callable[[str], bool]) -> tuple[list[Candidate], list[str]]:
    """Processes whose command line satisfies ``matches(cmdline)``; and the command lines of
    every process visible (PID 1 and the sidecar's own excluded).

    Blocking (reads /proc): run it in a thread.
    """
    import psutil  # deferred: see the module docstring

    excluded = own_process_tree()
    found = []
    visible: list[str] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        info = proc.info
        if info["pid"] in excluded or not info["cmdline"]:
            continue
        cmdline = command_line(info["cmdline"])
        visible.append(cmdline)
        if matches(cmdline):
            found.append(Candidate(info["pid"], info["create_time"] or 0.0, cmdline))
    return found, visible


def catches_signal(pid: int, signum: int) -> bool | None:
    """Whether the process has a handler for ``signum`` (Linux ``SigCgt``); ``None``: unknown."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return bool(mask & (1 << (signum - 1)))
    return None


class SignalNotifier:
    """``loadPatchType: signal``: send ``signalName`` to the process(es) named ``processName``."""

    def __init__(self, config: SignalConfig) -> None:
        self.config = config
        self.description = f"{config.signame} to {config.process_name!r}"
        self._matches: Callable[[str], bool]
        if config.process_name_regex:
            pattern = re.compile(config.process_name)
            self._matches = lambda c: pattern.fullmatch(c) is not None
        else:
            self._matches = lambda c: c == config.process_name
        self._known: list[Candidate] = []

    def _targets(self) -> list[Candidate]:
        """Matching processes that handle the signal; 503 when there are none. Blocking.

        The processes found last time are reused while every one of them is still the same
        process (:meth:`_known_targets`): the process table (every ``/proc/<pid>``, several
        milliseconds on a busy node) is scanned again only when one has gone or changed.
        """
        known = self._known_targets()
        if known:
            return known
        self._known = []
        found, visible = find_processes(self._matches)
        regex = self.config.process_name_regex
        how = "matching the regex" if regex else "with the command line"
        if not found:
            near = process_hint.hint(self.config.process_name, regex, visible)
            raise NotifyFailed(
                "game process not found",
                f"no process {how} {self.config.process_name!r} ({len(visible)} other processes "
                f"visible, PID 1 and the sidecar excluded)"
                + f"; {near or SHARE_PROCESS_NAMESPACE_HINT}",
            )
        signum = self.config.signum
        handling = [c for c in found if catches_signal(c.pid, signum) is not False]
        if not handling:
            pids = ", ".join(str(c.pid) for c in found)
            raise NotifyFailed(
                "game does not handle the signal",
                f"process {pids} ({self.config.process_name!r}) does not handle "
                f"{self.config.signame}: sending it would terminate the game, so it was not sent "
                "(is the game still starting?)",
            )
        self._known = handling
        return handling

    def _known_targets(self) -> list[Candidate]:
        """The targets of the last scan when each is still the same process: the same PID with
        the same start time (a reused PID has another), a command line that still matches (no
        ``exec`` since) and a handler for the signal; ``[]`` otherwise.  A second game process
        started while the known one lives is found at the next scan, after the known one went."""
        import psutil  # deferred: see the module docstring

        signum = self.config.signum
        for c in self._known:
            try:
                proc = psutil.Process(c.pid)
                if proc.create_time() != c.create_time:
                    return []
                if not self._matches(command_line(proc.cmdline())):
                    return []
            except psutil.Error:
                return []
            if catches_signal(c.pid, signum) is False:
                return []
        return self._known

    async def ready(self) -> None:
        await asyncio.to_thread(self._targets)

    async def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                await self.ready()
                return
            except UpdateError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    async def notify(self, info: UpdateInfo, deadline: float | None = None) -> str:
        return await asyncio.to_thread(self._send)

    def blocking_notify(self) -> Callable[[UpdateInfo], str] | None:
        return lambda _info: self._send()

    def _send(self) -> str:
        import psutil  # deferred: see the module docstring

        signalled = []
        for c in self._targets():
            try:
                proc = psutil.Process(c.pid)
                # The pid may have been reused since the scan: only signal the same process.
                if proc.create_time() != c.create_time:
                    continue
                proc.send_signal(self.config.signum)
                signalled.append(c.pid)
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied as e:
                raise NotifyFailed(
                    "signal not permitted",
                    f"not permitted to signal process {c.pid}: {e}; the sidecar must run as "
                    "the game's user (or root)",
                ) from None
        if not signalled:
            self._known = []
            raise NotifyFailed(
                "game process exited",
                f"the game process ({self.config.process_name!r}) exited before it could be "
                "signalled",
            )
        pids = ", ".join(str(p) for p in signalled)
        return f"sent {self.config.signame} to pid {pids}"


class RequestNotifier:
    """``loadPatchType: request``: call the game's reload endpoint until it answers 2xx.

    Each call follows :mod:`.reload`'s limits (capped answer, redirects on the configured origin
    only, the address policy).
    """

    def __init__(
        self,
        config: RequestConfig,
        session: Callable[[], aiohttp.ClientSession],
        policy: UrlPolicy,
    ) -> None:
        self.config = config
        self.endpoint = config.endpoint
        self._session = session
        self._policy = policy
        self.description = f"{config.method.upper()} {redact_url(self.endpoint)}"

    async def ready(self) -> None:
        return None

    async def wait_ready(self, deadline: float) -> None:
        return None  # notify() retries until the deadline instead

    def blocking_notify(self) -> Callable[[UpdateInfo], str] | None:
        return None  # an HTTP request on the event loop

    async def notify(self, info: UpdateInfo, deadline: float | None = None) -> str:
        session = self._session()
        attempts = 0
        backoff = Backoff(initial=0.2, cap=5.0, jitter=False)
        last = ""
        while True:
            attempts += 1
            try:
                answer = await self._call(session, info)
                if 200 <= answer.status <= 299:
                    return f"{self.description} answered {answer.status}"
                quoted = f": {answer.excerpt!r}" if answer.excerpt else ""
                last = f"answered {answer.status}{quoted}"
            except reload.ReloadCallError as e:
                raise NotifyFailed(
                    "game reload request failed", f"{self.description} failed: {e}"
                ) from None
            except (aiohttp.ClientError, TimeoutError) as e:
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            delay = backoff.next()
            out_of_time = deadline is not None and time.monotonic() + delay >= deadline
            out_of_tries = deadline is None and attempts > self.config.retries
            if out_of_time or out_of_tries:
                raise NotifyFailed(
                    "game reload request failed",
                    f"{self.description} failed after {attempts} attempt(s): {last}",
                )
            await asyncio.sleep(delay)

    async def _call(self, session: aiohttp.ClientSession, info: UpdateInfo) -> reload.ReloadAnswer:
        method = self.config.method.upper()
        body: dict[str, Any]
        if method == "GET":
            body = {"params": {"version": info.version, "file": info.file}}
        else:
            body = {"json": info.as_dict()}
        return await reload.call(
            session,
            method,
            self.endpoint,
            policy=self._policy,
            timeout=self.config.timeout_seconds,
            headers=self.config.headers,
            **body,
        )

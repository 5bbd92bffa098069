"""One hot update from URL to notified game, its record, and the replay after a restart.

An update (``POST /hot-update`` or the replay) runs under :attr:`HotUpdater.lock`, so there is
never more than one at a time. A ``POST`` update either completes (new file in place, game
notified, 200) or leaves the previous file exactly as it was: the game is checked *before* the
download (no download for a game that is not there), the file is swapped in atomically only when
complete and verified, and put back when the notification fails. When the sidecar stops
(SIGTERM), a download in flight is cancelled and its update fails with 503 (answered, recorded).

A replay (:mod:`.replay`) re-applies the last applied version after a restart: it restores the
file first (a game that starts later reads it at boot), skipping the download when the file on
disk already has the recorded sha256, then waits, within ``waitForProcessSeconds``, for the game
to be ready and notifies it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from kidecar_core import ObjectRef, PluginContext, redact_url
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.download import Downloaded, download
from kidecar_plugins.hot_update.errors import InternalError, NotRunning, UpdateError
from kidecar_plugins.hot_update.files import (
    Installation,
    blocking,
    discard,
    file_sha256,
    install,
    remove_stale_temporaries,
)
from kidecar_plugins.hot_update.notify import (
    Notifier,
    RequestNotifier,
    SignalNotifier,
    UpdateInfo,
)
from kidecar_plugins.hot_update.record import Applied, PodInfo, pod_info, read_retrying, utc_now
from kidecar_plugins.hot_update.recorder import Recorder
from kidecar_plugins.hot_update.request import UpdateRequest
from kidecar_plugins.hot_update.retry import REPLAY_DOWNLOAD_ATTEMPTS, download_with_retries
from kidecar_plugins.hot_update.sessions import Sessions
from kidecar_plugins.hot_update.status import InProgress
from kidecar_plugins.hot_update.urls import UrlPolicy

__all__ = ["REPLAY_DOWNLOAD_ATTEMPTS", "HotUpdater", "UpdateRequest"]

log = logging.getLogger("kidecar.plugin.hot_update")

T = TypeVar("T")


def swap_then_notify(
    temp: Path, target: Path, send: Callable[[UpdateInfo], str], info: UpdateInfo
) -> tuple[Installation, str]:
    """:func:`.files.install`, then ``send(info)``; the previous file is put back when ``send``
    raises. Blocking: run with :func:`.files.blocking`."""
    installed = install(temp, target)
    try:
        return installed, send(info)
    except BaseException:
        installed.rollback()
        raise


async def install_and_notify(
    notifier: Notifier, temp: Path, target: Path, info: UpdateInfo
) -> tuple[Installation, str]:
    """Swap ``temp`` in as ``target`` (``temp`` removed in any case), then notify the game; the
    previous file is put back when the notification fails. A blocking notifier (a signal) runs
    in the same worker thread as the swap, right after it: one hand-off instead of two before
    the game is told (issue 17, docs/benchmarks.md)."""
    send = notifier.blocking_notify()
    try:
        if send is not None:
            return await blocking(
                lambda: swap_then_notify(temp, target, send, info),
                f"installing {target} and signalling the game",
                stuck=(
                    "install or signal not responding",
                    "the file system of fileDir or the process table (/proc) does not answer",
                ),
            )
        installed = await blocking(lambda: install(temp, target), f"installing {target}")
    finally:
        discard(temp)
    try:
        return installed, await notifier.notify(info)
    except BaseException:
        await blocking(installed.rollback, f"putting the previous {target} back")
        raise


class HotUpdater:
    """The plugin's state and work; one per configured plugin, created by ``kidecar_configure``.

    It composes the parts: :class:`.sessions.Sessions` (HTTP clients), a notifier
    (:mod:`.notify`), :class:`.recorder.Recorder` (outcomes, status, records) and
    :func:`.retry.download_with_retries` (the replay's download).
    """

    def __init__(self, ctx: PluginContext, config: HotUpdateConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.directory = Path(config.file_dir)
        self.policy = UrlPolicy.from_config(config.allowed_url_prefixes, config.allow_link_local)
        self.lock = asyncio.Lock()
        self.replayed = False
        """Set once the restart replay has run (it runs once per process, not per plugin start)."""
        self.stopping = asyncio.Event()
        """Set by :meth:`stop`: a download in flight is cancelled, new updates are refused."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sessions = Sessions(allow_link_local=config.allow_link_local)
        self.recorder = Recorder(ctx, config, self.spawn)
        self.notifier: Notifier
        if config.load_patch_type == "signal":
            assert config.signal is not None
            self.notifier = SignalNotifier(config.signal)
        else:
            assert config.request is not None
            self.notifier = RequestNotifier(
                config.request,
                self.sessions.request,
                UrlPolicy(allow_link_local=config.allow_link_local),
            )
        metrics = ctx.metrics
        self.updates = metrics.counter(
            "kidecar_hot_update_updates",
            "Hot updates by result (success, bad_request, busy, download_failed, ...) and "
            "trigger (api, replay).",
            ["result", "trigger"],
        )
        self.download_bytes = metrics.counter(
            "kidecar_hot_update_download_bytes", "Bytes downloaded by hot updates."
        )
        self.download_seconds = metrics.histogram(
            "kidecar_hot_update_download_seconds", "Duration of successful hot-update downloads."
        )

    # -- state kept by the recorder --------------------------------------------------------------

    @property
    def current(self) -> Applied | None:
        """The last applied update (``None`` before the first)."""
        return self.recorder.status.current

    @property
    def generation(self) -> int:
        """Bumped by every applied update: a replay that finds it changed is superseded."""
        return self.recorder.generation

    @property
    def pod(self) -> PodInfo | None:
        """This pod's UID and workload, once :meth:`load_pod` has read them."""
        return self.recorder.pod

    @property
    def pod_known(self) -> asyncio.Event:
        return self.recorder.pod_known

    @property
    def configmap(self) -> ObjectRef:
        return self.recorder.configmap

    @property
    def down_reason(self) -> str:
        return self.sessions.down_reason

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        removed = await blocking(
            lambda: remove_stale_temporaries(self.directory), "removing stale temporary files"
        )
        for path in removed:
            log.info("removed %s, left behind by an interrupted update", path)
        self.sessions.open()
        self.stopping.clear()  # a plugin restarted by its restartpolicy takes updates again
        if self.config.persistence.enabled and self.pod is None:
            self.spawn(self.load_pod(), "pod-info")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a plugin task that :meth:`stop` cancels."""
        task = self.ctx.spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self.sessions.down_reason = (
            "the sidecar is stopping (SIGTERM)"
            if self.ctx.shutting_down
            else "the hot_update plugin is restarting after a failure (see the sidecar's log)"
        )
        self.stopping.set()
        # A replay cut short by the stop is not a failed update: cancel it before the sessions
        # it uses go away.
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # An update requested through the API is: its download is cancelled at once (see
        # _until_stopped), and it is answered and recorded before the sessions close.
        async with self.lock:
            pass
        await self.sessions.close()

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The body of ``GET /hot-update`` (``HotUpdateStatus`` in ``openapi.yaml``)."""
        return self.recorder.status.to_json()

    def busy_message(self) -> str:
        return self.recorder.status.busy_message(self.config.wait_for_process_seconds)

    def count(self, label: str, trigger: str) -> None:
        self.updates.labels(label, trigger).inc()

    # -- one update -----------------------------------------------------------------------------

    async def apply(
        self, req: UpdateRequest, trigger: str, *, deadline: float | None = None
    ) -> dict[str, Any]:
        """Apply ``req``; the caller holds :attr:`lock`. Returns the 200 answer's body.

        Raises :class:`UpdateError`; every outcome is recorded (result, annotation, Event).
        ``deadline`` (monotonic) marks a replay, which waits for the game until then.
        """
        status = self.recorder.status
        status.in_progress = InProgress(req.version, redact_url(req.url), trigger, utc_now())
        try:
            if deadline is None:
                body = await self._apply_now(req)
            else:
                body = await self._replay_one(req, deadline)
        except UpdateError as e:
            self.recorder.failure(req, e)
            raise
        except Exception as e:  # a bug must still give an honest answer and leave a record
            log.exception("hot update to %s failed unexpectedly", req.version)
            error = InternalError("internal error", f"internal error: {type(e).__name__}: {e}")
            self.recorder.failure(req, error)
            raise error from e
        finally:
            status.in_progress = None
        return body

    async def _apply_now(self, req: UpdateRequest) -> dict[str, Any]:
        self.policy.check(req.url)
        if self.stopping.is_set():
            raise self._stopping_error(req, "refused")
        await self.notifier.ready()  # no download for a game that cannot be notified
        got = await self._until_stopped(self._download(req), req)
        target = self.directory / req.name
        info = self._info(req, got.sha256, target)
        installed, done = await install_and_notify(self.notifier, got.temp, target, info)
        await blocking(installed.commit, f"removing the previous {target}")
        return self.recorder.success(req, got.sha256, target, done, got)

    async def _replay_one(self, req: UpdateRequest, deadline: float) -> dict[str, Any]:
        self.policy.check(req.url)
        target = self.directory / req.name
        on_disk = await blocking(lambda: file_sha256(target), f"reading {target}")
        got: Downloaded | None = None
        if on_disk is not None and on_disk == req.sha256:
            log.info("%s already holds %s (sha256 matches): no download", target, req.version)
        else:
            got = await download_with_retries(lambda: self._download(req), req, deadline)
            try:
                installed = await blocking(
                    lambda: install(got.temp, target), f"installing {target}"
                )
            finally:
                discard(got.temp)
            await blocking(installed.commit, f"removing the previous {target}")
        sha = req.sha256 or (got.sha256 if got else "")
        await self.notifier.wait_ready(deadline)
        done = await self.notifier.notify(self._info(req, sha, target), deadline)
        return self.recorder.success(req, sha, target, done, got)

    async def _download(self, req: UpdateRequest) -> Downloaded:
        got = await download(
            self.sessions.download(),
            req.url,
            directory=self.directory,
            name=req.name,
            policy=self.policy,
            max_bytes=self.config.max_bytes,
            timeout=self.config.download_timeout_seconds,
            expected_sha256=req.sha256,
            on_bytes=self.download_bytes.inc,
        )
        self.download_seconds.observe(got.seconds)
        return got

    async def _until_stopped(self, work: Coroutine[Any, Any, T], req: UpdateRequest) -> T:
        """``await work``, unless the sidecar stops first: then it is cancelled (a download
        cleans up its temporary file) and the update fails with 503."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise self._stopping_error(req, "cancelled")
        return task.result()

    def _stopping_error(self, req: UpdateRequest, what: str) -> NotRunning:
        stopping = self.ctx.shutting_down
        return NotRunning(
            "sidecar stopping" if stopping else "not running",
            f"{self.down_reason}: the update to {req.version} was {what}; the previous file is "
            f"kept, send it again once {'the sidecar' if stopping else 'the plugin'} is back",
        )

    def _info(self, req: UpdateRequest, sha256: str, target: Path) -> UpdateInfo:
        return UpdateInfo(req.version, redact_url(req.url), str(target), sha256)

    # -- restart --------------------------------------------------------------------------------

    async def load_pod(self) -> None:
        """Learn this pod's UID and owning workload (retried until the API server answers)."""
        ref = ObjectRef.pod(self.ctx.identity)
        pod = await read_retrying(self.ctx, ref, "needed for the hot-update record", required=True)
        assert pod is not None
        self.recorder.set_pod(pod_info(pod, self.ctx.identity.name))

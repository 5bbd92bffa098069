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
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs
from yarl import URL

from kidecar_core import (
    Event,
    ObjectRef,
    PluginContext,
    Result,
    Write,
    __version__,
    redact_url,
)
from kidecar_plugins.hot_update import reload
from kidecar_plugins.hot_update.config import HotUpdateConfig
from kidecar_plugins.hot_update.download import Downloaded, download, make_session
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.files import (
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
from kidecar_plugins.hot_update.record import (
    Applied,
    PodInfo,
    pod_info,
    read_retrying,
    record_writes,
    utc_now,
)
from kidecar_plugins.hot_update.urls import UrlPolicy, file_name, parse_url

log = logging.getLogger("kidecar.plugin.hot_update")

REPLAY_DOWNLOAD_ATTEMPTS = 3
T = TypeVar("T")


@attrs.frozen
class UpdateRequest:
    """A validated request to apply ``url`` as ``version``."""

    version: str
    url: URL
    sha256: str | None
    name: str
    recorded_without_credentials: bool = False
    """A replay of a record whose URL lost its userinfo/query when it was stored."""

    @classmethod
    def create(
        cls,
        version: str,
        url: str,
        sha256: str | None,
        *,
        recorded_without_credentials: bool = False,
    ) -> UpdateRequest:
        parsed = parse_url(url)
        return cls(version, parsed, sha256, file_name(parsed), recorded_without_credentials)

    @property
    def has_credentials(self) -> bool:
        """The URL has userinfo or a query string (what records and answers leave out)."""
        return (
            self.url.user is not None
            or self.url.password is not None
            or bool(self.url.query_string)
        )


class HotUpdater:
    """The plugin's state and work; one per configured plugin, created by ``kidecar_configure``."""

    def __init__(self, ctx: PluginContext, config: HotUpdateConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.directory = Path(config.file_dir)
        self.policy = UrlPolicy.from_config(config.allowed_url_prefixes, config.allow_link_local)
        self.lock = asyncio.Lock()
        self.current: Applied | None = None
        self.last: dict[str, Any] | None = None
        self.in_progress: dict[str, Any] | None = None
        self.generation = 0
        """Bumped by every applied update: a replay that finds it changed is superseded."""
        self.pod: PodInfo | None = None
        self.pod_known = asyncio.Event()
        self.replayed = False
        """Set once the restart replay has run (it runs once per process, not per plugin start)."""
        self.stopping = asyncio.Event()
        """Set by :meth:`stop`: a download in flight is cancelled, new updates are refused."""
        self.down_reason = "the hot_update plugin is starting"
        """Why updates are refused while it is not running (said in the 503)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._downloads: aiohttp.ClientSession | None = None
        self._requests: aiohttp.ClientSession | None = None
        self.notifier: Notifier
        if config.load_patch_type == "signal":
            assert config.signal is not None
            self.notifier = SignalNotifier(config.signal)
        else:
            assert config.request is not None
            self.notifier = RequestNotifier(
                config.request,
                self._request_session,
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

    @property
    def configmap(self) -> ObjectRef:
        name = self.config.persistence.config_map_name
        return ObjectRef.configmap(self.ctx.identity.namespace, name)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        removed = await blocking(
            lambda: remove_stale_temporaries(self.directory), "removing stale temporary files"
        )
        for path in removed:
            log.info("removed %s, left behind by an interrupted update", path)
        agent = {"User-Agent": f"kidecar/{__version__}"}
        allow = self.config.allow_link_local
        self._downloads = make_session(allow_link_local=allow, headers=agent)
        self._requests = reload.make_session(allow_link_local=allow, headers=agent)
        self.stopping.clear()  # a plugin restarted by its restartpolicy takes updates again
        if self.config.persistence.enabled and self.pod is None:
            self.spawn(self.load_pod(), "pod-info")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a plugin task that :meth:`stop` cancels."""
        task = self.ctx.spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self.down_reason = (
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
        for session in (self._downloads, self._requests):
            if session is not None:
                await session.close()
        self._downloads = self._requests = None

    def _download_session(self) -> aiohttp.ClientSession:
        if self._downloads is None:
            raise self._down_error()
        return self._downloads

    def _request_session(self) -> aiohttp.ClientSession:
        if self._requests is None:
            raise self._down_error()
        return self._requests

    def _down_error(self) -> UpdateError:
        return UpdateError(503, "not running", f"{self.down_reason}; try again later")

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The body of ``GET /hot-update``."""
        cur = self.current
        return {
            "version": cur.version if cur else None,
            "url": cur.url if cur else None,  # stored redacted
            "sha256": cur.sha256 if cur else None,
            "file": cur.file if cur else None,
            "updatedAt": cur.updated_at if cur else None,
            "lastResult": self.last,
            "inProgress": self.in_progress,
        }

    def busy_message(self) -> str:
        what = self.in_progress or {}
        if what.get("trigger") == "replay":
            return (
                f"busy: re-applying {what.get('version')} after a restart (waiting up to "
                f"{self.config.wait_for_process_seconds:g}s for the game); try again later"
            )
        return f"busy: the update to {what.get('version')} is in progress; try again later"

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
        self.in_progress = {
            "version": req.version,
            "url": redact_url(req.url),
            "trigger": trigger,
            "since": utc_now(),
        }
        try:
            if deadline is None:
                body = await self._apply_now(req)
            else:
                body = await self._replay_one(req, deadline)
        except UpdateError as e:
            self._record_failure(req, e)
            raise
        except Exception as e:  # a bug must still give an honest answer and leave a record
            log.exception("hot update to %s failed unexpectedly", req.version)
            error = UpdateError(500, "internal error", f"internal error: {type(e).__name__}: {e}")
            self._record_failure(req, error)
            raise error from e
        finally:
            self.in_progress = None
        return body

    async def _apply_now(self, req: UpdateRequest) -> dict[str, Any]:
        self.policy.check(req.url)
        if self.stopping.is_set():
            raise self._stopping_error(req, "refused")
        await self.notifier.ready()  # no download for a game that cannot be notified
        got = await self._until_stopped(self._download(req), req)
        target = self.directory / req.name
        try:
            installed = await blocking(lambda: install(got.temp, target), f"installing {target}")
        finally:
            discard(got.temp)
        try:
            done = await self.notifier.notify(self._info(req, got.sha256, target))
        except BaseException:
            await blocking(installed.rollback, f"putting the previous {target} back")
            raise
        await blocking(installed.commit, f"removing the previous {target}")
        return self._record_success(req, got.sha256, target, done, got)

    async def _replay_one(self, req: UpdateRequest, deadline: float) -> dict[str, Any]:
        self.policy.check(req.url)
        target = self.directory / req.name
        on_disk = await blocking(lambda: file_sha256(target), f"reading {target}")
        got: Downloaded | None = None
        if on_disk is not None and on_disk == req.sha256:
            log.info("%s already holds %s (sha256 matches): no download", target, req.version)
        else:
            got = await self._download_with_retries(req, deadline)
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
        return self._record_success(req, sha, target, done, got)

    async def _download(self, req: UpdateRequest) -> Downloaded:
        got = await download(
            self._download_session(),
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

    def _stopping_error(self, req: UpdateRequest, what: str) -> UpdateError:
        stopping = self.ctx.shutting_down
        return UpdateError(
            503,
            "sidecar stopping" if stopping else "not running",
            f"{self.down_reason}: the update to {req.version} was {what}; the previous file is "
            f"kept, send it again once {'the sidecar' if stopping else 'the plugin'} is back",
        )

    async def _download_with_retries(self, req: UpdateRequest, deadline: float) -> Downloaded:
        delay = 1.0
        for attempt in range(1, REPLAY_DOWNLOAD_ATTEMPTS + 1):
            try:
                return await self._download(req)
            except UpdateError as e:
                last_try = attempt == REPLAY_DOWNLOAD_ATTEMPTS
                if e.status != 502 or last_try or time.monotonic() + delay > deadline:
                    if req.recorded_without_credentials:
                        raise UpdateError(
                            e.status,
                            e.reason,
                            f"{e.message} (the URL was recorded without its credentials, "
                            "which kidecar never stores: send the update again)",
                        ) from None
                    raise
                log.warning("%s; retrying in %gs", e.message, delay)
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _info(self, req: UpdateRequest, sha256: str, target: Path) -> UpdateInfo:
        return UpdateInfo(req.version, redact_url(req.url), str(target), sha256)

    # -- records --------------------------------------------------------------------------------

    def _record_success(
        self, req: UpdateRequest, sha256: str, target: Path, done: str, got: Downloaded | None
    ) -> dict[str, Any]:
        who = self.pod
        applied = Applied(
            version=req.version,
            url=redact_url(req.url),
            sha256=sha256,
            file=str(target),
            updated_at=utc_now(),
            url_redacted=req.has_credentials or req.recorded_without_credentials,
            pod=self.ctx.identity.name,
            pod_uid=who.uid if who else None,
            workload=str(who.workload) if who and who.workload else None,
        )
        self.current = applied
        self.generation += 1
        fetched = f"downloaded {got.size} bytes" if got else "file already on disk"
        message = f"{req.version} applied: {fetched} to {target}, {done}"
        self.last = {
            "version": req.version,
            "status": "success",
            "code": 200,
            "message": message,
            "at": applied.updated_at,
        }
        log.info("hot update %s from %s: %s", req.version, redact_url(req.url), message)
        writes: tuple[Write, ...] = ()
        if self.config.persistence.enabled:
            if who is not None:
                writes = record_writes(self.configmap, applied, who, self._source("persistence"))
            else:
                self.spawn(self._record_later(applied), f"record-{req.version}")
        self._emit(
            f"{req.version}: Update success",
            Event("HotUpdateSucceeded", f"{req.version} from {redact_url(req.url)}: {message}"),
            {"version": req.version, "status": "success", "sha256": sha256},
            writes,
        )
        return {
            "status": "ok",
            "version": req.version,
            "url": redact_url(req.url),
            "sha256": sha256,
            "file": str(target),
            "bytes": got.size if got else None,
            "message": message,
        }

    async def _record_later(self, applied: Applied) -> None:
        """Record an update that happened before this pod's UID and workload were known."""
        await self.pod_known.wait()
        assert self.pod is not None
        applied = attrs.evolve(
            applied,
            pod_uid=self.pod.uid,
            workload=str(self.pod.workload) if self.pod.workload else None,
        )
        writes = record_writes(self.configmap, applied, self.pod, self._source("persistence"))
        self.ctx.emit(
            Result(plugin=self.ctx.name, state="", kind="hot-update-record", writes=writes)
        )

    def _record_failure(self, req: UpdateRequest, error: UpdateError) -> None:
        self.last = {
            "version": req.version,
            "status": "failed",
            "code": error.status,
            "message": error.message,
            "at": utc_now(),
        }
        log.warning("hot update to %s failed (%d): %s", req.version, error.status, error.message)
        self._emit(
            f"{req.version}: Update failed: {error.reason}",
            Event(
                "HotUpdateFailed",
                f"{req.version} from {redact_url(req.url)}: {error.message}",
                type="Warning",
            ),
            {"version": req.version, "status": "failed", "code": error.status},
            (),
        )

    def _emit(
        self, state: str, event: Event, data: dict[str, Any], writes: tuple[Any, ...]
    ) -> None:
        self.ctx.emit(
            Result(
                plugin=self.ctx.name,
                state=state,
                storage=self.config.storage_config,
                source=self._source("storageConfig"),
                kind="hot-update",
                data=data,
                writes=writes,
                events=(event,),
            )
        )

    def _source(self, key: str) -> str:
        return self.ctx.config_path(key)

    # -- restart --------------------------------------------------------------------------------

    async def load_pod(self) -> None:
        """Learn this pod's UID and owning workload (retried until the API server answers)."""
        ref = ObjectRef.pod(self.ctx.identity)
        pod = await read_retrying(self.ctx, ref, "needed for the hot-update record", required=True)
        assert pod is not None
        self.pod = pod_info(pod, self.ctx.identity.name)
        self.pod_known.set()

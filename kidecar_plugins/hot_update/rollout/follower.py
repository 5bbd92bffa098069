"""One pod's part of a rollout: follow the workload's desired version and get there.

The follower reads this pod's workload (from the pod), waits for hot_update's restart replay,
then follows the rollout ConfigMap and the pod's GameServer by watch (:mod:`.follow`; the
GameServer's watch is the one the core keeps anyway): a new document, or the GameServer leaving
``Allocated``, starts a step at once, and nothing is polled at rest. Each step decides, from the
latest document:

* no rollout, or the pod is at its target (``Rollout.desired_for``: the new version, or the
  previous one below the partition): report ``Updated`` and wait for a change;
* this pod failed this revision and attempt: stay ``Failed`` until ``resume`` or a new revision;
* paused: ``Pending``; ``when: idle`` and the GameServer is ``Allocated``: ``WaitingForIdle``
  until the watch sees it released (read every ``retrySeconds`` instead when the GameServer
  cannot be watched: 403, or a cluster that does not serve the type);
* otherwise try a slot (again after ``retrySeconds``, backing off while the slots are busy);
  with one, :class:`~.run.UpdateRun` checks again, applies, verifies and
  gives the slot back.

Progress goes to the pod annotation ``rollout.kidecar.io/status`` through the write pipeline
(retried while the API server is away). Store errors never end the follower: it logs them once
and tries again at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import attrs

from kidecar_core import PROGRESS_ANNOTATION as ANNOTATION
from kidecar_core import (
    Backoff,
    Event,
    FailurePause,
    NotFoundError,
    ObjectRef,
    PluginContext,
    PodProgress,
    Result,
    Rollout,
    RolloutError,
    RolloutPhase,
    RolloutTarget,
    Workload,
    Write,
    configmap_ref,
    record_failure_pause,
    redact_url,
    rollout_in,
    utc_now,
)
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.record import read_retrying
from kidecar_plugins.hot_update.rollout.config import RolloutFollowConfig
from kidecar_plugins.hot_update.rollout.follow import AllocatedWatch, follow
from kidecar_plugins.hot_update.rollout.probes import ProbeWatch
from kidecar_plugins.hot_update.rollout.run import UpdateRun, as_requested
from kidecar_plugins.hot_update.rollout.slots import Held, Slots
from kidecar_plugins.hot_update.updater import HotUpdater
from kidecar_plugins.hot_update.urls import parse_url

log = logging.getLogger("kidecar.plugin.hot_update")


def recorded_form(url: str) -> str:
    """The URL as hot_update records it: dot segments resolved, without userinfo and query."""
    try:
        return redact_url(parse_url(url))
    except UpdateError:
        return redact_url(url)


class RolloutFollower:
    """The rollout state machine of this pod (one per hot_update plugin)."""

    def __init__(self, ctx: PluginContext, updater: HotUpdater, config: RolloutFollowConfig):
        self.ctx = ctx
        self.updater = updater
        self.config = config
        self.probes = ProbeWatch(ctx.name, config)
        self.workload: Workload | None = None
        self.ordinal: int | None = None
        self.slots: Slots | None = None
        self.rollout: Rollout | None = None
        self.changed = asyncio.Event()
        self.failed: tuple[int, int, str] | None = None
        """The run (``Rollout.run_key``) this pod failed: it does not try it again."""
        self._reported: PodProgress | None = None
        self.slot_backoff = Backoff(1.5 * config.retry_seconds, 6 * config.retry_seconds)
        """Busy slots in a row back off (0.75-1.5x ``retrySeconds``, the ceiling doubling up
        to 6x): a slot is held for ``verifySeconds`` at least, so asking again at once mostly
        costs a request."""
        self.server = AllocatedWatch(ctx, ObjectRef.gameserver(ctx.identity), self.changed)
        self.slot_problem: str | None = None
        self.gameserver_problem: str | None = None
        """Why the last read of the GameServer failed (it then counts as Allocated)."""
        """Why the last attempt on a slot failed (RBAC, the API server away), if it did."""
        self.paused_seen: tuple[int, int, str] | None = None
        """The run found paused by a pod's failure (see :meth:`UpdateRun.run`)."""

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow rollouts until cancelled (the plugin stops)."""
        if not await self._find_workload():
            return
        await self._wait_for_replay()
        assert self.workload is not None
        self.updater.spawn(self._follow(), "rollout-follow")
        self.updater.spawn(self.server.run(), "rollout-gameserver")
        while True:
            self.changed.clear()
            wait = await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait)

    async def _find_workload(self) -> bool:
        ref = ObjectRef.pod(self.ctx.identity)
        pod = await read_retrying(self.ctx, ref, "to find the workload to follow", required=True)
        assert pod is not None
        pod.setdefault("metadata", {}).setdefault("namespace", self.ctx.identity.namespace)
        self.workload = Workload.of_pod(pod)
        if self.workload is None:
            log.info("this pod belongs to no GameServerSet, StatefulSet or Deployment: "
                     "kidecar rollout does not apply to it")  # fmt: skip
            return False
        self.ordinal = self.workload.ordinal(self.ctx.identity.name)
        self.slots = Slots(
            self.ctx,
            self.workload,
            self.ctx.identity.name,
            self.config.lease_seconds,
            clock=self.ctx.clock.now,
        )
        log.info("following rollouts of %s", self.workload)
        return True

    async def _wait_for_replay(self) -> None:
        """The restart replay first: it puts back what this pod had, then rollouts move it."""
        if not self.updater.config.persistence.enabled:
            return
        # HotUpdater.replayed is a plain flag (no Event to wait on): look a few times a second.
        while not self.updater.replayed:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        async with self.updater.lock:  # the replay sets the flag first, then applies
            pass

    async def _follow(self) -> None:
        assert self.workload is not None
        ref = configmap_ref(self.workload.namespace)
        async for configmap in follow(self.ctx, ref, self.config.poll_seconds):
            try:
                self.rollout = rollout_in(configmap, self.workload)
            except RolloutError as e:
                if self.ctx.first_time(("rollout-unreadable", str(e))):
                    log.error("ignoring the rollout of %s: %s", self.workload, e)
                self.rollout = None
            self.changed.set()

    def period(self) -> float:
        """Seconds to the next look while the GameServer cannot be watched: ``retrySeconds``
        ±50% (no lockstep)."""
        return self.config.retry_seconds * random.uniform(0.5, 1.5)

    async def step(self) -> float | None:
        """One decision; the seconds until the next one (``None``: when the rollout changes)."""
        rollout = self.rollout
        if rollout is None:
            return None
        target = rollout.desired_for(self.ordinal)
        if target is None:
            self.report(rollout, RolloutPhase.HELD, "below the partition, no previous version")
            return None
        if self.at(target):
            self.report(rollout, RolloutPhase.UPDATED, f"at {target.version}")
            return None
        if self.failed == rollout.run_key:
            return None
        if rollout.paused or self.paused_seen == rollout.run_key:
            self.report(rollout, RolloutPhase.PENDING, "the rollout is paused")
            return None
        if rollout.when == "idle" and await self._server_busy():
            problem = self.gameserver_problem if self.server.allocated is None else None
            why = problem or "its GameServer is Allocated"
            self.report(rollout, RolloutPhase.WAITING_FOR_IDLE, why)
            return None if self.server.allocated else self.period()
        held = await self._try_slot(rollout)
        if held is None:
            problem = f" (cannot take one: {self.slot_problem})" if self.slot_problem else ""
            self.report(rollout, RolloutPhase.PENDING, f"waiting for a slot{problem}")
            return self.slot_backoff.next()
        self.slot_backoff.reset()
        await UpdateRun(self, held, rollout, target).run()
        return 0

    # -- what the steps look at -----------------------------------------------------------------

    def at(self, target: RolloutTarget) -> bool:
        """Whether the version applied now is ``target`` (URLs compared as hot_update records
        them: normalised, without credentials)."""
        current = self.updater.current
        if current is None:
            return False
        wanted = attrs.evolve(as_requested(target), url=recorded_form(target.url))
        return wanted.same_file(current.version, current.url, current.sha256)

    async def _server_busy(self) -> bool:
        """Whether the GameServer is ``Allocated``: as watched, or read now if not watched."""
        if self.server.allocated is not None:
            return self.server.allocated
        return await self.allocated()

    async def allocated(self) -> bool:
        """Whether this pod's GameServer is ``Allocated``, read now (unknown counts as yes:
        wait). No
        GameServer, or a cluster that does not serve the type (no OpenKruiseGame: a StatefulSet
        or a Deployment), is idle: nothing allocates it."""
        try:
            server = await self.ctx.get_object(ObjectRef.gameserver(self.ctx.identity))
        except NotFoundError:  # get_object answers None for a missing object: the type is
            self.gameserver_problem = None  # not served
            return False
        except Exception as e:  # unknown: do not disturb a server that may have players
            self.gameserver_problem = f"cannot read its GameServer ({e}): waiting"
            self._once("gameserver", f"cannot read this pod's GameServer ({e}); waiting")
            return True
        self.gameserver_problem = None
        spec = (server or {}).get("spec") or {}
        return spec.get("opsState") == "Allocated"

    async def _try_slot(self, rollout: Rollout) -> Held | None:
        assert self.slots is not None
        try:
            held = await self.slots.try_acquire(rollout.slots, rollout.revision)
        except Exception as e:  # the API server away, RBAC: try again at the next step
            self._once("slot", f"cannot take a rollout slot: {e}")
            self.slot_problem = str(e)  # shown by `kidecar rollout status`, not only logged
            return None
        self.slot_problem = None
        return held

    async def fresh_rollout(self) -> Rollout | None:
        """The rollout as stored now (a direct read, not the followed copy)."""
        assert self.workload is not None
        configmap = await self.ctx.get_object(configmap_ref(self.workload.namespace))
        return rollout_in(configmap, self.workload)

    def _once(self, what: str, message: str) -> None:
        if self.ctx.first_time(("rollout", what, message)):
            log.warning("%s", message)

    # -- what the steps do ----------------------------------------------------------------------

    def report(self, rollout: Rollout, phase: str, message: str) -> None:
        """Put this pod's progress into its annotation (only when it changed)."""
        current = self.updater.current
        progress = PodProgress(
            revision=rollout.revision,
            attempt=rollout.attempt,
            target=str(rollout.desired_for(self.ordinal) or ""),
            version=current.version if current else None,
            phase=phase,
            message=message[:500],
            at=utc_now(),
        )
        last = self._reported
        if last is not None and self._same(last, progress):
            return
        self._reported = progress
        patch = {"metadata": {"annotations": {ANNOTATION: progress.to_json()}}}
        write = Write(
            ObjectRef.pod(self.ctx.identity), patch, source=self.ctx.config_path("rollout")
        )
        self.ctx.emit(Result(plugin=self.ctx.name, state="", kind="rollout", writes=(write,)))

    @staticmethod
    def _same(last: PodProgress, new: PodProgress) -> bool:
        """Nothing to report: same state (an Updated pod's message does not matter)."""
        if attrs.evolve(last, at="", message="") != attrs.evolve(new, at="", message=""):
            return False
        return new.phase == RolloutPhase.UPDATED or last.message == new.message

    async def fail(self, rollout: Rollout, why: str) -> None:
        """This pod failed ``rollout``: report it, say so on the workload, pause the rollout."""
        assert self.workload is not None
        self.failed = rollout.run_key
        self.report(rollout, RolloutPhase.FAILED, why)
        who = f"pod {self.ctx.identity.name}"
        log.error("rollout of %s to %s: %s; pausing it", self.workload, rollout.target, why)
        self.ctx.record_event(
            Event("RolloutPaused", f"{who}: {why}", type="Warning", about=self.workload.ref)
        )
        await self.pause(rollout, f"{who}: {why}")

    async def pause(self, rollout: Rollout, reason: str) -> None:
        """Pause this revision and attempt of ``rollout`` with a failure pause (its Lease),
        retrying while the API server is away: a bad version must not roll on."""
        assert self.workload is not None
        self.paused_seen = rollout.run_key
        pause = FailurePause(
            rollout.revision, rollout.attempt, self.ctx.identity.name, reason, rollout.started_at
        )
        delay = 1.0
        while True:
            try:
                await record_failure_pause(self.ctx, self.workload, pause)
                return
            except Exception as e:  # keep trying
                self._once("pause", f"cannot pause the rollout yet ({e}); retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

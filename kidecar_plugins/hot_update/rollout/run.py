"""One update under a slot: check again, apply, verify, roll back if the probe turns Failed.

The slot is renewed while held and always given back, whatever happens. In between:

1. the rollout is read again (the follower's copy may be a period old), with its failure pause
   (a pod that just failed must stop this one: it wrote the pause before giving its slot back),
   and the GameServer too under ``when: idle``;
2. the target is applied through hot_update's own path (:meth:`HotUpdater.apply` under its
   lock: verified download, atomic swap, game notified, recorded), trigger ``rollout``;
3. for ``verifySeconds`` the pod's probes are watched; a failed state rolls the pod back to the
   version it had (trigger ``rollback``), reports ``Failed`` and pauses the rollout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import attrs

from kidecar_core import Backoff, Rollout, RolloutPhase, RolloutTarget, read_failure_pause
from kidecar_plugins.hot_update.api import parse_sha256
from kidecar_plugins.hot_update.errors import UpdateError
from kidecar_plugins.hot_update.record import Applied
from kidecar_plugins.hot_update.rollout.slots import Held
from kidecar_plugins.hot_update.updater import UpdateRequest

if TYPE_CHECKING:
    from kidecar_plugins.hot_update.rollout.follower import RolloutFollower

log = logging.getLogger("kidecar.plugin.hot_update")


def as_requested(target: RolloutTarget) -> RolloutTarget:
    """``target`` with its sha256 as ``POST /hot-update`` takes it (the same rule: lower case,
    an optional ``sha256:`` prefix dropped), so ``sha256:AB..`` names the file hot_update records
    as ``ab..``; a sha256 hot_update would refuse is left for the update to refuse."""
    try:
        return attrs.evolve(target, sha256=parse_sha256(target.sha256))
    except UpdateError:
        return target


class UpdateRun:
    """What this pod does while it holds a slot."""

    def __init__(
        self, follower: RolloutFollower, held: Held, rollout: Rollout, target: RolloutTarget
    ) -> None:
        self.follower = follower
        self.held = held
        self.rollout = rollout
        self.target = target

    async def run(self) -> None:
        renewing = asyncio.ensure_future(self._renew())
        cancelled = False
        try:
            if await self._still_wanted():
                await self._update()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await self._release(retry=not cancelled)

    async def _still_wanted(self) -> bool:
        f = self.follower
        try:
            fresh = await f.fresh_rollout()
        except Exception as e:  # cannot tell: give the slot back and try again later
            log.warning("cannot read the rollout again after taking a slot (%s)", e)
            return False
        old = self.rollout
        if fresh is None or fresh.paused or fresh.run_key != old.run_key:
            return False
        if fresh.desired_for(f.ordinal) != self.target:
            return False
        if fresh.when == "idle" and await f.allocated():
            return False
        if not await self._not_failed(fresh):
            return False
        self.rollout = fresh
        return True

    async def _not_failed(self, rollout: Rollout) -> bool:
        """No pod's failure paused this revision and attempt (remembered when one did)."""
        f = self.follower
        assert f.workload is not None
        try:
            failure = await read_failure_pause(f.ctx, f.workload)
        except Exception as e:  # cannot tell: give the slot back and try again later
            log.warning("cannot read the rollout's failure pause (%s)", e)
            return False
        if failure is not None and failure.applies_to(rollout):
            f.paused_seen = rollout.run_key
            f.report(rollout, RolloutPhase.PENDING, "the rollout is paused")
            return False
        return True

    async def _update(self) -> None:
        f, target = self.follower, self.target
        previous = f.updater.current
        f.report(self.rollout, RolloutPhase.UPDATING, f"applying {target.version}")
        f.probes.arm()
        started = time.monotonic()
        error = await self._apply(target, "rollout")
        if error is not None:
            f.probes.disarm()
            if not f.updater.stopping.is_set():  # a SIGTERM is no reason to pause a rollout
                await f.fail(self.rollout, f"the update to {target.version} failed: {error}")
            return
        seconds = f.config.verify_seconds
        if seconds:
            f.report(
                self.rollout,
                RolloutPhase.UPDATING,
                f"{target.version} applied; watching the probes for {seconds:g}s",
            )
        failure = await f.probes.wait_failed(seconds)
        if failure is None:
            unheard = f.probes.unheard() if seconds else None
            note = f" (not verified: no result of probePlugins {unheard} yet)" if unheard else ""
            if unheard and f.ctx.first_time(("rollout-unheard", unheard)):
                log.warning("rollout: probePlugins %s never emitted a result: is each a "
                            "configured plugin? Updates are not verified", unheard)  # fmt: skip
            f.report(self.rollout, RolloutPhase.UPDATED, f"{target.version} applied{note}")
            return
        after = time.monotonic() - started
        back = await self._roll_back(previous, self.rollout.previous)
        why = f"{failure} {after:.0f}s after the update to {target.version}; {back}"
        await f.fail(self.rollout, why)

    async def _apply(self, target: RolloutTarget, trigger: str) -> str | None:
        """Apply ``target`` with hot_update's update; the failure's message, or ``None``.

        Nothing is applied when the pod already has ``target`` once it holds the update lock
        (an update through the API, or the restart replay, may have been faster)."""
        updater = self.follower.updater
        try:
            sha256 = as_requested(target).sha256
            request = UpdateRequest.create(target.version, target.url, sha256)
            async with updater.lock:
                if self.follower.at(target):
                    return None
                await updater.apply(request, trigger)
        except UpdateError as e:  # recorded by apply() (annotation, Event, metrics)
            updater.count(e.label, trigger)
            return e.message
        updater.count("success", trigger)
        return None

    async def _roll_back(self, previous: Applied | None, declared: RolloutTarget | None) -> str:
        """Back to ``previous`` (what this pod had). Its record has no credentials in its URL
        (hot_update leaves them out): when the rollout's ``previous`` is that version, its URL
        (as given to the command) is used."""
        if previous is None:
            return "no earlier hot update on this pod to roll back to"
        url = previous.url
        if declared is not None and declared.version == previous.version:
            url = declared.url
        back = RolloutTarget(previous.version, url, previous.sha256 or None)
        error = await self._apply(back, "rollback")
        if error is None:
            return f"rolled back to {previous.version}"
        return f"rolling back to {previous.version} failed: {error}"

    async def _renew(self) -> None:
        f = self.follower
        assert f.slots is not None
        interval = f.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await f.slots.renew(self.held):
                    return
            except Exception as e:  # try again at the next renewal
                log.warning("cannot renew the rollout slot %s (%s)", self.held.ref, e)

    async def _release(self, *, retry: bool) -> None:
        """Give the slot back: retried until done (an outage must not keep it forever), or once
        when the sidecar is stopping (its Lease then expires). Retries wait up to 1, 2, 4, then
        5 s, each drawn from the upper half of its step (jitter: a fleet that lost the API server
        together does not retry in step)."""
        slots = self.follower.slots
        assert slots is not None
        backoff = Backoff(initial=1.0, cap=5.0)
        while True:
            try:
                await slots.release(self.held)
                return
            except Exception as e:
                if not retry:
                    log.warning("could not give the rollout slot back (%s): it expires", e)
                    return
                log.warning("cannot give the rollout slot back yet (%s); retrying", e)
            await self.follower.ctx.clock.sleep(backoff.next())

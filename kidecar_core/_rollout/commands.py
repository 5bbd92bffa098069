"""``kidecar rollout start|status|pause|resume|undo``: what each does to the rollout document.

Every change is a read-modify-write conditional on the ConfigMap's ``resourceVersion``
(:func:`~kidecar_core._store.rollout.change_rollout`). Refusals raise
:class:`~kidecar_core._store.rollout.RolloutRefused` (exit 1); bad input
:class:`~kidecar_core._store.rollout.RolloutUsageError` (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from kidecar_core._rollout import progress
from kidecar_core._store.rollout import (
    Rollout,
    RolloutRefused,
    RolloutTarget,
    RolloutUsageError,
    When,
    Workload,
    change_rollout,
    resolve_max_unavailable,
    utc_now,
)
from kidecar_core._store.rollout_leases import FailurePause, effective_pause, read_failure_pause

if TYPE_CHECKING:  # the cluster brings the kubernetes client: not for `kidecar run`'s start-up
    from kidecar_core._rollout.cluster import Cluster

Checker = Callable[[str, str, RolloutTarget], list[str]]
"""``(config text, where it came from, target) -> problems`` (the sidecars' own rules)."""


@attrs.frozen
class StartRequest:
    """``kidecar rollout start``'s arguments, parsed."""

    workload: Workload
    target: RolloutTarget
    max_unavailable: str
    partition: int
    when: When


def replicas_of(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return value if isinstance(value, int) and value >= 0 else 1


def plan_start(
    current: Rollout | None,
    req: StartRequest,
    slots: int,
    recorded: RolloutTarget | None,
    pods: Sequence[Mapping[str, Any]],
    failure: FailurePause | None = None,
) -> Rollout:
    """The document after ``start``; :class:`RolloutRefused` while another version is rolling.

    The same target again changes the strategy of the running rollout (``maxUnavailable``,
    ``partition``, ``when``: lower the partition of a canary). A new target is refused while the
    current rollout is in progress and not paused; a paused one may be replaced. ``previous`` is
    what the fleet ran before: the target of the last complete rollout (or ``recorded``, the
    version hot_update recorded for the workload, before the first rollout). ``failure``: the
    workload's failure pause, which pauses the rollout it names.
    """
    now = utc_now()
    if current is not None and current.target == req.target:
        return attrs.evolve(
            current,
            max_unavailable=req.max_unavailable,
            slots=slots,
            partition=req.partition,
            when=req.when,
            updated_at=now,
        )
    previous = recorded
    revision = 1
    if current is not None:
        done = progress.complete(current, req.workload, pods)
        if not done and effective_pause(current, failure) is None:
            found = progress.counts(progress.rows(current, req.workload, pods))
            raise RolloutRefused(
                f"a rollout of {req.workload} to {current.target.version} (revision "
                f"{current.revision}) is in progress: {found[progress.UPDATED]}/{len(pods)} pods "
                f"updated. Wait for it, pause it to replace it (`kidecar rollout pause "
                f"{req.workload}`), or undo it"
            )
        previous = current.target if done else current.previous
        revision = current.revision + 1
    return Rollout(
        workload=str(req.workload),
        revision=revision,
        target=req.target,
        previous=previous,
        max_unavailable=req.max_unavailable,
        slots=slots,
        partition=req.partition,
        when=req.when,
        started_at=now,
        updated_at=now,
    )


class Commands:
    """The subcommands, over one :class:`Cluster`."""

    def __init__(self, cluster: Cluster, check: Checker, result_configmap: str) -> None:
        self.cluster = cluster
        self.check = check
        self.result_configmap = result_configmap

    async def start(self, req: StartRequest, config_text: tuple[str, str] | None) -> str:
        workload = req.workload
        if req.partition and not workload.kind.ordinals:
            raise RolloutUsageError(
                f"--partition needs pods with ordinals (gameserverset, statefulset); the pods of "
                f"{workload} have none"
            )
        obj = await self.cluster.workload_object(workload)
        text, where = config_text or await self.cluster.sidecar_config(workload, obj)
        problems = self.check(text, where, req.target)
        if problems:
            listed = "\n".join(f"  {p}" for p in problems)
            raise RolloutUsageError(
                f"the sidecars of {workload} would refuse this rollout ({where}):\n{listed}"
            )
        slots = resolve_max_unavailable(req.max_unavailable, replicas_of(obj))
        pods = await self.cluster.pods(workload, obj)
        recorded = await self.cluster.recorded_version(workload, self.result_configmap)
        failure = await read_failure_pause(self.cluster, workload)
        rollout, _ = await change_rollout(
            self.cluster,
            workload,
            lambda cur: plan_start(cur, req, slots, recorded, pods, failure),
        )
        assert rollout is not None
        return (
            f"rollout of {workload} to {rollout.target.version}: revision {rollout.revision}, "
            f"{len(pods)} pods, {rollout.slots} at a time, partition {rollout.partition}, "
            f"when {rollout.when}"
            + (" (PAUSED: resume it to go on)" if effective_pause(rollout, failure) else "")
        )

    async def status(self, workload: Workload) -> str:
        obj = await self.cluster.workload_object(workload)
        rollout = await self._current(workload)
        pods = await self.cluster.pods(workload, obj)
        failure = await read_failure_pause(self.cluster, workload)
        paused = effective_pause(rollout, failure)
        return progress.render(rollout, workload, pods, paused=paused)

    async def pause(self, workload: Workload) -> str:
        reason = f"paused with `kidecar rollout pause` at {utc_now()}"

        def change(cur: Rollout | None) -> Rollout | None:
            if cur is None or cur.paused:
                return None
            return attrs.evolve(cur, paused=True, pause_reason=reason, updated_at=utc_now())

        rollout, written = await self._change(workload, change, "to pause")
        state = "paused" if written else "already paused"
        return f"{workload}: {state} at revision {rollout.revision} ({rollout.target.version})"

    async def resume(self, workload: Workload) -> str:
        obj = await self.cluster.workload_object(workload)
        failure = await read_failure_pause(self.cluster, workload)

        def change(cur: Rollout | None) -> Rollout | None:
            if cur is None or effective_pause(cur, failure) is None:
                return None
            slots = resolve_max_unavailable(cur.max_unavailable, replicas_of(obj))
            return attrs.evolve(
                cur,
                paused=False,
                pause_reason="",
                attempt=cur.attempt + 1,
                slots=slots,
                updated_at=utc_now(),
            )

        rollout, written = await self._change(workload, change, "to resume")
        state = "resumed" if written else "not paused"
        return f"{workload}: {state}, rolling to {rollout.target.version}"

    async def undo(self, workload: Workload, when: When | None) -> str:
        def change(cur: Rollout | None) -> Rollout | None:
            if cur is None:
                return None
            if cur.previous is None:
                raise RolloutRefused(
                    f"nothing to undo: {cur.target.version} (revision {cur.revision}) is the "
                    f"first version kidecar rolled out to {workload}; there is none before it"
                )
            now = utc_now()
            return attrs.evolve(
                cur,
                revision=cur.revision + 1,
                target=cur.previous,
                previous=cur.target,
                partition=0,
                when=when or cur.when,
                paused=False,
                pause_reason="",
                attempt=1,
                started_at=now,
                updated_at=now,
            )

        rollout, _ = await self._change(workload, change, "to undo")
        return (
            f"rolling {workload} back to {rollout.target.version} (revision {rollout.revision}, "
            f"{rollout.slots} at a time, when {rollout.when})"
        )

    async def _current(self, workload: Workload) -> Rollout:
        rollout, _ = await change_rollout(self.cluster, workload, lambda cur: None)
        if rollout is None:
            raise RolloutRefused(f"no rollout of {workload} in namespace {workload.namespace}")
        return rollout

    async def _change(
        self, workload: Workload, change: Callable[[Rollout | None], Rollout | None], what: str
    ) -> tuple[Rollout, bool]:
        """Apply ``change``; :class:`RolloutRefused` when the workload has no rollout."""
        if what != "to resume":  # resume reads the workload itself (its replicas)
            await self.cluster.workload_object(workload)
        rollout, written = await change_rollout(self.cluster, workload, change)
        if rollout is None:
            where = f"{workload} in namespace {workload.namespace}"
            if what == "to undo":
                raise RolloutRefused(f"nothing to undo: no rollout of {where}")
            raise RolloutRefused(f"no rollout of {where} {what}")
        return rollout, written

"""Dry run for GameServer opsState: show what kidecar *would* set, on the pod, and set nothing.

When to use it
    You are about to let kidecar drive ``spec.opsState`` (a probe's ``markerPolicies`` with
    ``gameServerOpsState``), and a wrong policy would take healthy servers out of allocation or
    mark busy ones for deletion.  Load this file for a while first: every opsState kidecar would
    write lands in a pod annotation instead, so the team can watch the decisions on real traffic
    (``kubectl get pods -L`` / dashboards / ``kubectl describe pod`` events) before trusting them.
    Everything else (labels, annotations, other fields) is written as usual.

How to load it
    ``kidecar run --plugin-file contrib/overrides/dry_run_opsstate.py`` or, in a pod, copy the
    file into the image (or a ConfigMap volume) and set
    ``KIDECAR_PLUGIN_FILES=/opt/sidecar/overrides/dry_run_opsstate.py``.

    Loading the file turns the dry run on.  ``KIDECAR_DRY_RUN_OPSSTATE=0`` (or ``false``/``no``/
    ``off``) turns it off without removing the file, so the switch to "for real" is one env var.

What it does
    A ``wrapper=True`` implementation of ``kidecar_persist``: it receives the writes every
    storage backend contributed for a result and removes ``spec.opsState`` from those aimed at a
    GameServer.  In their place the pod gets::

        kidecar.io/dry-run-opsstate: Maintaining
        kidecar.io/dry-run-opsstate-reason: tcp_probe result 'Unreachable' would set
            gameservers.game.kruise.io/default/gs-0 spec.opsState to 'Maintaining'
            (plugins[0].config.endpoints[0].storageConfig.inKube.markerPolicies[0]...)

    and an ``OpsStateDryRun`` Event when the value changes.  The rest of a rewritten write (other
    fields of the same patch) is kept with its guards.

Limits
    * The guard that keeps a human's ``Maintaining``/``Kill`` (``protectedOpsStates``) is
      checked by the core against the live GameServer when it writes; the annotation shows what
      kidecar would *ask for*, whether or not that guard would have held it back.
    * Writes a plugin attaches to its result directly (``Result.writes``) are added by the core
      after ``kidecar_persist`` and are not seen here; the built-in backends do not use them for
      opsState.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Mapping
from typing import Any

import attrs

from kidecar_core import Event, ObjectRef, PodIdentity, Result, RuntimeView, Write, hookimpl

ANNOTATION = "kidecar.io/dry-run-opsstate"
REASON_ANNOTATION = "kidecar.io/dry-run-opsstate-reason"
SWITCH = "KIDECAR_DRY_RUN_OPSSTATE"
_OFF = frozenset({"0", "false", "no", "off"})


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the dry run is on: yes, unless ``KIDECAR_DRY_RUN_OPSSTATE`` says off."""
    value = (os.environ if env is None else env).get(SWITCH, "1")
    return value.strip().lower() not in _OFF


@hookimpl(wrapper=True)
def kidecar_persist(
    result: Result, runtime: RuntimeView
) -> Generator[None, list[list[Write]], list[list[Write]]]:
    """Take ``spec.opsState`` out of GameServer writes; record it on the pod instead."""
    contributions = yield
    if not enabled():
        return contributions
    return [dry_run(writes, result, runtime.identity) for writes in contributions]


def dry_run(writes: list[Write], result: Result, who: PodIdentity) -> list[Write]:
    """``writes`` with every GameServer opsState replaced by the dry-run annotations."""
    out: list[Write] = []
    for write in writes:
        split = split_ops_state(write.patch) if is_gameserver(write.target) else None
        if split is None:
            out.append(write)
            continue
        value, rest = split
        if rest:
            out.append(attrs.evolve(write, patch=rest, event=None))
        out.append(annotation_write(write, value, result, who))
    return out


def is_gameserver(ref: ObjectRef) -> bool:
    return (ref.group, ref.resource) == ("game.kruise.io", "gameservers")


def split_ops_state(patch: Mapping[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """``(opsState, patch without it)``, or ``None`` when the patch does not set opsState."""
    spec = patch.get("spec")
    if not isinstance(spec, Mapping) or "opsState" not in spec:
        return None
    rest = {k: v for k, v in patch.items() if k != "spec"}
    rest_spec = {k: v for k, v in spec.items() if k != "opsState"}
    if rest_spec:
        rest["spec"] = rest_spec
    return spec["opsState"], rest


def annotation_write(write: Write, value: Any, result: Result, who: PodIdentity) -> Write:
    """The pod annotations that say what ``write`` would have done to the GameServer."""
    shown = value if isinstance(value, str) else json.dumps(value)
    reason = (
        f"{result.plugin} result {result.state!r} would set {write.target} spec.opsState "
        f"to {shown!r} ({write.source or 'no config path'})"
    )
    return Write(
        ObjectRef.pod(who),
        {"metadata": {"annotations": {ANNOTATION: shown, REASON_ANNOTATION: reason}}},
        source=write.source,
        event=Event("OpsStateDryRun", f"dry run: {reason}"),
    )

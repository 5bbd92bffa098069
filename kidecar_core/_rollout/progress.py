"""A rollout's progress over the workload's pods, and its rendering by ``kidecar rollout status``.

Each pod's row comes from its ``rollout.kidecar.io/status`` annotation (:class:`PodProgress`) read
against the current document: a report for another revision (or none) means the pod's sidecar has
not acted on this revision yet (``pending``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from kidecar_core._store.rollout import (
    PROGRESS_ANNOTATION,
    PodProgress,
    Rollout,
    RolloutPhase,
    Workload,
)

UPDATED = "updated"
UPDATING = "updating"
FAILED = "failed"
WAITING = "waiting for idle"
PENDING = "pending"
HELD = "held (partition)"
CATEGORIES = (UPDATED, UPDATING, FAILED, WAITING, PENDING, HELD)
BAR_MARKS = {UPDATED: "=", UPDATING: ">", FAILED: "x", WAITING: "w", PENDING: ".", HELD: "-"}
BAR_WIDTH = 40


@attrs.frozen
class PodRow:
    """One pod in ``status``."""

    name: str
    version: str
    phase: str
    category: str
    message: str
    at: str


def _category(rollout: Rollout, ordinal: int | None, progress: PodProgress | None) -> str:
    if rollout.partition and ordinal is not None and ordinal < rollout.partition:
        return HELD
    target = rollout.desired_for(ordinal)
    if progress is None or progress.revision != rollout.revision:
        return PENDING
    if progress.done(rollout, target):
        return UPDATED
    if progress.phase == RolloutPhase.FAILED and progress.attempt == rollout.attempt:
        return FAILED
    if progress.phase == RolloutPhase.UPDATING:
        return UPDATING
    if progress.phase == RolloutPhase.WAITING_FOR_IDLE:
        return WAITING
    return PENDING


def rows(rollout: Rollout, workload: Workload, pods: Sequence[Mapping[str, Any]]) -> list[PodRow]:
    """One row per pod, in the given order."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name", ""))
        progress = PodProgress.from_json((meta.get("annotations") or {}).get(PROGRESS_ANNOTATION))
        category = _category(rollout, workload.ordinal(name), progress)
        current = progress and progress.revision == rollout.revision
        out.append(
            PodRow(
                name=name,
                version=(progress.version if progress else None) or "-",
                phase=progress.phase if progress and current else "-",
                category=category,
                message=progress.message if progress and current else "no report yet",
                at=progress.at if progress else "",
            )
        )
    return out


def complete(rollout: Rollout, workload: Workload, pods: Sequence[Mapping[str, Any]]) -> bool:
    """Every pod the rollout targets reports its target for this revision."""
    return all(r.category in (UPDATED, HELD) for r in rows(rollout, workload, pods))


def counts(table: Sequence[PodRow]) -> Counter[str]:
    return Counter(r.category for r in table)


def bar(table: Sequence[PodRow]) -> str:
    """``[=====>>>x..]``: updated, updating, failed, waiting for idle, pending, held."""
    total = len(table)
    if not total:
        return "[" + " " * BAR_WIDTH + "]"
    found = counts(table)
    marks = ""
    for category in CATEGORIES:
        marks += BAR_MARKS[category] * round(found[category] * BAR_WIDTH / total)
    return "[" + marks[:BAR_WIDTH].ljust(BAR_WIDTH, BAR_MARKS[PENDING]) + "]"


def age(at: str, now: dt.datetime | None = None) -> str:
    """``12s``, ``5m``, ``3h``, ``2d`` since ``at`` (the API's time format); ``-`` if unknown."""
    try:
        then = dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "-"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render(
    rollout: Rollout,
    workload: Workload,
    pods: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
    paused: str | None = None,
) -> str:
    """The text of ``kidecar rollout status``; ``paused``: why it is paused (``None``: it is
    not; see :func:`~kidecar_core._store.rollout_leases.effective_pause`)."""
    table = rows(rollout, workload, pods)
    found = counts(table)
    before = rollout.previous.version if rollout.previous else "(files of the image)"
    lines = [
        f"{workload} in namespace {workload.namespace}: revision {rollout.revision}, "
        f"{before} -> {rollout.target.version}",
        f"  maxUnavailable {rollout.max_unavailable} ({rollout.slots} at a time), partition "
        f"{rollout.partition}, when {rollout.when}, started {rollout.started_at or '-'}",
    ]
    targeted = len(table) - found[HELD]
    summary = [f"{found[UPDATED]}/{targeted} at {rollout.target.version}"]
    summary += [f"{found[c]} {c}" for c in CATEGORIES[1:] if found[c]]
    lines.append(f"{bar(table)} {', '.join(summary)}")
    lines.append(_state_line(workload, table, rollout.target.version, paused))
    lines.append("")
    lines.extend(_table(table, now))
    return "\n".join(lines) + "\n"


def _state_line(
    workload: Workload, table: Sequence[PodRow], version: str, paused: str | None
) -> str:
    if paused is not None:
        return (
            f"PAUSED: {paused}\n"
            f"  `kidecar rollout resume {workload}` goes on (failed pods try again), "
            f"`kidecar rollout undo {workload}` goes back"
        )
    if not table:
        return "no pods"
    if all(r.category in (UPDATED, HELD) for r in table):
        return f"complete: every targeted pod is at {version}"
    return "in progress"


def _table(table: Sequence[PodRow], now: dt.datetime | None) -> list[str]:
    header = ("NAME", "VERSION", "PHASE", "SINCE", "MESSAGE")
    cells = [(r.name, r.version, r.phase, age(r.at, now), r.message) for r in table]
    widths = [max([len(header[i]), *(len(c[i]) for c in cells)]) for i in range(4)]
    out = []
    for row in [header, *cells]:
        fixed = "  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths, strict=True))
        out.append(f"{fixed}  {row[4]}".rstrip())
    return out

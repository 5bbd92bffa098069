"""Policy writes are a set, not a history (Kruise PodProbeMarker's rule).

A state's ``markerPolicies`` entry sets labels and annotations.  When the state changes, the
labels and annotations that the previous state's policy set and the new state's policy does not
are **removed**: a ``drain-reason`` set while draining goes away once the game is allocated
again.  The set is kept per *origin* (the ``storageConfig`` a result came through:
``Result.source``) and per object; writes flagged :attr:`~kidecar_core.Write.policy_set` form it.

* A key another origin's current set still holds is not removed (that origin's value is
  written again instead).
* The removal is written once: a key a human adds back later is left alone.
* Only what this sidecar set since it started is known: a key set before a restart by a state
  that no longer holds is not removed.
"""

from __future__ import annotations

from collections.abc import Iterable

from kidecar_core._persist.leaves import Path, dotted, flatten, unflatten
from kidecar_core._persist.result import Result
from kidecar_core._persist.write import Write
from kidecar_core._store.objects import JSON, ObjectRef

Sets = dict[ObjectRef, dict[Path, JSON]]


class PolicySets:
    """Each origin's current policy set, and the removals a new result implies."""

    def __init__(self) -> None:
        self._sets: dict[str, Sets] = {}

    def resolve(self, result: Result, writes: Iterable[Write]) -> list[Write]:
        """``writes`` plus one write per object removing what the origin's policy no longer
        sets (or re-setting it from another origin that still does)."""
        origin = result.source or result.plugin
        out = list(writes)
        new: Sets = {}
        for w in out:
            if w.policy_set:
                new.setdefault(w.target, {}).update(flatten(w.patch))
        old = self._sets.get(origin, {})
        self._sets[origin] = new
        for ref, leaves in old.items():
            gone = [p for p in leaves if p not in new.get(ref, {})]
            if gone:
                out.extend(self._removals(origin, ref, gone))
        return out

    def _removals(self, origin: str, ref: ObjectRef, gone: list[Path]) -> list[Write]:
        removed: dict[Path, JSON] = {}
        kept: dict[Path, JSON] = {}
        for path in gone:
            holder = self._holder(origin, ref, path)
            if holder is None:
                removed[path] = None
            else:
                kept[path] = holder
        out = []
        if removed:
            names = ", ".join(dotted(p) for p in removed)
            out.append(
                Write(
                    ref,
                    unflatten(removed.items()),
                    f"{origin} (no longer set by the state's policy: {names})",
                    once=True,
                )
            )
        if kept:
            out.append(Write(ref, unflatten(kept.items()), f"{origin} (held by another source)"))
        return out

    def _holder(self, origin: str, ref: ObjectRef, path: Path) -> JSON:
        """The value another origin's current set has at ``path`` (``None``: none has it)."""
        for other, sets in self._sets.items():
            if other != origin and path in sets.get(ref, {}):
                return sets[ref][path]
        return None

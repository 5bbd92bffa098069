"""The write plan of one result: every :class:`~kidecar_core.Write` that ``kidecar_persist``
implementations contributed for it, checked, in plan order.

A contribution that is not a write (or a write whose ``patch`` is not a mapping, whose ``target``
is not an :class:`~kidecar_core.ObjectRef`, whose guards are not
:class:`~kidecar_core.FieldNotIn`) comes from a plugin or an override file; it is logged with its
source and dropped, and the rest of the plan goes on to the applier.  Nothing a hook returns can
stop the results pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

import attrs

from kidecar_core._persist.result import Result
from kidecar_core._persist.write import FieldNotIn, Write
from kidecar_core._store.objects import ObjectRef

log = logging.getLogger("kidecar.persist")


@attrs.frozen
class Rejected:
    """A contribution left out of the plan, and why."""

    value: object
    reason: str
    source: str


@attrs.define
class WritePlan:
    """The checked writes for ``result``, in order (later writes win where they overlap)."""

    result: Result
    writes: list[Write] = attrs.field(factory=list)
    rejected: list[Rejected] = attrs.field(factory=list)

    @classmethod
    def collect(cls, result: Result, contributions: Iterable[object]) -> WritePlan:
        """The plan from the answers of ``kidecar_persist`` (each ``None`` or a list of writes).

        Bad contributions are logged (an ERROR line each) and left out.
        """
        plan = cls(result)
        for contribution in contributions:
            if contribution is None:
                continue
            if isinstance(contribution, Write) or not _is_sequence(contribution):
                plan._reject(contribution, "a kidecar_persist answer must be a list of Writes")
                continue
            for item in cast("list[object]", contribution):
                plan.add(item)
        return plan

    def add(self, item: object) -> None:
        """Add one write after checking it; a bad one is logged and left out."""
        problem = _problem(item)
        if problem is None:
            assert isinstance(item, Write)
            self.writes.append(item)
        else:
            self._reject(item, problem)

    def __iter__(self) -> Iterator[Write]:
        return iter(self.writes)

    def __len__(self) -> int:
        return len(self.writes)

    def _reject(self, value: object, reason: str) -> None:
        source = value.source if isinstance(value, Write) else ""
        source = source if isinstance(source, str) and source else "no source given"
        self.rejected.append(Rejected(value, reason, source))
        log.error(
            "dropped a write for a result of %s (source: %s): %s; got %s. It comes from a "
            "kidecar_persist implementation (a plugin or an override file); the rest of the plan "
            "is still written",
            self.result.plugin,
            source,
            reason,
            _short(value),
        )


def _is_sequence(value: object) -> bool:
    return isinstance(value, list | tuple)


def _problem(item: object) -> str | None:
    """Why ``item`` cannot be in a plan (``None``: it can)."""
    if not isinstance(item, Write):
        return f"expected a Write, got {type(item).__name__}"
    if not isinstance(item.target, ObjectRef):
        return f"Write.target must be an ObjectRef, got {type(item.target).__name__}"
    if not isinstance(item.patch, Mapping):
        return f"Write.patch must be a mapping (a merge patch), got {type(item.patch).__name__}"
    bad_keys = [k for k in _keys(item.patch) if not isinstance(k, str)]
    if bad_keys:
        return f"Write.patch keys must be strings, got {bad_keys[0]!r}"
    guards = item.guards
    if not isinstance(guards, tuple | list) or not all(isinstance(g, FieldNotIn) for g in guards):
        return "Write.guards must be FieldNotIn guards"
    return None


def _keys(patch: Mapping[Any, Any]) -> Iterator[object]:
    for key, value in patch.items():
        yield key
        if isinstance(value, Mapping):
            yield from _keys(value)


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

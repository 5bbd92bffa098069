"""What kidecar knows about the fields it writes: which ones a human may take over (guards), and
which values OpenKruiseGame knows.

**Guards protect fields, not config keys.**  A GameServer's ``spec.opsState`` set to
``Maintaining`` or ``Kill`` by someone else (a human, a controller) is never overwritten,
whatever asks kidecar to write the field: a policy's ``gameServerOpsState``, ``jsonPath`` or
``jsonPathConfigs`` pointing at ``/spec/opsState``, an override file's write, a plugin.  The
applier adds the field's guard (:data:`DEFAULT_FIELD_GUARDS`) to every write of that field that
does not bring its own guard for it; a write that brings one (the ``InKube`` storage type's
``protectedOpsStates``, even ``[]``) decides for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core._persist.leaves import MISSING, Path, lookup, pointer_path
from kidecar_core._persist.write import FieldNotIn
from kidecar_core._store.objects import JSON, ObjectRef

OPS_STATE: Path = ("spec", "opsState")
"""Where a GameServer keeps its opsState."""

KNOWN_OPS_STATES = ("None", "WaitToBeDeleted", "Allocated", "Maintaining", "Kill")
"""The opsStates OpenKruiseGame acts on; it stores any other string as given."""

PROTECTED_OPS_STATES = ("Maintaining", "Kill")
"""opsStates that kidecar leaves alone when someone else set them (the default guard)."""


@attrs.frozen
class FieldGuard:
    """A guard that holds for one field of every object of one resource."""

    group: str
    resource: str
    guard: FieldNotIn

    def covers(self, ref: ObjectRef, path: Path) -> bool:
        return (ref.group, ref.resource) == (self.group, self.resource) and pointer_path(
            self.guard.pointer
        ) == path


DEFAULT_FIELD_GUARDS: tuple[FieldGuard, ...] = (
    FieldGuard("game.kruise.io", "gameservers", FieldNotIn("/spec/opsState", PROTECTED_OPS_STATES)),
)
"""A human's ``Maintaining`` / ``Kill`` on any GameServer's ``spec.opsState`` holds."""


def guards_for(
    ref: ObjectRef,
    path: Path,
    given: tuple[FieldNotIn, ...],
    field_guards: tuple[FieldGuard, ...] = DEFAULT_FIELD_GUARDS,
) -> tuple[FieldNotIn, ...]:
    """The guards of a leaf at ``path`` of ``ref``: the write's own, plus each field guard of
    that field unless the write brings a guard for the same field itself."""
    own = {pointer_path(g.pointer) for g in given}
    extra = tuple(fg.guard for fg in field_guards if fg.covers(ref, path) and path not in own)
    return given + extra


def guard_blocks(guard: FieldNotIn, live: Any, ours: Mapping[Path, JSON]) -> bool:
    """Whether ``guard`` holds a write back: the live value at its pointer is one of its values,
    and (with ``unless_ours``) not a value kidecar wrote there itself (``ours``)."""
    path = pointer_path(guard.pointer)
    current = lookup(live, path)
    if current is MISSING or current not in guard.values:
        return False
    return not (guard.unless_ours and ours.get(path, MISSING) == current)


def is_gameserver(ref: ObjectRef) -> bool:
    return ref.group == "game.kruise.io" and ref.resource == "gameservers"


def custom_ops_state(ref: ObjectRef, path: Path, value: JSON) -> bool:
    """Whether this leaf sets a GameServer's opsState to a value OKG does not know."""
    return (
        is_gameserver(ref) and path == OPS_STATE and value is not None
        and value not in KNOWN_OPS_STATES
    )  # fmt: skip

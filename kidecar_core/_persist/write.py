"""What a plugin asks to be written: :class:`Write`, guarded by :class:`FieldNotIn`.

A :class:`~kidecar_core.Result` is turned into writes by the storage backends
(``kidecar_persist``); the :mod:`~kidecar_core._persist.applier` merges them into each object's
desired state.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from kidecar_core._store.objects import JSON, Event, ObjectRef


@attrs.frozen
class FieldNotIn:
    """Guard of a :class:`Write`: skip it while the live value at ``pointer`` is one of ``values``.

    With ``unless_ours`` the guard does not hold back a value kidecar wrote itself (so a state
    kidecar set can be changed by kidecar again, while a human's ``Maintaining`` is left alone).
    """

    pointer: str
    values: tuple[JSON, ...]
    unless_ours: bool = True


@attrs.frozen
class Write:
    """One contribution to a write plan: merge ``patch`` into ``target``.

    ``source`` is the config path the write comes from; errors about the write name it.
    ``create`` lets the core create the object when it does not exist (only for objects kidecar
    owns, such as its result ConfigMap); otherwise a missing object is waited for.
    """

    target: ObjectRef
    patch: Mapping[str, JSON]
    source: str = ""
    create: bool = False
    guards: tuple[FieldNotIn, ...] = ()
    event: Event | None = None
    """Recorded about the pod when this write actually changes the object (not on no-ops)."""
    policy_set: bool = False
    """The values are part of what one state sets (a ``markerPolicies`` entry's labels and
    annotations): when a later result of the same origin (its ``Result.source``) no longer sets
    a key, kidecar removes it, once (Kruise PodProbeMarker's rule: the policy's labels are a set,
    not a history).  See :mod:`kidecar_core._persist.policysets`."""
    once: bool = False
    """Write the values once (or find them already there), then forget them: they are not
    re-asserted at resync, so a later change by someone else stays.  For keys that several
    sidecars write in turn (hot_update's per-workload record), where re-asserting would put an
    older value back over a newer one."""

"""Fields that someone else keeps changing back: re-assert with backoff, and say so once.

A *revert* is a change, seen by the watch, that makes a field kidecar wrote (and still wants)
differ from kidecar's value, where no guard gives the field to a human.  kidecar re-asserts the
field at once.  When the same field is reverted again and again, two rules apply:

* **Backoff**: the first revert of a value is repaired at once; each further revert of the same
  value waits longer before the repair (:attr:`ContestPolicy.backoff`, doubling up to
  :attr:`ContestPolicy.backoff_cap`), so that kidecar never runs a hot loop against another
  controller.  A new desired value starts afresh.
* **Report**: after :attr:`ContestPolicy.threshold` reverts within :attr:`ContestPolicy.window`
  seconds the field is *contested*: the caller logs it once, with the other writer's field
  manager (from ``managedFields``), records an Event, shows it in ``/readyz`` and in the
  ``kidecar_persist_contested_fields`` metric.  It stops being contested after
  :attr:`ContestPolicy.quiet` seconds without a revert.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs

from kidecar_core._base.backoff import Backoff
from kidecar_core._persist.leaves import Path
from kidecar_core._store.objects import FIELD_MANAGER, JSON


@attrs.frozen
class ContestPolicy:
    """When a field counts as contested, and how re-asserting it backs off (seconds).

    Every value must be > 0 (``ValueError`` naming the field otherwise): a zero ``backoff``
    would re-assert a contested field in a hot loop.
    """

    threshold: int = attrs.field(default=3, validator=attrs.validators.gt(0))
    window: float = attrs.field(default=120.0, validator=attrs.validators.gt(0.0))
    backoff: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    backoff_cap: float = attrs.field(default=30.0, validator=attrs.validators.gt(0.0))
    quiet: float = attrs.field(default=600.0, validator=attrs.validators.gt(0.0))

    def repair_wait(self, streak: int) -> float:
        """Seconds between the ``streak``-th revert of a value (``streak`` >= 2) and its repair:
        ``backoff``, doubling with each further revert, up to ``backoff_cap`` (no jitter: the
        waits are deterministic, so that the tests and the other writer can predict them)."""
        return Backoff(self.backoff, self.backoff_cap, jitter=False, attempt=streak - 2).peek()


@attrs.define
class Contested:
    """A contested field: who else writes it, since when, how many reverts so far."""

    manager: str
    since: float
    reverts: int
    last: float


@attrs.define
class _Streak:
    value: JSON
    count: int
    last: float


class Contest:
    """The reverts of one object's fields (see the module docstring).  Time is the caller's."""

    def __init__(self, policy: ContestPolicy) -> None:
        self.policy = policy
        self._times: dict[Path, deque[float]] = {}
        self._streaks: dict[Path, _Streak] = {}
        self.contested: dict[Path, Contested] = {}

    def record(self, path: Path, value: JSON, manager: str, now: float) -> Contested | None:
        """Count a revert of ``path`` away from ``value``; the field's :class:`Contested` when
        this revert makes it contested (``None`` otherwise, also when it already was)."""
        p = self.policy
        times = self._times.setdefault(path, deque())
        times.append(now)
        while times and now - times[0] > p.window:
            times.popleft()
        streak = self._streaks.get(path)
        if streak is not None and streak.value == value and now - streak.last <= p.window:
            streak.count, streak.last = streak.count + 1, now
        else:
            self._streaks[path] = _Streak(value, 1, now)
        known = self.contested.get(path)
        if known is not None:
            known.reverts, known.last, known.manager = known.reverts + 1, now, manager
            return None
        if len(times) >= p.threshold:
            self.contested[path] = Contested(manager, now, len(times), now)
            return self.contested[path]
        return None

    def restart(self, path: Path) -> None:
        """A new desired value for ``path``: its next revert is repaired at once again (the
        revert count of the contest report goes on)."""
        self._streaks.pop(path, None)

    def delay(self, path: Path, value: JSON, now: float) -> float:
        """Seconds to wait before re-asserting ``value`` at ``path`` (0: now)."""
        streak = self._streaks.get(path)
        if streak is None or streak.value != value or streak.count < 2:
            return 0.0
        return max(0.0, streak.last + self.policy.repair_wait(streak.count) - now)

    def calm(self, now: float) -> list[Path]:
        """Forget fields that were not reverted for ``quiet`` seconds; those that stop being
        contested now."""
        done = [p for p, c in self.contested.items() if now - c.last >= self.policy.quiet]
        for path in done:
            del self.contested[path]
        window = self.policy.window
        for path in [p for p, t in self._times.items() if not t or now - t[-1] > window]:
            del self._times[path]  # memory stays bounded by the fields reverted lately
        for path in [p for p, s in self._streaks.items() if now - s.last > window]:
            del self._streaks[path]
        return done


def manager_of(obj: Mapping[str, Any] | None, path: Path, *, exclude: str = FIELD_MANAGER) -> str:
    """The field manager that last wrote ``path`` of ``obj``, other than ``exclude``.

    Read from ``metadata.managedFields`` (``fieldsV1``: ``{"f:spec": {"f:opsState": {}}}``); the
    most recent entry naming the field wins.  ``"unknown"`` when no entry names it (the other
    writer removed the field, or the store keeps no managedFields, as the local state file).
    """
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    best: tuple[str, str] | None = None
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("manager") == exclude:
            continue
        if _names(entry.get("fieldsV1"), path):
            when = str(entry.get("time") or "")
            if best is None or when >= best[0]:
                best = (when, str(entry.get("manager") or "unknown"))
    return best[1] if best is not None else "unknown"


def _names(fields: Any, path: Path) -> bool:
    node = fields
    for key in path:
        if not isinstance(node, Mapping):
            return False
        node = node.get(f"f:{key}")
    return node is not None

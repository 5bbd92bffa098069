"""Did a GameServer's `spec.opsState` follow its game's state? Measured from the audit log.

Input: the times a test changed each game's state (and the opsState that state should give),
and the audit log's writes to the GameServers (each with the object it produced). From them,
per GameServer, the *wrong intervals*: spans of time in which the live opsState differed from
the expected one. Each starts either at a change of the game's state (kidecar has not written
the new value yet: its landing time) or at a write by someone else that put another value
back (a *revert*, e.g. OKG's controller writing a stale spec), and ends at the write that
made it right again; one still open at the end of the observation lasts until then.

The tier's requirement (issue 11): no wrong interval longer than 2 s.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.support.audit import AuditEvent

Change = tuple[float, str]
"""(time.time() of a change of the game's state, the opsState it should give)."""


@dataclass(frozen=True)
class WrongInterval:
    """A span in which GameServer `name` showed `shown` instead of `expected`; `cause` is
    "change" or "revert by <user>"; `end` is None when it was still wrong at the end."""

    name: str
    start: float
    end: float | None
    cause: str
    expected: str
    shown: str

    def length(self, observed_until: float) -> float:
        """Seconds it lasted (until `observed_until` when still open)."""
        return (self.end if self.end is not None else observed_until) - self.start


@dataclass
class Convergence:
    """The wrong intervals of some GameServers, and the writes that caused reverts."""

    observed_until: float
    intervals: list[WrongInterval] = field(default_factory=list)
    reverts: Counter[str] = field(default_factory=Counter)
    changes: int = 0

    def worst(self, cause_prefix: str = "") -> float:
        """The longest wrong interval (of the given cause), in seconds (0 when none)."""
        lengths = [
            i.length(self.observed_until)
            for i in self.intervals
            if i.cause.startswith(cause_prefix)
        ]
        return max(lengths, default=0.0)

    def longer_than(self, seconds: float) -> list[WrongInterval]:
        """The wrong intervals that lasted more than `seconds`."""
        return [i for i in self.intervals if i.length(self.observed_until) > seconds]

    def summary(self, limit: float = 2.0) -> str:
        """A few lines for a report or an assertion message; the wrong intervals longer than
        `limit` seconds are counted and the first ten listed."""
        open_ = [i for i in self.intervals if i.end is None]
        too_long = sorted(self.longer_than(limit), key=lambda i: i.start)
        lines = [
            f"{self.changes} changes, {sum(self.reverts.values())} reverts "
            f"({dict(self.reverts)}), {len(too_long)} wrong for over {limit:g} s, "
            f"{len(open_)} still wrong at the end",
            f"longest wrong interval {self.worst():.3f} s; after a change "
            f"{self.worst('change'):.3f} s; after a revert {self.worst('revert'):.3f} s",
        ]
        for i in too_long[:10]:
            lines.append(
                f"  {i.name}: {i.shown} instead of {i.expected} for "
                f"{i.length(self.observed_until):.3f} s ({i.cause})"
            )
        return "\n".join(lines)


def _timestamp(t: datetime.datetime) -> float:
    return t.timestamp()


def analyse(
    changes: Mapping[str, Sequence[Change]],
    events: Iterable[AuditEvent],
    *,
    namespace: str,
    owner: str,
    initial: str,
    observed_until: float,
) -> Convergence:
    """Wrong intervals of each GameServer in `changes` (by name, in `namespace`), which all
    showed `initial` (and were expected to) when the observation began. `owner` is the user
    whose writes are the expected ones (the sidecars'); a write by anyone else that makes the
    opsState wrong is a revert."""
    writes: dict[str, list[AuditEvent]] = {name: [] for name in changes}
    for e in events:
        if (
            e.resource == "gameservers"
            and e.namespace == namespace
            and e.name in writes
            and e.succeeded
            and e.obj is not None
        ):
            writes[e.name].append(e)
    result = Convergence(observed_until, changes=sum(len(c) for c in changes.values()))
    for name, own_changes in changes.items():
        _follow(name, own_changes, writes[name], owner, initial, result)
    return result


def _follow(
    name: str,
    changes: Sequence[Change],
    writes: Sequence[AuditEvent],
    owner: str,
    initial: str,
    result: Convergence,
) -> None:
    """Walk one GameServer's changes and writes in time order, recording wrong intervals."""
    steps: list[tuple[float, int, str, str]] = [(t, 0, "change", v) for t, v in changes]
    for w in writes:
        shown = str(((w.obj or {}).get("spec") or {}).get("opsState"))
        steps.append((_timestamp(w.time), 1, w.user, shown))
    expected = shown = initial
    wrong: WrongInterval | None = None
    for t, _, who, value in sorted(steps):
        if who == "change":
            expected = value
            cause = "change"
        else:
            cause = f"revert by {who}" if who != owner else f"write by {who}"
            if who != owner and value != shown and value != expected:
                result.reverts[who] += 1
            shown = value
        if shown != expected and wrong is None:
            wrong = WrongInterval(name, t, None, cause, expected, shown)
        elif shown == expected and wrong is not None:
            result.intervals.append(
                WrongInterval(name, wrong.start, t, wrong.cause, wrong.expected, wrong.shown)
            )
            wrong = None
    if wrong is not None:
        result.intervals.append(wrong)

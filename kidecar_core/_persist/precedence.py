"""Several sources asking for one GameServer's ``spec.opsState``: who wins.

Each *origin* (the config path of a result's ``storageConfig``: one http_probe endpoint, one
tcp_probe port, an override) asks for at most one opsState at a time, through any write that sets
``/spec/opsState`` of a GameServer (``gameServerOpsState``, ``jsonPath``, ``jsonPathConfigs``, an
override's write).  Its latest result replaces its ask; a result whose writes do not set the field
withdraws it.  The GameServer's desired opsState is the ask that ranks first in
``opsStatePrecedence`` (top level of the config):

    Maintaining > Allocated > * > Kill > WaitToBeDeleted > None

``*`` stands for every value not listed (custom ones such as ``Draining``); without ``*`` they
rank last.  So by default no endpoint can make a server deletable (``WaitToBeDeleted``, ``Kill``)
while another reports it ``Allocated``, and one that reports it unhealthy (``Maintaining``) holds
it out of allocation whatever the others say.  Ties (the same value) keep the earliest ask.  A
disagreement between origins is logged once per combination of asks.

The winning write is passed on whole (its guards and Event included); the applier then writes it
only if the live object differs.  Writes that do not touch ``spec.opsState`` pass unchanged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

import attrs

from kidecar_core._persist.result import Result
from kidecar_core._persist.write import Write
from kidecar_core._store.objects import JSON, ObjectRef

log = logging.getLogger("kidecar.persist")

ANY_OTHER = "*"
DEFAULT_PRECEDENCE: tuple[str, ...] = (
    "Maintaining",
    "Allocated",
    ANY_OTHER,
    "Kill",
    "WaitToBeDeleted",
    "None",
)
"""The default ``opsStatePrecedence``: first wins."""

_LOGGED_LIMIT = 256


@attrs.frozen
class Ask:
    """One origin's requested opsState for one GameServer, and the write that carries it."""

    origin: str
    value: JSON
    write: Write


def is_gameserver(ref: ObjectRef) -> bool:
    return ref.group == "game.kruise.io" and ref.resource == "gameservers"


def split_ops_state(write: Write) -> tuple[Write | None, JSON, Write | None]:
    """``(rest, value, ops_write)``: the write without ``spec.opsState``, the value it sets and a
    write of that field alone; ``(write, None, None)`` when it does not set the field."""
    spec = write.patch.get("spec")
    if not is_gameserver(write.target) or not isinstance(spec, Mapping) or "opsState" not in spec:
        return write, None, None
    value = spec["opsState"]
    ops_write = attrs.evolve(write, patch={"spec": {"opsState": value}})
    rest_spec = {k: v for k, v in spec.items() if k != "opsState"}
    rest_patch = {k: v for k, v in write.patch.items() if k != "spec"}
    if rest_spec:
        rest_patch["spec"] = rest_spec
    rest = attrs.evolve(write, patch=rest_patch, guards=(), event=None) if rest_patch else None
    return rest, value, ops_write


class OpsStatePrecedence:
    """Resolves the opsState asks of every origin, per GameServer (see the module docstring)."""

    def __init__(self, precedence: Sequence[str] = DEFAULT_PRECEDENCE) -> None:
        self.precedence = tuple(precedence)
        self._asks: dict[ObjectRef, dict[str, Ask]] = {}
        self._chosen: dict[ObjectRef, Ask] = {}
        self._logged: OrderedDict[frozenset[tuple[str, str]], None] = OrderedDict()

    def rank(self, value: JSON) -> int:
        """Position of ``value`` in the precedence (lower wins)."""
        text = str(value)
        if text in self.precedence:
            return self.precedence.index(text)
        if ANY_OTHER in self.precedence:
            return self.precedence.index(ANY_OTHER)
        return len(self.precedence)

    def resolve(self, result: Result, writes: Iterable[Write]) -> list[Write]:
        """The writes to submit for ``result``: its writes, with ``spec.opsState`` arbitrated."""
        origin = result.source or result.plugin
        out: list[Write] = []
        asked: dict[ObjectRef, Ask] = {}
        for write in writes:
            rest, value, ops_write = split_ops_state(write)
            if rest is not None:
                out.append(rest)
            if ops_write is not None:
                asked[write.target] = Ask(origin, value, ops_write)
        targets = set(asked) | {ref for ref, asks in self._asks.items() if origin in asks}
        for ref in sorted(targets, key=str):
            winner = self._update(ref, origin, asked.get(ref))
            if winner is not None and winner != self._chosen.get(ref):
                self._chosen[ref] = winner
                out.append(winner.write)
        return out

    def _update(self, ref: ObjectRef, origin: str, ask: Ask | None) -> Ask | None:
        asks = self._asks.setdefault(ref, {})
        if ask is None:
            asks.pop(origin, None)
        else:
            previous = asks.get(origin)
            if previous is None or previous.value != ask.value:
                asks.pop(origin, None)  # a new ask goes behind older ones of the same rank
            asks[origin] = ask
        if not asks:
            return None
        winner = min(asks.values(), key=lambda a: self.rank(a.value))
        self._log_disagreement(ref, asks, winner)
        return winner

    def _log_disagreement(self, ref: ObjectRef, asks: Mapping[str, Ask], winner: Ask) -> None:
        if len({str(a.value) for a in asks.values()}) < 2:
            return
        key = frozenset((a.origin, str(a.value)) for a in asks.values())
        if key in self._logged:
            return
        self._logged[key] = None
        if len(self._logged) > _LOGGED_LIMIT:
            self._logged.popitem(last=False)
        wanted = ", ".join(f"{a.origin} asks {a.value}" for a in asks.values())
        log.warning(
            "sources disagree on the opsState of %s: %s; %s wins (opsStatePrecedence: %s)",
            ref,
            wanted,
            winner.value,
            " > ".join(self.precedence),
        )

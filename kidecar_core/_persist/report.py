"""How the applier tells people what happens to its writes: logs (each problem once), Events,
metrics and the ``/readyz`` details."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kidecar_core._base.backoff import Backoff
from kidecar_core._base.clock import Clock
from kidecar_core._base.metrics import Metrics
from kidecar_core._persist.fields import is_gameserver
from kidecar_core._persist.leaves import Leaf, Path, dotted, lookup
from kidecar_core._persist.status import ObjectStatus
from kidecar_core._store.kubewatch import ExpiredError
from kidecar_core._store.objects import Event, ObjectStore
from kidecar_core.errors import (
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PersistError,
)

if TYPE_CHECKING:
    from kidecar_core._persist.applier import ApplierOptions
    from kidecar_core._persist.objectstate import ObjectState

log = logging.getLogger("kidecar.persist")

_ONCE_LIMIT = 1024


class Reporter:
    """The reporting half of the :class:`~kidecar_core._persist.applier.Applier`."""

    options: ApplierOptions
    store: ObjectStore
    clock: Clock

    def __init__(self, metrics: Metrics, on_event: Callable[[Event], None] | None) -> None:
        self.metrics = metrics
        self.on_event = on_event
        self._once: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def once(self, key: tuple[str, ...]) -> bool:
        """True the first time ``key`` is seen (bounded memory): for "log once" messages."""
        if key in self._once:
            return False
        self._once[key] = None
        if len(self._once) > _ONCE_LIMIT:
            self._once.popitem(last=False)
        return True

    def record(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- status of one object ---------------------------------------------------------------

    def set_status(self, state: ObjectState, status: ObjectStatus, detail: str) -> None:
        state.status = status
        state.detail = detail

    def count_failure(self, state: ObjectState, reason: str) -> None:
        self.metrics.persist_failures.labels(state.ref.resource, reason).inc()

    def recovered(self, state: ObjectState) -> None:
        """A write attempt succeeded (or had nothing to do)."""
        if state.status == ObjectStatus.FORBIDDEN:
            self._once = OrderedDict((k, v) for k, v in self._once.items() if k[0] != "rbac")
            log.info("writing %s works again", state.ref)
        elif state.status in (ObjectStatus.DEGRADED, ObjectStatus.WAITING, ObjectStatus.MISSING):
            log.info("%s written; recovered from: %s", state.ref, state.detail)
        self.set_status(state, ObjectStatus.OK, "")

    def forbidden(self, state: ObjectState, error: ForbiddenError) -> None:
        if self.once(("rbac", error.rule)):
            log.error("RBAC forbids writing %s: missing rule %s. %s", state.ref, error.rule, error)
        self.set_status(state, ObjectStatus.FORBIDDEN, f"missing RBAC rule {error.rule}")

    def missing(self, state: ObjectState, error: NotFoundError | None, backoff: Backoff) -> float:
        """The object does not exist: *waiting* for it, *missing* after ``missing_timeout``
        (or at once when its type is not served).  Returns how long to wait before looking
        again (a watch says when it appears)."""
        now = self.clock.now()
        if state.missing_since is None:
            state.missing_since = now
            log.info("%s does not exist yet; waiting for it before writing", state.ref)
        not_served = error is not None and "does not serve" in str(error)
        if not_served or now - state.missing_since >= self.options.missing_timeout:
            self._report_missing(state, error if not_served else None)
        else:
            self.set_status(state, ObjectStatus.WAITING, "object does not exist yet")
        if state.watch_healthy:
            return math.inf
        return min(self.options.wait_cap, backoff.next())

    def _report_missing(self, state: ObjectState, error: NotFoundError | None) -> None:
        sources = sorted({leaf.source or "(unknown source)" for leaf in state.desired.values()})
        why = str(error) if error is not None else (
            f"it still does not exist after {self.options.missing_timeout:g}s"
        )  # fmt: skip
        if state.status != ObjectStatus.MISSING:
            hint = (
                " A pod without a GameServer (one of a Deployment, say) never gets one: write "
                "to the Pod instead, or run it under a GameServerSet."
                if is_gameserver(state.ref)
                else ""
            )
            text = (
                f"cannot write {state.ref}: {why}; the writes of {', '.join(sources)} cannot "
                f"land.{hint} kidecar keeps trying and writes as soon as the object appears."
            )
            log.warning("%s", text)
            self.record(Event("WriteCannotLand", text, "Warning"))
        self.set_status(state, ObjectStatus.MISSING, why)

    def reject(self, state: ObjectState, leaves: Mapping[Path, Leaf], error: InvalidError) -> None:
        """A 422 for ``leaves``: log it with their sources and drop them."""
        self.count_failure(state, "invalid")
        sources = sorted({leaf.source or "(unknown source)" for leaf in leaves.values()})
        values = ", ".join(f"{dotted(p)}={leaf.value!r}" for p, leaf in leaves.items())
        log.error(
            "%s rejected %s (from %s): %s; fix the configuration, the rest is still written",
            self.store.description,
            values,
            ", ".join(sources),
            error,
        )
        for p in leaves:
            state.desired.pop(p, None)

    # -- the watch --------------------------------------------------------------------------

    def watch_problem(self, state: ObjectState, error: PersistError | None) -> None:
        if isinstance(error, ForbiddenError) and self.once(("rbac", error.rule)):
            log.error(
                "RBAC forbids watching %s: missing rule %s; kidecar reads it before each write "
                "instead and cannot see other writers' changes until the Role allows it. %s",
                state.ref,
                error.rule,
                error,
            )
        elif error is not None and not isinstance(error, ExpiredError):
            log.debug("watch of %s: %s", state.ref, error)

    def reverted(
        self, state: ObjectState, path: Path, value: Any, manager: str, previous: Any, now: float
    ) -> None:
        """Someone (``manager``) changed ``path`` away from kidecar's ``value``."""
        field = dotted(path)
        self.metrics.persist_reverts.labels(state.ref.resource, field).inc()
        log.info(
            "%s of %s was changed from %r to %r by %s; re-asserting it",
            field,
            state.ref,
            lookup(previous, path),
            lookup(state.live, path),
            manager,
        )
        contested = state.contest.record(path, value, manager, now)
        if contested is None:
            return
        p = state.contest.policy
        text = (
            f"{field} of {state.ref} is contested: another writer (field manager "
            f"{manager!r}) changed it back {contested.reverts} times within {p.window:g}s. "
            f"kidecar keeps re-asserting {value!r}, waiting up to {p.backoff_cap:g}s between "
            "attempts; find the other controller and stop it writing this field (see "
            "docs/configuration.md, 'When another controller writes the same fields')"
        )
        log.warning("%s", text)
        self.record(Event("FieldContested", text, "Warning"))
        self.metrics.persist_contested.labels(state.ref.resource, field).set(1)

    def calmed(self, state: ObjectState, path: Path) -> None:
        field = dotted(path)
        log.info("%s of %s is no longer contested", field, state.ref)
        self.metrics.persist_contested.labels(state.ref.resource, field).set(0)

    def object_problems(self, state: ObjectState) -> Iterator[tuple[str, str]]:
        """(kind, description) of what is wrong with ``state``, for ``/readyz``."""
        if state.status != ObjectStatus.OK:
            yield state.status, f"{state.ref}: {state.detail}"
        error = state.watch_error if state.desired else None
        if isinstance(error, ForbiddenError):
            yield (
                ObjectStatus.FORBIDDEN,
                f"{state.ref}: cannot watch: missing RBAC rule {error.rule}",
            )
        elif isinstance(error, NotFoundError):
            yield ObjectStatus.MISSING, f"{state.ref}: {error}"
        elif error is not None and not isinstance(error, ExpiredError):
            yield ObjectStatus.DEGRADED, f"{state.ref}: watch: {error}"
        for path, c in state.contest.contested.items():
            yield (
                "contested",
                f"{state.ref} {dotted(path)}: reverted {c.reverts} times by {c.manager}",
            )

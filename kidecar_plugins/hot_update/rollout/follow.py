"""Following one object: every new version of it, as it changes.

:func:`follow` is the core's watch of the object (:meth:`~kidecar_core.RuntimeView.watch_object`,
one watch request per 30-60 minutes at rest; a change arrives at once). When the Role does not
grant ``watch`` on it (403: a Role older than kidecar's), it says so once, naming the missing
rule, and reads the object every ``fallback_period`` seconds instead (``pollSeconds``), trying
the watch again every :data:`WATCH_RETRY_SECONDS` so that a Role fixed later is used without a
restart. Other problems of the watch are retried by the watch itself (with backoff).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs

from kidecar_core import ForbiddenError, ObjectRef, PermanentPersistError, RuntimeView

log = logging.getLogger("kidecar.plugin.hot_update")

WATCH_RETRY_SECONDS = 600.0
"""While polling for want of ``watch``: how often the watch is tried again (a GET and a refused
watch request: 2 requests per 10 minutes)."""


async def follow(
    runtime: RuntimeView, ref: ObjectRef, fallback_period: float
) -> AsyncIterator[dict[str, Any] | None]:
    """Yield ``ref`` now and whenever its ``resourceVersion`` changes (``None``: it does not
    exist), by watch; by polling every ``fallback_period`` seconds while the Role forbids the
    watch (403). Store errors are logged once per outage and following goes on; never raises
    them."""
    last: object = _UNSEEN
    while True:
        try:
            watch = runtime.watch_object(ref, stop_on=(ForbiddenError,))
            try:  # closed with this generator (the plugin stopping), not at a later GC
                async for found in watch:
                    version = _version(found)
                    if version != last:
                        last = version
                        yield found
            finally:
                await _aclose(watch)
        except ForbiddenError as e:
            _forbidden(runtime, ref, e, fallback_period)
        async for found in _poll(runtime, ref, fallback_period, WATCH_RETRY_SECONDS):
            version = _version(found)
            if version != last:
                last = version
                yield found


async def _poll(
    runtime: RuntimeView, ref: ObjectRef, period: float, duration: float
) -> AsyncIterator[dict[str, Any] | None]:
    """``ref`` read every ``period`` seconds for about ``duration`` seconds (store errors are
    logged once per outage and skipped)."""
    failing = False
    for _ in range(max(1, round(duration / period))):
        try:
            found = await runtime.get_object(ref)
        except ForbiddenError as e:  # said once for the life of the process, not per outage
            _forbidden(runtime, ref, e, period)
        except Exception as e:  # any other failure of the store: keep following
            if not failing:
                log.warning("cannot read %s (%s); retrying every %gs", ref, e, period)
                failing = True
        else:
            if failing:
                log.info("read %s again", ref)
                failing = False
            yield found
        await asyncio.sleep(period)


@attrs.define
class AllocatedWatch:
    """Whether a GameServer is ``Allocated`` (``spec.opsState``), as its watch sees it; sets
    ``changed`` whenever that changes. The watch is the one the core keeps of the pod's
    GameServer anyway (no request of its own)."""

    runtime: RuntimeView
    ref: ObjectRef
    changed: asyncio.Event
    allocated: bool | None = None
    """``None``: not known (not seen yet, or cannot be watched: read it directly)."""

    async def run(self) -> None:
        """Follow until cancelled, or until the watch cannot be had (403, the type not served:
        :class:`PermanentPersistError`), which leaves :attr:`allocated` ``None``."""
        try:
            async for server in self.runtime.watch_object(
                self.ref, stop_on=(PermanentPersistError,)
            ):
                allocated = ((server or {}).get("spec") or {}).get("opsState") == "Allocated"
                if allocated != self.allocated:
                    self.allocated = allocated
                    self.changed.set()
        except PermanentPersistError as e:
            log.info("not watching %s (%s): reading it when needed", self.ref, e)
            self.allocated = None
            self.changed.set()


def _forbidden(runtime: RuntimeView, ref: ObjectRef, e: ForbiddenError, period: float) -> None:
    """The Role's missing rule, logged once per verb (the watch's 403 and the reads' share it)."""
    if not runtime.first_time(("rollout-forbidden", ref, e.verb)):
        return
    said = (
        "cannot watch %s: the Role lacks %s resourceNames=[%s] "
        "(deploy/base/rbac.yaml has it); reading it every %gs instead"
    )
    if e.verb != "watch":  # e.g. watch granted, get not: reading fails as well
        said = (
            "cannot read %s: the Role lacks %s resourceNames=[%s] "
            "(deploy/base/rbac.yaml has it); trying again every %gs"
        )
    log.warning(said, ref, e.rule, ref.name, period)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)  # an async generator's; a plain iterator has none
    if aclose is not None:
        await aclose()


def _version(found: dict[str, Any] | None) -> str | None:
    return (found.get("metadata") or {}).get("resourceVersion") if found else None


_UNSEEN = object()

"""Following one object: every new version of it, as it changes.

This polls ``get_object`` at a modest period (``pollSeconds``, at least 1 s). The core now
offers a watch (``RuntimeView.watch_object``); :func:`follow` can become that watch with nothing
else changing (the callers only see "a new version of the object"), once the Role grants
``watch`` on ``kidecar-rollout`` and figure 10 is measured again (docs/rollout.md, Limits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from kidecar_core import ObjectRef, RuntimeView

log = logging.getLogger("kidecar.plugin.hot_update")


async def follow(
    runtime: RuntimeView, ref: ObjectRef, period: float
) -> AsyncIterator[dict[str, Any] | None]:
    """Yield ``ref`` now and whenever its ``resourceVersion`` changes (``None``: it does not
    exist). Store errors are logged once per outage and polling goes on; never raises them."""
    last: object = object()
    failing = False
    while True:
        try:
            found = await runtime.get_object(ref)
        except Exception as e:  # any failure of the store: keep following
            if not failing:
                log.warning("cannot read %s (%s); retrying every %gs", ref, e, period)
                failing = True
        else:
            if failing:
                log.info("read %s again", ref)
                failing = False
            version = (found.get("metadata") or {}).get("resourceVersion") if found else None
            if version != last:
                last = version
                yield found
        await asyncio.sleep(period)

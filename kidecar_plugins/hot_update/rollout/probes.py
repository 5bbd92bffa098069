"""This pod's probe results during the verification window after an update.

hot_update sees every result of the sidecar through ``kidecar_on_result`` (a broadcast hook);
:func:`observe` hands each one to the :class:`ProbeWatch` of the pod's follower. Probes emit a
result only when their state *changes*, so a result in ``failedStates`` after :meth:`arm` means
the state turned Failed after the update started.
"""

from __future__ import annotations

import asyncio
import contextlib

from kidecar_core import PodIdentity, Result
from kidecar_plugins.hot_update.rollout.config import RolloutFollowConfig

_watches: dict[PodIdentity, ProbeWatch] = {}


class ProbeWatch:
    """Did a watched probe turn to a failed state since :meth:`arm`?"""

    def __init__(self, own_plugin: str, config: RolloutFollowConfig) -> None:
        self.own_plugin = own_plugin
        self.failed_states = frozenset(config.failed_states)
        self.plugins = frozenset(config.probe_plugins)
        self.failed = asyncio.Event()
        self.reason = ""
        self.armed = False
        self.heard: set[str] = set()
        """Plugins that emitted a result since the sidecar started."""

    def unheard(self) -> str | None:
        """The ``probePlugins`` when none of them has emitted any result since the sidecar
        started (a name that is not a configured plugin, or a probe that never ran): a window
        that watched them verified nothing. ``None`` otherwise, and when none are named."""
        if not self.plugins or self.plugins & self.heard:
            return None
        return ", ".join(sorted(self.plugins))

    def arm(self) -> None:
        """Start watching (before the update, so a failure during it counts too)."""
        self.failed.clear()
        self.reason = ""
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def observe(self, result: Result) -> None:
        self.heard.add(result.plugin)
        if not self.armed or result.plugin == self.own_plugin:
            return
        if self.plugins and result.plugin not in self.plugins:
            return
        if result.state not in self.failed_states or self.failed.is_set():
            return
        why = (result.data or {}).get("reason")
        self.reason = f"{result.plugin} state {result.state}" + (f" ({why})" if why else "")
        self.failed.set()

    async def wait_failed(self, seconds: float) -> str | None:
        """The failure seen within ``seconds`` (from now), or ``None``; disarms."""
        try:
            if not self.failed.is_set() and seconds > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.failed.wait(), seconds)
            return self.reason if self.failed.is_set() else None
        finally:
            self.disarm()


def register(identity: PodIdentity, watch: ProbeWatch) -> None:
    _watches[identity] = watch


def unregister(identity: PodIdentity, watch: ProbeWatch) -> None:
    if _watches.get(identity) is watch:
        del _watches[identity]


def observe(identity: PodIdentity, result: Result) -> None:
    """Hand ``result`` (of the sidecar running for ``identity``) to its follower, if any."""
    watch = _watches.get(identity)
    if watch is not None:
        watch.observe(result)

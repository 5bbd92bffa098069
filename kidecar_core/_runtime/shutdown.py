"""Signals and the shutdown budget.

The first SIGTERM/SIGINT asks for a graceful stop within the budget (``--shutdown-timeout``); a
second one exits at once (Ctrl-C twice), losing unwritten state, and says how much.

SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored: in a pod with ``shareProcessNamespace``
(which ``hot_update``'s signal mode needs) another container's ``kill -HUP`` or ``pkill`` may
reach kidecar, and their default action would end it without a word.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from kidecar_core._base.clock import Clock
from kidecar_core._runtime.logs import LogBudget

log = logging.getLogger("kidecar")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
"""The reload signals a game handles: logged (a few a minute at most), never fatal."""


class Budget:
    """The time left for a graceful stop, counted from the first time it is asked."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self._deadline: float | None = None

    def left(self, share: float = 1.0) -> float:
        """``share`` of the time left, in seconds (at least 0.1: every step gets a chance)."""
        if self._deadline is None:
            self._deadline = self.clock.now() + self.seconds
        return max(0.1, (self._deadline - self.clock.now()) * share)


def install_signal_handlers(
    stopping: asyncio.Event, budget_seconds: float, pending: Callable[[], int]
) -> Callable[[], None]:
    """Handle SIGTERM/SIGINT on the running loop; returns the function that removes them.

    ``pending()`` is the number of objects with unwritten state, reported by a second signal.
    """
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            log.warning(
                "second %s: exiting now without finishing the graceful stop "
                "(pending writes: %d objects)",
                sig.name,
                pending(),
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)
        log.info("received %s: stopping (budget %.0fs)", sig.name, budget_seconds)
        stopping.set()

    budget = LogBudget(burst=5)

    def on_ignored(sig: signal.Signals) -> None:
        allowed, held = budget.allow()
        if allowed:
            more = f" ({held} more not logged)" if held else ""
            log.warning(
                "received %s: ignored (kidecar stops on SIGTERM or SIGINT; was it meant for the "
                "game? check what sends it)%s",
                sig.name,
                more,
            )

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    for sig in IGNORED_SIGNALS:
        loop.add_signal_handler(sig, on_ignored, sig)

    def remove() -> None:
        for sig in (*SIGNALS, *IGNORED_SIGNALS):
            loop.remove_signal_handler(sig)

    return remove


async def step(what: str, work: Callable[[], Awaitable[Any]]) -> None:
    """One teardown step: a failure is logged (with what failed) and the teardown goes on."""
    try:
        await work()
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.error("shutdown: %s failed: %s: %s", what, type(e).__name__, e, exc_info=e)

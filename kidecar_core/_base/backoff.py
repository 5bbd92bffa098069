"""Exponential backoff: the one used by every retry loop of kidecar and its plugins."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delays that double from ``initial`` up to ``cap`` seconds; :meth:`reset` after a success.

    With ``jitter`` (the default) each delay is drawn uniformly from the upper half of its
    ceiling, ``[ceiling/2, ceiling]``, so that many sidecars failing together do not retry in
    step (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015, "equal jitter").
    Without it the delays are exactly ``initial, 2·initial, 4·initial, ...`` up to ``cap``.

    ``initial`` and ``cap`` are seconds, both > 0.
    """

    initial: float = 0.2
    cap: float = 30.0
    jitter: bool = True
    attempt: int = 0
    _random: random.Random = attrs.field(factory=random.Random, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (self.initial > 0 and self.cap > 0):
            raise ValueError(
                f"Backoff needs initial > 0 and cap > 0, got {self.initial}, {self.cap}"
            )

    def peek(self) -> float:
        """The ceiling of the next delay, without consuming it."""
        return min(self.cap, self.initial * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        """The next delay in seconds; each call counts one more attempt."""
        ceiling = self.peek()
        self.attempt += 1
        return float(self._random.uniform(ceiling / 2, ceiling)) if self.jitter else ceiling

    def reset(self) -> None:
        """Start over from ``initial`` (after a success)."""
        self.attempt = 0

"""Test plugins: they journal every hook call to a file so tests can see order and timing."""

from __future__ import annotations

import time
from pathlib import Path


def journal(path: str, name: str, event: str) -> None:
    with Path(path).open("a") as f:
        f.write(f"{time.monotonic():.4f} {name} {event}\n")

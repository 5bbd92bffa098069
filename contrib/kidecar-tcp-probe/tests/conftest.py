"""Fixtures of kidecar-tcp-probe's tests: a real TCP game port on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from tcp_probe_servers import GamePort


def pytest_configure(config: pytest.Config) -> None:
    """Fail early, with the fix, when the distribution under test is not installed."""
    if not entry_points(group="kidecar", name="tcp_probe"):
        raise pytest.UsageError(
            "kidecar-tcp-probe is not installed in this environment: "
            "pip install -e contrib/kidecar-tcp-probe"
        )


@pytest.fixture
def game() -> Iterator[GamePort]:
    """A listening TCP port that accepts connections and says nothing (until told to)."""
    with GamePort() as port:
        yield port

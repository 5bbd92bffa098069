"""Fixtures of the reliability suite: the hot_update tests' real sidecar, game and file server.

``start_sidecar`` is the hot_update tests' fixture (a real ``kidecar run`` subprocess with a
real game process), re-exported; ``faulty_files`` is a real file server with the fault routes of
:mod:`tests.reliability.faultserver`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.hot_update.conftest import start_sidecar
from tests.reliability.faultserver import FaultyFileServer

__all__ = ["faulty_files", "start_sidecar"]


@pytest.fixture
def faulty_files() -> Iterator[FaultyFileServer]:
    server = FaultyFileServer().start()
    yield server
    server.stop()

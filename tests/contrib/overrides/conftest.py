"""Fixtures for the override recipes of ``contrib/overrides/``: a results-producing plugin and
``kidecar run`` with a recipe loaded from its file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kidecar_core.testing import Sidecar
from tests.contrib.overrides.recipes import OVERRIDES, ROOT, RunSidecar

TESTPLUGIN = ROOT / "tests" / "testplugin"


@pytest.fixture(scope="session")
def filestate_env(testplugins_env: dict[str, str]) -> dict[str, str]:
    """Environment whose ``kidecar`` processes see the test plugins (``tp_filestate``: the
    content of a file is its result, every tick)."""
    return testplugins_env


@pytest.fixture
def run_sidecar(tmp_path: Path, filestate_env: dict[str, str]) -> Iterator[RunSidecar]:
    """Start ``kidecar run --local-state`` with recipes loaded with ``--plugin-file``."""
    started: list[Sidecar] = []

    def start(
        config: Mapping[str, Any], *recipes: str, env: Mapping[str, str] | None = None
    ) -> Sidecar:
        args = [a for r in recipes for a in ("--plugin-file", str(OVERRIDES / r))]
        sidecar = Sidecar(
            tmp_path / f"sidecar-{len(started)}",
            config,
            env={**filestate_env, **(env or {})},
            extra_args=args,
        )
        started.append(sidecar)
        return sidecar.start(wait_ready=True)

    yield start
    for sidecar in started:
        if sidecar.proc is not None and sidecar.proc.returncode is None:
            sidecar.stop()

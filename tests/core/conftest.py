"""Fixtures for the core's tests: the test plugin distribution, installed for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTPLUGIN = Path(__file__).resolve().parent.parent / "testplugin"


@pytest.fixture(scope="session")
def testplugins_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for subprocesses that see the ``kidecar-testplugins`` distribution.

    It is pip-installed into a private target directory (not the venv), so its entry points are
    real entry points but only processes started with this environment load them.
    """
    target = tmp_path_factory.mktemp("testplugins-site")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), str(TESTPLUGIN),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    yield env

"""The README's game-developer section works as written: its curl lines and its Python loop run
against a real local-mode sidecar (on a free port instead of 5001)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kidecar_core.testing import Sidecar
from tests.plugins.game_api.harness import GameApiClient, start

README = Path(__file__).resolve().parents[3] / "README.md"
DEFAULT = "http://127.0.0.1:5001"


def section_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Game API (for game developers)", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[Sidecar, GameApiClient]]:
    sc, api = start(tmp_path / "sidecar")
    yield sc, api
    sc.stop()


def test_the_curl_lines(sidecar: tuple[Sidecar, GameApiClient]) -> None:
    sc, api = sidecar
    _, block = section_blocks("sh")
    # The watch streams until stopped: let it run two seconds.
    script = block.replace(DEFAULT, api.url).replace("curl -sN ", "curl -sN --max-time 2 ")
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert f'"name": "{sc.env["POD_NAME"]}"' in run.stdout, run.stderr
    assert run.stdout.count('"status": "queued"') == 2, run.stdout
    gs = sc.state()["gameserver"]
    assert gs["spec"]["opsState"] == "Allocated"
    assert gs["metadata"]["labels"] == {"game.kidecar.io/map": "dust2"}


def test_the_python_loop(sidecar: tuple[Sidecar, GameApiClient]) -> None:
    sc, api = sidecar
    (block,) = section_blocks("python")
    env = {**os.environ, "KIDECAR_GAME_API": api.url}
    run = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, env=env
    )
    assert run.returncode == 0, run.stderr
    gs = sc.state()["gameserver"]
    assert gs["spec"]["opsState"] == "WaitToBeDeleted"
    assert gs["metadata"]["labels"] == {"game.kidecar.io/map": "dust2"}


def test_trying_it_without_a_cluster(tmp_path: Path) -> None:
    """The README's first block, as written: a local-mode sidecar answering on 5001."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 5001)) == 0:
            pytest.skip("something else listens on 127.0.0.1:5001")
    block, _ = section_blocks("sh")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    script = block.replace(" &\n", " & echo $! > pid; wait\n")
    env = {**os.environ, "PATH": path}
    shell = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env)
    try:
        api = GameApiClient(DEFAULT)

        def answers() -> bool:
            try:
                return api.gameserver().ops_state == "None"
            except OSError:
                return False

        deadline = time.monotonic() + 60  # generous: a wait for a condition, not a timing
        while not answers():
            assert time.monotonic() < deadline, "the game API never answered on 127.0.0.1:5001"
            time.sleep(0.2)
        assert (tmp_path / "state.json").exists()
        # The name the README's comment shows is the one a fresh local run has.
        _, curl = section_blocks("sh")
        assert f'"name": "{api.gameserver().name}"' in curl
    finally:
        pid = int((tmp_path / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
        assert shell.wait(timeout=30) == 0

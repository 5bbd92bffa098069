"""A local state file that is not what kidecar wrote (review of issue 12): a FIFO hung
``kidecar run`` (SIGTERM included), JSON nested 100,000 deep stopped it with a RecursionError
traceback. Each is now a one-line error naming the file, exit code 1, as a broken file was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "POD_NAME": "gs-0", "POD_NAMESPACE": "default"}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "not a regular file"),
        ("directory", "not a regular file"),
        ("nested", "JSON nested too deeply"),
        ("binary", "'utf-8' codec can't decode"),
    ],
)
def test_a_hostile_state_file_is_a_clear_error(tmp_path: Path, kind: str, message: str) -> None:
    state = tmp_path / "state.json"
    if kind == "fifo":
        os.mkfifo(state)  # nobody ever writes to it
    elif kind == "directory":
        state.mkdir()
    elif kind == "nested":
        state.write_text("[" * 100_000)
    else:
        state.write_bytes(bytes(range(128, 256)) * 10)
    config = tmp_path / "config.yaml"
    config.write_text("plugins: []\n")
    out = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "run", "--config", str(config),
         "--local-state", str(state), "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, env=ENV, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert f"{state} is not a readable JSON file: {message}" in out.stderr
    assert "Traceback" not in out.stderr

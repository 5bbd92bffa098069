"""``kidecar demo`` — the README's "see it run" command — runs to completion and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_demo_runs_to_completion() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    proc = subprocess.run(
        [sys.executable, "-m", "kidecar_core", "demo", "--pace", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "spec.opsState = 'Allocated'" in out
    assert "spec.opsState = 'WaitToBeDeleted', deletionPriority = 100" in out
    assert "reloaded: 'level pack v2: 5 maps'" in out
    assert "hot-update-result = 'v2: Update success'" in out
    assert "HTTP 400" in out
    assert "kidecar exited with 0" in out
    workdir = next(
        line.split(": ", 1)[1] for line in out.splitlines() if "working directory" in line
    )
    assert not os.path.exists(workdir.strip())  # cleaned up


def test_demo_cleans_up_on_interrupt() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kidecar_core", "demo", "--pace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "local state file" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 1
    assert "interrupted; cleaning up" in text
    game_pid = int(
        next(line for line in lines if "game:" in line).rsplit("pid ", 1)[1].rstrip(")\n")
    )
    time.sleep(0.2)
    try:
        os.kill(game_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the demo game was left running"

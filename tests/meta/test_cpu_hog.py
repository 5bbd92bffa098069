"""hack/cpu-hog.sh (``make unit-under-load``): the command's exit status comes through, and no
busy process outlives the script, whether the command fails or the script is interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOG = ROOT / "hack" / "cpu-hog.sh"


def hog_pids(stderr: str) -> list[int]:
    """The busy processes' ids, from the script's ``cpu-hog: N busy processes (ids)`` line."""
    found = re.search(r"busy processes \(([\d ]+)\)", stderr)
    assert found, stderr
    return [int(p) for p in found.group(1).split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def gone(pids: list[int], timeout: float = 30.0) -> bool:
    """Wait (generously) until none of ``pids`` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def start() -> subprocess.Popen[str]:
    """The script running ``sleep 60`` in a process group of its own."""
    return subprocess.Popen(
        ["bash", str(HOG), "sleep", "60"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline()


def test_the_commands_status_comes_through_and_the_hogs_are_stopped() -> None:
    done = subprocess.run(
        ["bash", str(HOG), "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    pids = hog_pids(done.stderr)
    assert len(pids) == os.cpu_count()
    assert gone(pids)


def test_an_interrupted_run_stops_the_hogs() -> None:
    with start() as proc:
        pids = hog_pids(first_line(proc))
        assert all(alive(p) for p in pids)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group, command and script
        assert proc.wait(timeout=60) == 130
    assert gone(pids)


def test_a_killed_script_leaves_no_hog_behind() -> None:
    with start() as proc:
        pids = hog_pids(first_line(proc))
        proc.kill()  # the script alone, and no trap runs: each loop notices it is gone
        proc.wait(timeout=60)
        try:
            assert gone(pids)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned `sleep`


def under_load_options(test_timeout: int) -> list[str]:
    """The pytest options of ``make unit-under-load`` (UNDER_LOAD_OPTS), with a per-test
    timeout of ``test_timeout`` seconds."""
    printed = subprocess.run(
        [
            "make", "-s", "--no-print-directory", "-C", str(ROOT),
            "--eval", "print-opts: ; @echo $(UNDER_LOAD_OPTS)", "print-opts",
            f"UNDER_LOAD_TEST_TIMEOUT={test_timeout}",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return printed.stdout.split()


def test_a_stuck_test_under_load_fails_with_every_threads_stack_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """The stall guard of ``make unit-under-load``: a test that never ends fails after the
    per-test timeout, with the stack of each thread, and the tests after it still run."""
    (tmp_path / "test_stuck.py").write_text(
        "import threading\n\n"
        "def test_waits_forever():\n"
        "    stuck = threading.Event()\n"
        "    threading.Thread(target=stuck.wait, name='helper', daemon=True).start()\n"
        "    stuck.wait()\n\n"
        "def test_after_it():\n"
        "    pass\n"
    )
    options = under_load_options(test_timeout=1)
    assert "--timeout=1" in options
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options, "test_stuck.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Failed: Timeout (>1.0s) from pytest-timeout" in out, out
    assert ">       stuck.wait()" in out, out  # where the test's own thread waits ...
    assert "Stack of helper" in out, out  # ... and the stack of every other thread
    assert "1 failed, 1 passed" in out, out

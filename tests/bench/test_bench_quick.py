"""Smoke test of the benchmark script (``bench/run.py --quick``), NOT a performance test.

It proves that the one-command benchmark of the README still runs end to end and reports all
every figure with numbers. It deliberately asserts nothing about speed or footprint targets:
the quick run's durations and counts are far too small to mean anything, and CI machines are
noisy. The real figures come from a full run (`make bench`), recorded in docs/benchmarks.md.

It needs the real kube-apiserver (like the other ``kube`` tests) and takes about two minutes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]
FIGURES = [str(n) for n in range(1, 14)]


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    if os.environ.get("KIDECAR_SKIP_KUBE") == "1":
        pytest.skip("KIDECAR_SKIP_KUBE=1: the benchmark needs the test kube-apiserver")
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-6000:]}"
    results = json.loads(out.read_text())
    assert results["quick"] is True
    assert sorted(results["figures"], key=int) == FIGURES
    for number in FIGURES:
        rows = results["figures"][number]["rows"]
        assert rows, f"figure {number} has no rows"
        for row in rows:
            assert isinstance(row["value"], int | float), (number, row)
            assert math.isfinite(row["value"]), (number, row)
            assert row["method"], (number, row)
    # The table on stdout names every figure too.
    table = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert {line.split("|")[1].strip() for line in table[1:]} >= set(FIGURES)

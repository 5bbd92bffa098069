"""The benchmark's running order (``bench/run.py``): every figure once, and the figures that
need no API server before etcd and kube-apiserver start (their disk and CPU would disturb them)."""

from __future__ import annotations

import pytest

from bench.run import ALL, NEEDS_CLUSTER, STEPS, check_order


def test_the_benchmark_s_own_order_passes() -> None:
    check_order(STEPS)
    local = set(ALL) - NEEDS_CLUSTER
    check_order([{n} for n in sorted(local)] + [{n} for n in sorted(NEEDS_CLUSTER - {10})] + [{10}])


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{n} for n in ALL], "must run first"),  # figure 1 (cluster) before figure 2 (local)
        ([{2, 1}] + [{n} for n in ALL if n > 2], "mix figures"),
        ([{2}, {5}, {13}] + [{n} for n in sorted(NEEDS_CLUSTER)], "fleet"),
        ([{n} for n in ALL if n != 7], "not figures"),
        ([{n} for n in ALL] + [{7}], "not figures"),
    ],
)
def test_a_wrong_order_is_refused(steps: list[set[int]], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        check_order(steps)

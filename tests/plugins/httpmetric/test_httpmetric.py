"""The HTTPMetric storage type: numeric results as a gauge; bad names and values never crash."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from kidecar_core import Result, StorageConfig
from kidecar_core._base.metrics import Metrics
from kidecar_plugins.httpmetric.plugin import HTTPMetricConfig, kidecar_on_result


class View:
    """The part of RuntimeView the backend uses."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.seen: set[object] = set()

    def first_time(self, key: object) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def emit(view: View, state: str, name: str = "game_players") -> None:
    cfg = HTTPMetricConfig(metric_name=name)
    result = Result(
        plugin="http_probe",
        state=state,
        storage=StorageConfig("HTTPMetric", {"httpMetric": cfg}),
        source="plugins[0].config.endpoints[0].storageConfig",
    )
    kidecar_on_result(result=result, runtime=view)  # type: ignore[arg-type]


def sample(view: View, name: str) -> Any:
    return view.metrics.registry.get_sample_value(
        name, {"plugin": "http_probe", "source": "plugins[0].config.endpoints[0].storageConfig"}
    )


def test_numbers_and_non_numbers(caplog: pytest.LogCaptureFixture) -> None:
    view = View()
    emit(view, "12")
    assert sample(view, "game_players") == 12
    with caplog.at_level(logging.WARNING):
        emit(view, "Failed")
        emit(view, "idle")
    assert math.isnan(sample(view, "game_players"))
    assert caplog.text.count("is not a number") == 1
    emit(view, "2.5")
    assert sample(view, "game_players") == 2.5


def test_a_name_taken_by_a_core_metric_is_an_error_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = View()
    with caplog.at_level(logging.ERROR):
        emit(view, "3", name="kidecar_plugin_up")
        emit(view, "4", name="kidecar_plugin_up")
    assert caplog.text.count("httpMetric.metricName") == 1

"""``Result.data`` is a ``ResultData``: string keys, JSON values (issue 10). The testing kit's
``FakeContext.emit`` refuses anything else, naming the key, so a plugin's own tests catch data
that an override or a custom storage type could not serialise."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from kidecar_core import Result, ResultData
from kidecar_core._persist.result import result_data_problem
from kidecar_core.testing import FakeContext

GOOD: ResultData = {
    "endpoint": 0,
    "url": "http://127.0.0.1:8080/s",
    "previous": None,
    "up": True,
    "seconds": 0.25,
    "peers": ["a", {"b": [1, 2.5, False, None]}],
    "labels": {"tier": "game"},
}


def test_json_values_are_result_data() -> None:
    assert result_data_problem(GOOD) is None
    assert result_data_problem({}) is None
    assert json.loads(json.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([("a", 1)], "data: must be a mapping with string keys, not a list"),
        ("Allocated", "data: must be a mapping with string keys, not a str"),
        ({1: "x"}, "data: key 1 is not a string"),
        ({"at": datetime.date(2026, 1, 2)}, "data.at: a date is not a JSON value"),
        ({"raw": b"\x00"}, "data.raw: a bytes is not a JSON value"),
        ({"ids": {1, 2}}, "data.ids: a set is not a JSON value"),
        ({"peers": ["a", {"b": [1, object()]}]}, "data.peers[1].b[1]: a object is not a JSON"),
        ({"nested": {"ok": 1, (1, 2): 3}}, "data.nested: key (1, 2) is not a string"),
    ],
)
def test_what_is_not_result_data_is_named_by_its_key(data: Any, problem: str) -> None:
    found = result_data_problem(data)
    assert found is not None and found.startswith(problem), found


def test_the_fake_context_records_result_data() -> None:
    ctx = FakeContext("disk_guard")
    ctx.emit(Result("disk_guard", "Ok", data=GOOD))
    assert [r.data for r in ctx.results] == [GOOD]


def test_the_fake_context_refuses_other_data_naming_the_plugin_and_key() -> None:
    ctx = FakeContext("disk_guard")
    bad: Any = {"checked": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)}
    with pytest.raises(TypeError, match=r"^disk_guard: Result\.data\.checked: a datetime is not"):
        ctx.emit(Result("disk_guard", "Ok", data=bad))
    assert ctx.results == []

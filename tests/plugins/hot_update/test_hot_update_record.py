"""The result ConfigMap's keys, the owner workload, and what a restart re-applies (unit tests)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from kidecar_core import ObjectRef
from kidecar_plugins.hot_update.record import (
    Applied,
    PodInfo,
    Workload,
    choose_replay,
    owner_workload,
    pod_info,
    record_writes,
)

CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def pod(
    labels: dict[str, str] | None = None, owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"metadata": {"name": "p", "uid": "u-1", "labels": labels or {},
                         "ownerReferences": owners or []}}  # fmt: skip


def owner(kind: str, name: str, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name,
        "uid": "x",
        "controller": controller,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            pod({"game.kruise.io/owner-gss": "gss-a"}, [owner("StatefulSet", "gss-a")]),
            Workload("GameServerSet", "gss-a"),
        ),
        (pod(owners=[owner("StatefulSet", "db")]), Workload("StatefulSet", "db")),
        (
            pod({"pod-template-hash": "5d9c7b8f4"}, [owner("ReplicaSet", "web-5d9c7b8f4")]),
            Workload("Deployment", "web"),
        ),
        (pod(owners=[owner("ReplicaSet", "bare-rs")]), Workload("ReplicaSet", "bare-rs")),
        (pod(owners=[owner("Job", "j", controller=False)]), None),
        (pod(), None),
        ({}, None),
    ],
)
def test_owner_workload(obj: dict[str, Any], expected: Workload | None) -> None:
    assert owner_workload(obj) == expected


def test_keys_are_valid_configmap_keys() -> None:
    who = pod_info(pod({"game.kruise.io/owner-gss": "gss-a.b"}), "gss-a.b-0")
    applied = Applied("v1", "http://h/x", "a" * 64, "/app/downloads/x", "t", "gss-a.b-0", "u-1")
    writes = record_writes(ObjectRef.configmap("ns", "sidecar-result"), applied, who, "src")
    keys = [k for w in writes for k in w.patch["data"]]
    assert keys == ["pod.gss-a.b-0", "workload.gameserverset.gss-a.b"]
    assert all(CONFIGMAP_KEY.match(k) for k in keys)
    assert [w.create for w in writes] == [True, True]
    assert [w.once for w in writes] == [False, True], "the shared key is never re-asserted"
    shared = json.loads(writes[1].patch["data"]["workload.gameserverset.gss-a.b"])
    assert "podUID" not in shared
    assert json.loads(writes[0].patch["data"]["pod.gss-a.b-0"])["podUID"] == "u-1"


def rec(version: str, uid: str | None = None) -> str:
    return Applied(version, f"http://h/{version}/f", "a" * 64, "/d/f", "t", "p", uid).to_json()


GSS = Workload("GameServerSet", "gss")


@pytest.mark.parametrize(
    ("data", "who", "expected"),
    [
        ({}, PodInfo("p", "u-1", GSS), None),
        ({"pod.p": rec("v3", "u-1"), GSS.key: rec("v4")}, PodInfo("p", "u-1", GSS), "v3"),
        ({"pod.p": rec("v3", "u-old"), GSS.key: rec("v4")}, PodInfo("p", "u-1", GSS), "v4"),
        ({GSS.key: rec("v4")}, PodInfo("p-new", "u-9", GSS), "v4"),
        ({"pod.p": rec("v3", "u-old")}, PodInfo("p", "u-1", None), "v3"),
        ({"pod.p": rec("v3", "u-old")}, PodInfo("p", "u-1", GSS), "v3"),
        ({"pod.p": "garbage", GSS.key: rec("v4")}, PodInfo("p", "u-1", GSS), "v4"),
        ({"pod.other": rec("v5", "u-1")}, PodInfo("p", "u-1", GSS), None),
        ({"pod.p": rec("v2", None)}, PodInfo("p", None, None), "v2"),
    ],
    ids=[
        "nothing",
        "own-wins-over-workload",
        "recreated-pod-takes-workload",
        "new-replica",
        "recreated-bare-pod",
        "recreated-no-workload-record",
        "unreadable-own",
        "another-pod",
        "local-mode-no-uid",
    ],
)
def test_choose_replay(data: dict[str, str], who: PodInfo, expected: str | None) -> None:
    choice = choose_replay({"data": data}, who)
    assert (choice[0].version if choice else None) == expected


def test_choose_replay_without_configmap() -> None:
    assert choose_replay(None, PodInfo("p", "u", None)) is None

"""The Kruise stand-in's pod webhook part of the serverless PodProbeMarker protocol (pure logic:
no cluster needed): which probes of which PodProbeMarkers land in a new Pod's annotation."""

from __future__ import annotations

import json
from typing import Any

from tests.support.kruise_standin import (
    PODPROBE_ANNOTATION,
    PODPROBEMARKER_LIST_ANNOTATION,
    podprobe_annotations,
    selects,
)

SPEC = {
    "containers": [{"name": "game"}],
    "initContainers": [{"name": "kidecar", "restartPolicy": "Always"}, {"name": "setup"}],
}


def marker(name: str, *probes: dict[str, Any], **selector: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": selector or {"matchLabels": {"gss": "game"}}, "probes": list(probes)},
    }


def probe(name: str, condition: str = "", container: str = "game") -> dict[str, Any]:
    return {
        "name": name,
        "containerName": container,
        "podConditionType": condition or f"game.kruise.io/{name}",
        "probe": {"exec": {"command": ["true"]}},
        "markerPolicy": [{"state": "Succeeded", "labels": {"a": "b"}}],
    }


def test_selecting_markers_give_the_annotation_kruise_writes() -> None:
    markers = [
        marker("b", probe("idle"), probe("idle", "game.kruise.io/other")),  # key taken: dropped
        marker("a", probe("healthy"), probe("sidecar", container="kidecar")),
        marker("c", probe("never"), matchLabels={"gss": "other"}),
    ]
    found = podprobe_annotations(markers, {"gss": "game"}, SPEC)
    assert found[PODPROBEMARKER_LIST_ANNOTATION] == "a,b"
    entries = json.loads(found[PODPROBE_ANNOTATION])
    assert [e["name"] for e in entries] == ["healthy", "sidecar", "idle"]
    assert list(entries[0]) == ["name", "containerName", "probe", "podConditionType"]
    assert entries[2] == {
        "name": "idle",
        "containerName": "game",
        "probe": {"exec": {"command": ["true"]}},
        "podConditionType": "game.kruise.io/idle",
    }


def test_probes_kruise_leaves_out() -> None:
    markers = [
        marker(
            "m",
            {**probe("no-condition"), "podConditionType": ""},
            probe("init", container="setup"),  # not a native sidecar
            probe("missing", container="nope"),
            probe("first", "game.kruise.io/x"),
            probe("second", "game.kruise.io/x"),  # same condition type
        )
    ]
    entries = json.loads(podprobe_annotations(markers, {"gss": "game"}, SPEC)[PODPROBE_ANNOTATION])
    assert [e["name"] for e in entries] == ["first"]
    assert podprobe_annotations([marker("m", probe("x"))], {"gss": "no"}, SPEC) == {}


def test_selectors() -> None:
    labels = {"app": "game", "tier": "1"}
    assert not selects(None, labels) and not selects({}, labels)
    assert selects({"matchLabels": {"app": "game"}}, labels)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["1"]}]},
                   labels)  # fmt: skip
    assert not selects({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels)
    both = [
        {"key": "x", "operator": "NotIn", "values": ["1"]},
        {"key": "app", "operator": "Exists"},
    ]
    assert selects({"matchExpressions": both}, labels)
    assert not selects({"matchExpressions": [{"key": "app", "operator": "Gt"}]}, labels)

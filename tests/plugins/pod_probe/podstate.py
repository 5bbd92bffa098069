"""Helpers of the pod_probe end-to-end tests: the pod as the tests shape it, read and edited."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kidecar_core.testing import Sidecar

ANNOTATION = "kruise.io/podprobe"
KUBELET_CONDITIONS = [
    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
    {
        "type": "Ready",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": "2024-01-01T00:00:05Z",
    },
    {"type": "game.kruise.io/other", "status": "False", "message": "someone else's"},
]


def probe_entry(name: str, probe: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An annotation entry writing condition ``game.kruise.io/<name>`` (1 s period)."""
    return {
        "containerName": "game",
        "name": name,
        "podConditionType": f"game.kruise.io/{name}",
        "probe": {"periodSeconds": 1, **probe},
        **fields,
    }


def exec_probe(name: str, script: str, **timing: Any) -> dict[str, Any]:
    return probe_entry(name, {"exec": {"command": ["sh", "-c", script]}, **timing})


def seed_pod(path: Path, entries: list[dict[str, Any]] | str | None, **pod: Any) -> None:
    """Write a state file whose pod carries ``entries`` in its annotation (a string as is)."""
    annotations: dict[str, str] = {}
    if entries is not None:
        annotations[ANNOTATION] = entries if isinstance(entries, str) else json.dumps(entries)
    document = {
        "pod": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "gs-0",
                "namespace": "default",
                "resourceVersion": "1",
                "labels": pod.pop("labels", {}),
                "annotations": annotations,
            },
            "spec": pod.pop("spec", {"containers": [{"name": "game"}]}),
            "status": {"conditions": KUBELET_CONDITIONS, **pod.pop("status", {})},
        },
        **pod,
    }
    path.write_text(json.dumps(document))


def conditions(sc: Sidecar) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in sc.state()["pod"].get("status", {}).get("conditions", [])}


def condition(sc: Sidecar, name: str) -> dict[str, Any] | None:
    return conditions(sc).get(f"game.kruise.io/{name}")


def events(sc: Sidecar, reason: str | None = None) -> list[dict[str, Any]]:
    return [e for e in sc.state().get("events", []) if reason in (None, e["reason"])]


def wait_condition(
    sc: Sidecar, name: str, status: str, message: str | None = None, timeout: float = 20
) -> dict[str, Any]:
    def ok() -> bool:
        c = condition(sc, name)
        return (
            c is not None
            and c["status"] == status
            and (message is None or c.get("message", "") == message)
        )

    sc.wait_for(ok, timeout, f"condition {name}={status} {message or ''}")
    found = condition(sc, name)
    assert found is not None
    return found


def edit_pod(
    sc: Sidecar,
    change: Callable[[dict[str, Any]], None],
    *,
    holds: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 20,
) -> None:
    """Change the pod in the state file the way a human (or Kruise) would, while kidecar runs.

    kidecar rewrites the whole file when it writes (a condition, an Event); an edit that
    crossed one of its writes is lost, so the edit is made again until the file shows it:
    until ``holds(pod)``, by default until making the change again would change nothing.
    """

    def held(pod: dict[str, Any]) -> bool:
        if holds is not None:
            return holds(pod)
        again = copy.deepcopy(pod)
        change(again)
        return again == pod

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = sc.state()
        change(document["pod"])
        sc.state_path.write_text(json.dumps(document))
        time.sleep(0.3)
        if held(sc.state()["pod"]):
            return
    raise AssertionError("could not edit the state file")


def set_annotation(sc: Sidecar, entries: list[dict[str, Any]] | str) -> None:
    text = entries if isinstance(entries, str) else json.dumps(entries)

    def change(pod: dict[str, Any]) -> None:
        pod["metadata"]["annotations"][ANNOTATION] = text

    edit_pod(sc, change)

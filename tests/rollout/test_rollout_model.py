"""The rollout document, its workloads, partitions and progress (pure logic)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest

from kidecar_core import (
    FailurePause,
    PodProgress,
    Rollout,
    RolloutError,
    RolloutTarget,
    Workload,
    effective_pause,
)
from kidecar_core._rollout import progress
from kidecar_core._rollout.commands import StartRequest, plan_start
from kidecar_core._store.rollout import (
    RolloutRefused,
    RolloutUsageError,
    parse_max_unavailable,
    resolve_max_unavailable,
)

V1 = RolloutTarget("v1", "https://cdn.example/v1/game.pak")
V2 = RolloutTarget("v2", "https://cdn.example/v2/game.pak", "ab" * 32)
GSS = Workload.parse("gss/game", "prod")


def rollout(**changes: Any) -> Rollout:
    base = Rollout(
        workload="gameserverset/game",
        revision=2,
        target=V2,
        previous=V1,
        max_unavailable="20%",
        slots=6,
    )
    return attrs.evolve(base, **changes)


@pytest.mark.parametrize(
    ("text", "kind", "resource"),
    [
        ("gameserverset/game", "GameServerSet", "gameservers"),
        ("gss/game", "GameServerSet", "gameservers"),
        ("GameServerSets/game", "GameServerSet", "gameservers"),
        ("sts/game", "StatefulSet", "statefulsets"),
        ("deploy/game", "Deployment", "deployments"),
    ],
)
def test_workload_spellings(text: str, kind: str, resource: str) -> None:
    workload = Workload.parse(text, "prod")
    assert workload.kind.kind == kind and workload.name == "game"
    assert workload.ref.resource.startswith(resource.removesuffix("s").removesuffix("server"))
    assert workload.key == f"{kind.lower()}.game"
    assert str(workload) == f"{kind.lower()}/game"


@pytest.mark.parametrize("text", ["game", "pod/game", "gss/", "gss/Game", "gss/a_b", "/game"])
def test_bad_workloads(text: str) -> None:
    """(Also: a namespace that is not a namespace name never reaches a request path.)"""
    for namespace in ("play/configmaps", "../..", "a?b=c", "Games", "", "x" * 64, "ok\n"):
        with pytest.raises(RolloutUsageError, match="is not a namespace name"):
            Workload.parse("gss/game", namespace)
    with pytest.raises(RolloutUsageError, match="workload"):
        Workload.parse(text, "prod")


def pod(labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None) -> dict:
    meta: dict[str, Any] = {"name": "p", "namespace": "prod", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"controller": True, "apiVersion": "apps/v1", **owner}]
    return {"metadata": meta}


def test_the_workload_of_a_pod() -> None:
    assert Workload.of_pod(pod({"game.kruise.io/owner-gss": "game"})) == GSS
    sts = Workload.of_pod(pod(owner={"kind": "StatefulSet", "name": "db"}))
    assert sts == Workload.parse("sts/db", "prod")
    rs = pod({"pod-template-hash": "5d4f"}, {"kind": "ReplicaSet", "name": "web-5d4f"})
    assert Workload.of_pod(rs) == Workload.parse("deploy/web", "prod")
    # A ReplicaSet without its Deployment's hash, Kruise's Advanced StatefulSet, no owner.
    assert Workload.of_pod(pod(owner={"kind": "ReplicaSet", "name": "web-5d4f"})) is None
    asts = pod(owner={"kind": "StatefulSet", "name": "g", "apiVersion": "apps.kruise.io/v1beta1"})
    assert Workload.of_pod(asts) is None
    assert Workload.of_pod(pod()) is None


def test_ordinals() -> None:
    assert GSS.ordinal("game-7") == 7
    assert GSS.ordinal("game-x") is None
    assert GSS.ordinal("other-7") is None
    assert Workload.parse("deploy/game", "prod").ordinal("game-12345") is None


@pytest.mark.parametrize(
    ("text", "replicas", "slots"),
    [("20%", 30, 6), ("20%", 4, 1), ("25%", 10, 2), ("100%", 7, 7), ("3", 100, 3), (" 04 ", 1, 4)],
)
def test_max_unavailable(text: str, replicas: int, slots: int) -> None:
    assert resolve_max_unavailable(text, replicas) == slots


@pytest.mark.parametrize(
    "text", ["0", "0%", "101%", "-1", "1.5", "x", "%", "", "²", "\u0663", "1\u0660%", "20 %", "5%%"]
)
def test_bad_max_unavailable(text: str) -> None:
    with pytest.raises(RolloutUsageError, match="--max-unavailable"):
        parse_max_unavailable(text)


def test_partition_keeps_the_previous_version_below_it() -> None:
    canary = rollout(partition=28)
    assert canary.desired_for(27) == V1
    assert canary.desired_for(28) == V2
    assert canary.desired_for(None) == V2  # no ordinal: not partitioned
    assert rollout(partition=28, previous=None).desired_for(3) is None  # left as it is
    assert rollout(partition=0).desired_for(0) == V2


def test_the_document_round_trips() -> None:
    original = rollout(partition=3, when="always", paused=True, pause_reason="x", attempt=2)
    assert Rollout.from_json(original.to_json(), "here") == original
    assert json.loads(original.to_json())["sha256"] == "ab" * 32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (None, "here: expected a JSON object"),
        ({"revision": 0}, "here.revision: expected an integer >= 1, got 0"),
        ({"revision": True}, "here.revision: expected an integer"),
        ({"when": "never"}, "here.when: expected idle or always"),
        ({"url": ""}, "version and url must be non-empty strings"),
        ({"previous": "v1"}, "here: expected an object"),
        ({"maxUnavailable": "0"}, "here.maxUnavailable: "),
        ({"sha256": 7}, "here.sha256: must be a string or null"),
        ({"paused": "false"}, "here.paused: expected true or false, got 'false'"),
    ],
)
def test_unreadable_documents(change: dict[str, Any] | None, message: str) -> None:
    text = "[]" if change is None else json.dumps({**json.loads(rollout().to_json()), **change})
    with pytest.raises(RolloutError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Rollout.from_json(text, "here")
    with pytest.raises(RolloutError, match="not JSON"):
        Rollout.from_json("{", "here")


@pytest.mark.parametrize("text", ["[" * 100_000, '{"revision": 1e400}'])
def test_hostile_documents_are_unreadable_not_a_crash(text: str) -> None:
    """Nesting deeper than Python recurses, numbers beyond a float: a RolloutError (the sidecar
    logs it and goes on; it used to be a RecursionError that restarted hot_update in a loop on
    every pod of the namespace, and a traceback from the command)."""
    with pytest.raises(RolloutError, match="here"):
        Rollout.from_json(text, "here")


def test_same_file() -> None:
    assert V2.same_file("v2", V2.url, "ab" * 32)
    assert V2.same_file("v2", V2.url, "")  # recorded without a checksum
    assert not V2.same_file("v2", V2.url, "cd" * 32)
    assert not V2.same_file("v2", V1.url, None)
    assert V1.same_file("v1", V1.url, "cd" * 32)  # no checksum asked: any file of that URL


def test_pod_progress() -> None:
    report = PodProgress(2, 1, "v2", "v2", "Updated", "v2 applied", "2025-01-01T10:00:00Z")
    assert PodProgress.from_json(report.to_json()) == report
    assert PodProgress.from_json("{") is None and PodProgress.from_json(None) is None
    # Anyone who can patch a pod can write its annotation: never a crash of `status`.
    assert PodProgress.from_json("[" * 100_000) is None
    assert PodProgress.from_json('{"revision": 1e400, "target": "v2", "phase": "x"}') is None
    assert report.done(rollout(), V2)
    assert not report.done(rollout(revision=3), V2)
    assert not attrs.evolve(report, phase="Updating").done(rollout(), V2)


# -- start's plan ---------------------------------------------------------------------------------


def request(target: RolloutTarget = V2, **changes: Any) -> StartRequest:
    return attrs.evolve(StartRequest(GSS, target, "20%", 0, "idle"), **changes)


def reporting(phase: str, revision: int = 2, version: str = "v2", name: str = "game-0") -> dict:
    report = PodProgress(revision, 1, version, version, phase)
    annotations = {"rollout.kidecar.io/status": report.to_json()}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_the_first_start_goes_back_to_what_hot_update_recorded() -> None:
    planned = plan_start(None, request(), 6, V1, [])
    assert (planned.revision, planned.target, planned.previous, planned.slots) == (1, V2, V1, 6)
    assert planned.started_at and planned.updated_at == planned.started_at


def test_a_new_version_after_a_complete_rollout() -> None:
    done = rollout()
    planned = plan_start(done, request(RolloutTarget("v3", "https://cdn/v3/f")), 6, None,
                         [reporting("Updated")])  # fmt: skip
    assert (planned.revision, planned.previous, planned.attempt) == (3, V2, 1)


def test_a_new_version_while_one_runs_is_refused() -> None:
    with pytest.raises(RolloutRefused, match=r"to v2 \(revision 2\) is in progress: 0/1 pods"):
        plan_start(rollout(), request(V1), 6, None, [reporting("Updating")])


def test_a_paused_rollout_is_replaced_and_keeps_what_ran_before() -> None:
    v3 = request(RolloutTarget("v3", "https://cdn/v3/f"))
    planned = plan_start(rollout(paused=True), v3, 6, None, [reporting("Failed")])
    assert (planned.revision, planned.previous, planned.paused) == (3, V1, False)
    # Paused by a pod's failure (its Lease) for this revision and attempt: the same.
    failed = FailurePause(revision=2, attempt=1, pod="game-0", reason="probe Failed")
    assert plan_start(rollout(), v3, 6, None, [reporting("Failed")], failed).revision == 3
    # A failure of an earlier attempt (resumed since) pauses nothing.
    with pytest.raises(RolloutRefused, match="in progress"):
        plan_start(rollout(attempt=2), v3, 6, None, [reporting("Failed")], failed)


def test_a_pause_of_a_document_started_again_does_not_apply() -> None:
    current = rollout(started_at="2026-01-02T00:00:00Z")
    run = (current.revision, current.attempt, "game-0", "probe Failed")
    assert not FailurePause(*run, started="2026-01-01T00:00:00Z").applies_to(current)
    assert FailurePause(*run, started=current.started_at).applies_to(current)
    assert FailurePause(*run).applies_to(current)  # written before startedAt was recorded
    assert current.run_key == (current.revision, current.attempt, current.started_at)


def test_effective_pause() -> None:
    failed = FailurePause(revision=2, attempt=1, pod="game-0", reason="probe Failed")
    assert effective_pause(rollout(), None) is None
    assert effective_pause(rollout(), failed) == "probe Failed"
    assert effective_pause(rollout(revision=3), failed) is None
    assert effective_pause(rollout(paused=True, pause_reason="by hand"), failed) == "by hand"
    lease = {"metadata": {"annotations": {"rollout.kidecar.io/revision": "2",
             "rollout.kidecar.io/attempt": "1", "rollout.kidecar.io/reason": "probe Failed"}},
             "spec": {"holderIdentity": "game-0"}}  # fmt: skip
    assert FailurePause.from_lease(lease) == failed
    assert FailurePause.from_lease({"metadata": {}}) is None


def test_the_same_version_changes_the_strategy_only() -> None:
    running = rollout(paused=True, attempt=3)
    planned = plan_start(running, request(partition=5, when="always"), 2, None, [])
    assert planned == attrs.evolve(
        running, partition=5, when="always", slots=2, updated_at=planned.updated_at
    )


# -- progress -------------------------------------------------------------------------------------


def test_progress_rows_and_rendering() -> None:
    pods = [
        reporting("Updated", name="game-0"),
        reporting("Updating", name="game-1", version="v1"),
        reporting("Failed", name="game-2", version="v1"),
        reporting("WaitingForIdle", name="game-3", version="v1"),
        reporting("Updated", revision=1, version="v1", name="game-4"),
        {"metadata": {"name": "game-5"}},
    ]
    current = rollout()
    table = progress.rows(current, GSS, pods)
    assert [r.category for r in table] == [
        "updated", "updating", "failed", "waiting for idle", "pending", "pending",
    ]  # fmt: skip
    assert not progress.complete(current, GSS, pods)
    now = dt.datetime(2025, 1, 1, 10, 0, 0, tzinfo=dt.UTC)
    text = progress.render(current, GSS, pods, now)
    assert "revision 2, v1 -> v2" in text
    assert "[=======>>>>>>>xxxxxxxwwwwwww............] 1/6 at v2, 1 updating, 1 failed, " \
        "1 waiting for idle, 2 pending" in text  # fmt: skip
    assert "game-4  v1       -" in text and "no report yet" in text
    held = rollout(partition=5)
    categories = [r.category for r in progress.rows(held, GSS, pods)]
    assert categories[4:] == ["held (partition)", "pending"]


def test_ages() -> None:
    now = dt.datetime(2025, 1, 1, 10, 0, 0, tzinfo=dt.UTC)
    assert progress.age("2025-01-01T09:59:48Z", now) == "12s"
    assert progress.age("2025-01-01T09:55:00Z", now) == "5m"
    assert progress.age("2024-12-30T10:00:00Z", now) == "2d"
    assert progress.age("", now) == "-"
